"""Helpers for values read from files users hand us: quoting them in messages, inflating
compressed data, with hard limits on the time and memory either can take."""

from __future__ import annotations

import reprlib
import zlib

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
