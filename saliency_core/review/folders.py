"""Files of a server folder that users may browse (the Review page's ``SALIENCY_REVIEW_DIR``),
confined to it: a symbolic link, to a folder or to a file, that leads outside the folder is not
listed and not read. Checked when listing and again when reading.

Example:
    >>> [p.name for p in list_files("/srv/review", "line-3", ("png", "jpg"))]
    ['part-001.png', 'part-002.png']
    >>> data = read_file("/srv/review", "/srv/review/line-3/part-001.png")
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ..engine.images import MAX_BYTES
from ..engine.untrusted import inside


def subfolders(root: str | os.PathLike) -> list[str]:
    """Names of the folders directly in ``root`` (not hidden, not leading outside it), sorted."""
    base = Path(root)
    if not base.is_dir():
        return []
    return sorted(
        p.name
        for p in base.iterdir()
        if not p.name.startswith(".") and p.is_dir() and inside(base, p) is not None
    )


def folder(root: str | os.PathLike, rel: str) -> Path:
    """The folder ``rel`` ("." = ``root`` itself) under ``root``.

    Raises:
        ValueError: it is missing, not a folder, or leads outside ``root``.
    """
    found = inside(root, Path(root) / rel)
    if found is None or not found.is_dir():
        raise ValueError(f"The folder {rel!r} is not available (expected a folder inside the review folder).")
    return Path(root) / rel


def list_files(root: str | os.PathLike, rel: str, suffixes: Iterable[str]) -> list[Path]:
    """Regular files directly in ``root/rel`` whose suffix is among ``suffixes`` (no dot, any
    case), sorted by name; hidden files and links that lead outside ``root`` are left out.

    Raises:
        ValueError: see ``folder``.
    """
    wanted = {s.lower().lstrip(".") for s in suffixes}
    path = folder(root, rel)
    out = []
    for p in path.iterdir():
        if p.name.startswith(".") or p.suffix.lower().lstrip(".") not in wanted:
            continue
        real = inside(root, p)
        if real is not None and real.is_file():
            out.append(p)
    return sorted(out)


def read_file(root: str | os.PathLike, path: str | os.PathLike, limit: int = MAX_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file inside ``root`` (links resolved, checked now,
    not only when listed) and at most ``limit`` bytes.

    Raises:
        ValueError: outside the folder, missing, not a regular file, too large or unreadable.
    """
    name = Path(path).name
    real = inside(root, path)
    if real is None:
        raise ValueError(
            f"{name}: not a file inside the review folder (a link that leads outside it is not read)."
        )
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise ValueError(f"{name}: cannot read the file ({err.strerror or err}).") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{name}: not a regular file.")
        if info.st_size > limit:
            raise ValueError(
                f"{name}: the file is too large ({info.st_size / 2**20:,.0f} MiB; the limit is "
                f"{limit // 2**20} MiB)."
            )
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{name}: the file is too large (the limit is {limit // 2**20} MiB).")
    return data
