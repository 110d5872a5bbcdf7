"""A labelled set's tables: ``labels.csv`` / ``labels.json`` (file -> label rows) and
``classes.json`` (label -> classes), each read as hostile input: a size limit, UTF-8 only,
rows that cannot be used listed by name with the reason.

Example:
    >>> rows, skipped = read_table(b"file,label\ncat/1.png,cat\n", "labels.csv")
    >>> rows
    [('cat/1.png', 'cat')]
"""

from __future__ import annotations

import csv
import io
import json
import re

from ..engine.untrusted import cut, quote
from .annotations import Skipped
from .set_paths import CLASSES_NAME

MAX_TABLE_BYTES = 16 * 2**20  # labels.csv / labels.json / classes.json
MAX_LABEL = 200  # characters in a label


def _norm(text: str) -> str:
    return " ".join(re.split(r"[\s_\-]+", str(text).strip().lower())).strip()


def read_mapping(data: bytes, name: str = CLASSES_NAME) -> dict:
    """``classes.json``: ``{label: class name / index, or a list of them}``; ValueError otherwise."""
    value = _json(data, name)
    if not isinstance(value, dict):
        raise ValueError(
            f"{name}: expected an object {{label: class or [classes]}}; got {type(value).__name__}."
        )
    out = {}
    for label, target in value.items():
        targets = target if isinstance(target, list) else [target]
        if len(targets) > 1000 or not all(
            isinstance(t, (str, int)) and not isinstance(t, bool) for t in targets
        ):
            raise ValueError(
                f"{name}: the entry for {quote(label)} must be a class name or index, or a list "
                "of up to 1,000 of them."
            )
        out[str(label)] = [cut(t, MAX_LABEL) if isinstance(t, str) else t for t in targets]
    return out


# ---- label tables --------------------------------------------------------------------------------

_FILE_COLUMNS = {"file", "filename", "file_name", "image", "image_name", "path", "image_path", "name"}
_LABEL_COLUMNS = {"label", "class", "class_name", "category", "true_label", "target"}


def _json(data: bytes, name: str):
    if len(data) > MAX_TABLE_BYTES:
        raise ValueError(
            f"{name}: the file is too large ({len(data) / 2**20:,.1f} MiB; the limit is "
            f"{MAX_TABLE_BYTES // 2**20} MiB)."
        )
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{name}: not valid UTF-8 JSON ({cut(err, 120)}).") from None
    except RecursionError:
        raise ValueError(f"{name}: nested too deeply to read.") from None


def read_table(data: bytes, name: str) -> tuple[list[tuple[str, str]], list[Skipped]]:
    """(file, label) rows of ``labels.csv`` / ``labels.json`` and the rows left out.

    CSV: a header naming a file column (``file``, ``image``, ``path``...) and a label column
    (``label``, ``class``...), or two columns without a header.

    Raises:
        ValueError: not a table that can be read (too large, not UTF-8, no file/label columns).
    """
    problems: list[Skipped] = []
    rows: list[tuple[str, str]] = []
    if name.lower().endswith(".json"):
        value = _json(data, name)
        if isinstance(value, dict):
            raw = list(value.items())
        elif isinstance(value, list):
            raw = []
            for n, entry in enumerate(value, 1):
                if (
                    isinstance(entry, dict)
                    and any(k in entry for k in _FILE_COLUMNS)
                    and any(k in entry for k in _LABEL_COLUMNS)
                ):
                    f = next(entry[k] for k in entry if k in _FILE_COLUMNS)
                    lab = next(entry[k] for k in entry if k in _LABEL_COLUMNS)
                    raw.append((f, lab))
                else:
                    problems.append(
                        Skipped(f"{name} entry {n}", "expected an object with a file and a label.")
                    )
        else:
            raise ValueError(f"{name}: expected {{file: label}} or a list of {{file, label}} objects.")
        for f, lab in raw:
            if not isinstance(f, str) or isinstance(lab, bool) or not isinstance(lab, (str, int)):
                problems.append(
                    Skipped(
                        cut(str(f), 120),
                        f"{name}: the file must be text and the label text or a "
                        f"whole number; got {quote(lab, 60)}.",
                    )
                )
                continue
            rows.append((f, str(lab)))
        return rows, problems
    if len(data) > MAX_TABLE_BYTES:
        raise ValueError(
            f"{name}: the file is too large ({len(data) / 2**20:,.1f} MiB; the limit is "
            f"{MAX_TABLE_BYTES // 2**20} MiB)."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{name}: not UTF-8 text ({err.reason} at byte {err.start}).") from None
    try:
        table = list(csv.reader(io.StringIO(text)))
    except csv.Error as err:
        raise ValueError(f"{name}: not a readable CSV file ({cut(err, 120)}).") from None
    table = [(n, r) for n, r in enumerate(table, 1) if any(c.strip() for c in r)]  # n: row in the file
    if not table:
        raise ValueError(f"{name}: the table is empty.")
    header = [_norm(c).replace(" ", "_") for c in table[0][1]]
    fi = next((i for i, c in enumerate(header) if c in _FILE_COLUMNS), None)
    li = next((i for i, c in enumerate(header) if c in _LABEL_COLUMNS), None)
    start = 1
    if fi is None or li is None:
        if len(table[0][1]) != 2:
            raise ValueError(
                f"{name}: expected a header with a file column and a label column (file,label); "
                f"got {quote(table[0][1], 120)}."
            )
        fi, li, start = 0, 1, 0
    for n, row in table[start:]:
        if len(row) <= max(fi, li) or not row[fi].strip() or not row[li].strip():
            problems.append(
                Skipped(f"{name} row {n}", "a file and a label are needed; the row is incomplete.")
            )
            continue
        rows.append((row[fi].strip(), row[li].strip()))
    return rows, problems
