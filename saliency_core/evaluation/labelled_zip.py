"""A labelled set's ZIP archive: its entries checked and listed, its members read with a hard limit.

Entries that are links, encrypted, hidden, named twice or whose path leaves the archive's root
are listed as problems and left out; a single top folder holding everything (the ZIP of a
folder) is stripped; each member is inflated with a hard limit on the bytes it may produce,
whatever its header says, one read at a time (the archive is shared by the pipeline's threads).

Example:
    >>> entries = zip_entries(data, "welds.zip")
    >>> prefix = top_folder(entries.members)            # "welds/" when everything is inside it
    >>> entries.reader(entries.members["welds/ok/1.png"], "ok/1.png")(2**20)
"""

from __future__ import annotations

import io
import stat
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ..engine.untrusted import cut, read_member
from .annotations import Skipped
from .set_paths import TABLE_NAMES, hidden, is_image, unsafe_path

MAX_ZIP_MEMBERS = 200_000  # entries in an archive's directory


@dataclass
class ZipEntries:
    """An open archive, its usable members (by POSIX path) and the entries left out."""

    archive: zipfile.ZipFile
    members: dict[str, zipfile.ZipInfo]
    problems: list[Skipped]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reader(self, info: zipfile.ZipInfo, rel: str) -> Callable[[int], bytes]:
        """Reads the member ``info`` (named ``rel`` in messages), at most ``limit`` bytes."""

        def read(limit: int) -> bytes:
            with self.lock:  # one archive, read from several threads
                return read_member(self.archive, info, limit, rel)

        return read


def zip_entries(data: bytes, name: str) -> ZipEntries:
    """The archive ``data`` (called ``name``) opened and its entries checked.

    Raises:
        ValueError: not a readable ZIP, or more than ``MAX_ZIP_MEMBERS`` entries.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as err:
        raise ValueError(f"{name}: not a readable ZIP file ({cut(err, 120)}).") from None
    if len(infos) > MAX_ZIP_MEMBERS:
        raise ValueError(
            f"{name}: the archive holds {len(infos):,} entries; the limit is {MAX_ZIP_MEMBERS:,}."
        )
    problems: list[Skipped] = []
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        key, why = _entry(info)
        if why:
            problems.append(Skipped(cut(info.filename, 200), why))
        elif key is None:
            continue
        elif key in members:
            problems.append(
                Skipped(
                    cut(info.filename, 200),
                    "the archive holds two entries with this name; the first is used.",
                )
            )
        else:
            members[key] = info
    return ZipEntries(archive, members, problems)


def _entry(info: zipfile.ZipInfo) -> tuple[str | None, str | None]:
    """(the entry's POSIX path, or None to pass over it silently; why it is left out, or None)."""
    raw = info.filename
    why = unsafe_path(raw)
    if why:
        return None, why.replace("set's root folder", "archive's root") + "."
    if info.is_dir():
        return None, None
    path = PurePosixPath(raw.replace("\\", "/"))
    if hidden(path.parts):
        return None, None
    if stat.S_ISLNK(info.external_attr >> 16):
        return None, "a symbolic link inside the archive; links are not followed, so it is left out."
    if info.flag_bits & 0x1:
        return None, "encrypted; it cannot be read without a password, so it is left out."
    return path.as_posix(), None


def top_folder(members: dict[str, zipfile.ZipInfo]) -> str:
    """``"top/"`` when one top folder holds everything (the ZIP of a folder) and stripping it
    leaves a set layout (a label table at its root, or every image in a class folder); else ``""``."""
    tops = {PurePosixPath(k).parts[0] for k in members}
    if len(tops) == 1 and all(len(PurePosixPath(k).parts) > 1 for k in members):
        top = next(iter(tops))
        inner = {PurePosixPath(k).relative_to(top).as_posix() for k in members}
        if any(n.lower() in TABLE_NAMES for n in inner) or all(
            len(PurePosixPath(n).parts) > 1 for n in inner if is_image(n)
        ):
            return top + "/"
    return ""
