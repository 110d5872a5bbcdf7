"""Reading what users and operators hand us, safely: one owner for the rules every reader follows.

- **Containment**: a path named by a file (a card's ``file``, an archive member) is a relative
  name without ``..``, absolute parts or drive letters (``relative_name``); a path found on disk
  counts as inside a folder only when both are resolved (every link followed) and the first lies
  within the second (``inside``).
- **Bounded reading**: a ZIP member is inflated a chunk at a time and refused as soon as more
  real bytes came out than allowed, whatever its header says (``read_member``); zlib data the
  same way (``inflate``).
- **Files in a folder users filled**: only regular files inside it are read, opened without
  blocking (a named pipe never holds the reader) and with a size bound (``read_regular``,
  ``regular_file_inside``).
- **Short messages**: values from files are quoted or cut to a bounded length (``quote``,
  ``cut``) and an exception becomes one trimmed line (``short``, ``one_line``), so a message
  never carries a stack trace or a file's content at length.

Example:
    >>> inside("/srv/sets", "/srv/sets/a/../b.png")
    PosixPath('/srv/sets/b.png')
    >>> relative_name("../etc/passwd") is None
    True
"""

from __future__ import annotations

import os
import re
import reprlib
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxtuple, _REPR.maxlist, _REPR.maxdict = 2, 4, 4, 4
_REPR.maxset = _REPR.maxfrozenset = _REPR.maxdeque = _REPR.maxarray = 4
_REPR.maxstring, _REPR.maxlong, _REPR.maxother = 200, 40, 200


def quote(value, limit: int = 80) -> str:
    """``repr(value)`` cut to at most ``limit`` characters (plus "…"), for error messages.

    Bounded work whatever ``value`` is: nested lists (a YAML alias bomb), megabyte strings or
    huge integers are summarised, never printed whole.

    Example:
        >>> quote("x" * 1000, limit=10)
        "'xxxxxxxx…"
    """
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: max(limit - 1, 1)] + "…"


def cut(text: str, limit: int = 80) -> str:
    """Text from a file (a name, a key, a parser's message) cut to ``limit`` characters, unquoted."""
    text = str(text)
    return text if len(text) <= limit else text[: max(limit - 1, 1)] + "…"


class InflateError(ValueError):
    """Compressed data that is damaged, or inflates to more than allowed."""


def inflate(data: bytes, limit: int) -> bytes:
    """zlib-decompress ``data`` into at most ``limit`` bytes; never allocates more.

    Raises:
        InflateError: the data is damaged, incomplete, or its output would exceed ``limit``.
    """
    if not isinstance(limit, int) or limit < 0:
        raise InflateError(f"invalid output limit {quote(limit)}")
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit + 1)  # one byte more than allowed tells "too large"
    except zlib.error as err:
        raise InflateError(f"damaged compressed data ({err})") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise InflateError(f"it inflates to more than {limit:,} bytes")
    if not inflater.eof:
        raise InflateError("the compressed data is incomplete")
    return out


ZIP_CHUNK = 1 << 16  # bytes inflated at a time while counting a member's real size

# what zipfile and the decompressors raise on damaged, encrypted or unsupported members
ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    RuntimeError,
    NotImplementedError,
    zlib.error,
)


def inside(root: str | os.PathLike, path: str | os.PathLike) -> Path | None:
    """``path`` with every link resolved, if that lies inside ``root`` (also resolved), else None
    (also when ``path`` is missing or a loop of links)."""
    try:
        base = Path(root).resolve()
        real = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return real if real.is_relative_to(base) else None


def relative_name(value: str) -> PurePosixPath | None:
    """``value`` (``/`` or ``\\`` separated) as a relative name that stays below its folder, or
    None when it is empty, absolute, starts with a drive letter or has a ``..`` part."""
    pure = PurePosixPath(value.replace("\\", "/"))
    if not value.strip() or pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", value):
        return None
    return pure


def read_member(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int, name: str | None = None
) -> bytes:
    """The bytes of one ZIP member, inflated ``ZIP_CHUNK`` bytes at a time and refused as soon
    as more than ``limit`` real bytes came out (whatever its header says).

    Args:
        name: how messages name the member (default: its name in the archive).
    Raises:
        ValueError: too large, encrypted, damaged, or in a compression method not supported.
    """
    name = member.filename if name is None else name
    if member.file_size > limit:
        raise ValueError(
            f"{name}: the file is too large ({member.file_size / 2**20:,.1f} MiB unpacked; the "
            f"limit is {limit / 2**20:,.0f} MiB)."
        )
    out = bytearray()
    try:
        with archive.open(member) as f:
            while chunk := f.read(ZIP_CHUNK):
                out += chunk
                if len(out) > limit:
                    raise ValueError(
                        f"{name}: the file unpacks to more than {limit / 2**20:,.0f} MiB (its header "
                        f"says {member.file_size:,} bytes); refused after reading that much."
                    )
    except ValueError:
        raise
    except ARCHIVE_ERRORS as err:
        raise ValueError(
            f"{name}: cannot read it from the archive: it is damaged, encrypted, or unpacks to more "
            f"than its header says ({short(err, 120)})."
        ) from None
    return bytes(out)


def short(err: BaseException, limit: int = 300) -> str:
    """The first line of an exception's text, trimmed to ``limit`` characters: enough to say
    what went wrong."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= limit else text[:limit] + "…"


def one_line(err: BaseException, name: str) -> str:
    """``name: message`` on one line, without repeating the name when the message starts with it."""
    text = " ".join(str(err).split())
    return text if text.startswith(name) else f"{name}: {text}"


# ---- files in a folder users filled: only regular files inside it, read with a bound -----------


def regular_file_inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether ``path`` leads (links resolved) to a regular file inside ``root``: not a named pipe,
    socket or device, which could block a reader forever or never end."""
    real = inside(root, path)
    try:
        return real is not None and stat.S_ISREG(os.stat(real).st_mode)
    except OSError:
        return False


def read_regular(
    path: str | os.PathLike, limit: int, name: str, root: str | os.PathLike | None = None
) -> bytes:
    """The bytes of ``path``, at most ``limit``: a regular file (checked on the opened file, which
    is opened without blocking, so a named pipe never holds the reader), inside ``root`` when
    given (links resolved and checked now, not only when the folder was listed).

    Raises:
        ValueError: outside ``root``, missing, not a regular file, larger than ``limit`` or
            unreadable, in words naming ``name``.
    """
    real: Path | None = Path(path)
    if root is not None:
        real = inside(root, path)
        if real is None:
            raise ValueError(
                f"{name}: not a file inside the folder (a link that leads outside it is not read)."
            )
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise ValueError(f"{name}: cannot read the file ({err.strerror or err}).") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{name}: not a regular file (a named pipe, socket or device is never read).")
        if info.st_size > limit:
            raise ValueError(
                f"{name}: the file is too large ({info.st_size:,} bytes; the limit is {limit:,})."
            )
        try:
            data = f.read(limit + 1)
        except OSError as err:
            raise ValueError(f"{name}: cannot read the file ({err.strerror or err}).") from None
    if len(data) > limit:
        raise ValueError(f"{name}: the file is too large (the limit is {limit:,} bytes).")
    return data
