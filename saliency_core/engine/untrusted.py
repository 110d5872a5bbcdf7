"""Helpers for values read from files users hand us: quoting them in messages, inflating
compressed data, reading files of a folder users filled (only regular files inside it), with hard
limits on the time and memory each can take."""

from __future__ import annotations

import os
import reprlib
import stat
import zlib
from pathlib import Path

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


# ---- files in a folder users filled: only regular files inside it, read with a bound -----------


def contained(root: str | os.PathLike, path: str | os.PathLike) -> Path | None:
    """``path`` with every link resolved, if that lies inside ``root`` (also resolved); else None
    (outside, missing, or a loop of links)."""
    base = Path(root).resolve()
    try:
        real = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return real if real == base or base in real.parents else None


def regular_file_inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether ``path`` leads (links resolved) to a regular file inside ``root``: not a named pipe,
    socket or device, which could block a reader forever or never end."""
    real = contained(root, path)
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
        real = contained(root, path)
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
