"""Text from users, made safe for the files we hand back: CSV cells, ZIP member and file names.

- ``csv_cell`` / ``to_csv``: a spreadsheet runs a cell that starts with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return as a formula (OWASP "CSV injection"). Such text cells get a
  leading single quote; numbers stay numbers. Every CSV the app or the CLI writes goes through
  ``to_csv``.
- ``json_text``: every JSON the project writes; a number that is not finite (NaN, infinity),
  which strict JSON parsers refuse, is written as ``null``.
- ``visible``: labels shown so that labels which look alike but differ can be told apart
  (a Cyrillic letter in a Latin word, full-width letters, a zero-width space).
- ``file_name`` / ``ZipNames``: names built from user text (upload names, batch names, labels)
  lose path separators, ``..``, control characters and length before they name a download or
  a ZIP member, and ZIP members stay unique.

Example:
    >>> csv_cell("=HYPERLINK(\\"http://x\\")"), csv_cell(-3.5)
    ('\\'=HYPERLINK("http://x")', -3.5)
    >>> names = ZipNames(); names.add("../../etc/passwd"), names.add("a/b.png"), names.add("a_b.png")
    ('etc_passwd', 'a_b.png', 'a_b_2.png')
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import unicodedata
from collections.abc import Sequence
from pathlib import PurePath

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP: cells a spreadsheet may evaluate
MAX_NAME = 120  # characters kept of a file or member name
_UNSAFE = re.compile(r"[\\/:*?\"<>|\x00-\x1f\x7f]+")


def csv_cell(value):
    """``value`` with a leading ``'`` when it is text that starts like a formula; anything else
    (numbers included, negative ones too) unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(data, path: str | os.PathLike | None = None, *, columns: Sequence[str] | None = None) -> str:
    """CSV text of a pandas DataFrame or of rows, every text cell passed through ``csv_cell``.

    Args:
        data: a DataFrame (written without its index; numeric columns are left alone) or an
            iterable of rows (sequences), with ``columns`` as the header.
        path: also write the text to this file (UTF-8).
        columns: header for row data.
    Returns:
        the CSV text.

    Example:
        >>> to_csv([["=1+1", 2]], columns=["a", "b"])
        "a,b\\r\\n'=1+1,2\\r\\n"
    """
    if hasattr(data, "columns") and hasattr(data, "to_csv"):
        frame = data.copy()
        for name in frame.columns:
            if getattr(frame[name].dtype, "kind", "O") in "OSU":  # text, mixed, categorical, string
                frame[name] = frame[name].astype(object).map(csv_cell)
        frame.columns = [csv_cell(str(c)) for c in frame.columns]
        text = frame.to_csv(index=False)
    else:
        buf = io.StringIO()
        writer = csv.writer(buf)
        if columns is not None:
            writer.writerow([csv_cell(str(c)) for c in columns])
        for row in data:
            writer.writerow([csv_cell(v) for v in row])
        text = buf.getvalue()
    if path is not None:
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return text


def finite_data(value):
    """``value`` as plain JSON data: NumPy scalars and arrays, tensors and paths made plain, every
    float that is not finite (NaN, infinity) replaced by None, tuples and sets as lists, keys as
    text. Anything else becomes its ``str``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(finite_data(k)): finite_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [finite_data(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # NumPy / torch scalars
        return finite_data(value.item())
    if hasattr(value, "tolist"):  # arrays, tensors
        return finite_data(value.tolist())
    return str(value)


def json_text(value, *, indent: int | None = None, sort_keys: bool = False, ensure_ascii: bool = True) -> str:
    """Strict JSON text of ``value`` (``finite_data``): never ``NaN`` or ``Infinity``, which
    ``json.dumps`` writes by default and strict parsers refuse.

    Example:
        >>> json_text({"p": float("nan"), "x": [1.5, float("inf")]})
        '{"p": null, "x": [1.5, null]}'
    """
    return json.dumps(
        finite_data(value), indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii, allow_nan=False
    )


def _misleading(char: str, latin_word: bool) -> bool:
    """Whether a non-ASCII ``char`` can pass for something it is not: invisible or spacing
    (format, control, separators), changed by compatibility normalisation (full-width letters,
    ligatures, superscripts), or a letter of another script inside a word of Latin letters."""
    if unicodedata.category(char) in ("Cf", "Cc", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"):
        return True
    if unicodedata.normalize("NFKC", char) != char:
        return True
    return latin_word and char.isalpha() and not unicodedata.name(char, "").startswith("LATIN")


def visible(text) -> str:
    """``text`` with every character that could pass for another written as ``\\u{hex}``, so that
    labels which look identical but are not can be told apart. Other text, including words in
    one non-Latin script (``"猫"``) or accented Latin (``"café"``), is unchanged.

    Example:
        >>> visible("t\u0430bby"), visible("tab\u200bby"), visible("ｔａｂｂｙ"), visible("café")
        ('t\\u{430}bby', 'tab\\u{200b}by', '\\u{ff54}\\u{ff41}\\u{ff42}\\u{ff42}\\u{ff59}', 'café')
    """
    text = str(text)
    if text.isascii():
        return text
    latin_word = any(c.isascii() and c.isalpha() for c in text)
    return "".join(
        f"\\u{{{ord(c):x}}}" if not c.isascii() and _misleading(c, latin_word) else c for c in text
    )


def file_name(name, default: str = "file", limit: int = MAX_NAME) -> str:
    """One safe path component from user text: no folders, separators, ``..``, control or
    reserved characters; whitespace becomes ``_``; at most ``limit`` characters (the suffix is
    kept); ``default`` when nothing is left.

    Example:
        >>> file_name("../../etc/passwd"), file_name("my cat.png"), file_name("..")
        ('etc_passwd', 'my_cat.png', 'file')
    """
    text = unicodedata.normalize("NFC", str(name))
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp"))
    text = _UNSAFE.sub("_", text.replace("\\", "/"))
    text = re.sub(r"\s+", "_", text)
    text = re.sub(r"\.{2,}", ".", text)  # no ".." anywhere
    text = re.sub(r"_+", "_", text).strip("._ ")
    if not text:
        return default
    if len(text) > limit:
        stem, dot, suffix = text.rpartition(".")
        if dot and 0 < len(suffix) <= 10 and stem:
            text = stem[: limit - len(suffix) - 1].rstrip("._ ") + "." + suffix
        else:
            text = text[:limit].rstrip("._ ")
    return text or default


class ZipNames:
    """Unique, safe member names for one ZIP being written (``file_name`` of each, and a
    ``_2``, ``_3`` ... before the suffix when a name is taken, compared case-insensitively)."""

    def __init__(self, limit: int = MAX_NAME):
        self.limit = limit
        self._used: set[str] = set()

    def add(self, name, default: str = "file") -> str:
        """The safe, unused member name for ``name`` (now taken)."""
        base = file_name(name, default, self.limit)
        stem, dot, suffix = base.rpartition(".")
        if not dot or not stem:
            stem, suffix = base, ""
        candidate, n = base, 1
        while candidate.lower() in self._used:
            n += 1
            tail = f"_{n}" + (f".{suffix}" if suffix else "")
            candidate = stem[: self.limit - len(tail)] + tail
        self._used.add(candidate.lower())
        return candidate

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._used


def clip(text, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters for a message (untrusted values can be huge)."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text):,} characters)"
