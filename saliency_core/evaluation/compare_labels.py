"""What two models' classes and an image's label say about a comparison: the classes the models do
not share, the labels CSV (image name, class), and what a change of prediction was (fixed, broken...)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path

from ..engine.untrusted import cut, quote

UNCHANGED, CHANGED = "unchanged", "changed"
FIXED, BROKEN, BOTH_WRONG = "fixed", "broken", "changed, both wrong"
CHANGES = (UNCHANGED, CHANGED, FIXED, BROKEN, BOTH_WRONG)
MAX_LABELS_BYTES = 16 << 20  # a labels CSV: image name, class per row
MAX_LABEL_ROWS = 1_000_000
MAX_NAME_CHARS = 1000
MAX_PROBLEMS = 20  # label problems listed one by one; the rest are counted


# ---- class lists ---------------------------------------------------------------------------------


def _names(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(quote(s, 60) for s in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def class_difference(labels_a: Sequence[str], labels_b: Sequence[str], limit: int = 10) -> str | None:
    """How two class lists differ, in words; None when they are the same list in the same order.

    Example:
        >>> class_difference(["ok", "crack"], ["ok", "porosity"])
        "Model A and model B have different class lists, so their predictions cannot be compared. Only in "
        "model A (1): 'crack'. Only in model B (1): 'porosity'."
    """
    labels_a, labels_b = list(labels_a), list(labels_b)
    if labels_a == labels_b:
        return None
    set_a, set_b = set(labels_a), set(labels_b)
    only_a = [s for s in dict.fromkeys(labels_a) if s not in set_b]
    only_b = [s for s in dict.fromkeys(labels_b) if s not in set_a]
    parts = []
    if only_a:
        parts.append(f"Only in model A ({len(only_a)}): {_names(only_a, limit)}.")
    if only_b:
        parts.append(f"Only in model B ({len(only_b)}): {_names(only_b, limit)}.")
    if not parts and len(labels_a) != len(labels_b):
        parts.append(
            f"Model A has {len(labels_a)} classes and model B {len(labels_b)}, with the same names "
            "(one of them repeats a name)."
        )
    elif not parts:
        moved = [i for i, (x, y) in enumerate(zip(labels_a, labels_b)) if x != y]
        shown = "; ".join(
            f"class {i} is {quote(labels_a[i], 60)} in A and {quote(labels_b[i], 60)} in B"
            for i in moved[:limit]
        )
        parts.append(
            f"The same {len(labels_a)} class names in a different order: {shown}"
            + (f" and {len(moved) - limit} more" if len(moved) > limit else "")
            + "."
        )
    return (
        "Model A and model B have different class lists, so their predictions cannot be compared. "
        + " ".join(parts)
    )


def check_same_classes(model_a, model_b) -> None:
    """ValueError with ``class_difference``'s message when the two models' class lists differ."""
    message = class_difference(model_a.labels, model_b.labels)
    if message:
        raise ValueError(message)


# ---- labels --------------------------------------------------------------------------------------


def _name_keys(name: str) -> list[str]:
    """The names an image is looked up by in a labels file: as given, its file name, and the
    file name in brackets of a sample photo ("Cat (chelsea.png)")."""
    keys = [name, Path(name).name]
    found = re.search(r"\(([^()]+)\)\s*$", name)
    if found:
        keys.append(found.group(1))
    return list(dict.fromkeys(keys))


def read_labels(
    source: str | Path | bytes, class_names: Sequence[str], where: str | None = None
) -> tuple[dict[str, int], list[str]]:
    """The true class of each image from a CSV file with the columns ``image`` and ``label``.

    ``label`` is a class name of the models, or its index. Images are matched by the name given
    to the comparison or by their file name.

    Args:
        source: a path or the file's bytes (an upload).
        class_names: the models' class names.
        where: how to name the file in messages.
    Returns:
        (image name -> class index, problems): each row that cannot be used gives one message and
        is left out; the others are kept.
    Raises:
        ValueError: the file cannot be read at all (too large, not text, no header).

    Example:
        >>> read_labels(b"image,label\\ncat.png,tabby\\n", model.labels)
        ({'cat.png': 281}, [])
    """
    text, where = _labels_text(source, where)
    rows = csv.reader(io.StringIO(text))
    col_image, col_label = _label_columns(rows, where)
    index_of = {name: i for i, name in reversed(list(enumerate(class_names)))}
    labels: dict[str, int] = {}
    problems: list[str] = []
    count = 0
    try:
        for line, row in enumerate(rows, start=2):
            if not any(cell.strip() for cell in row):
                continue
            count += 1
            if count > MAX_LABEL_ROWS:
                problems.append(f"{where}: more than {MAX_LABEL_ROWS:,} rows; the rest is left out.")
                break
            if len(row) <= max(col_image, col_label):
                problems.append(
                    f"{where} line {line}: expected an image name and a label; got {quote(row, 80)}."
                )
                continue
            image, label = row[col_image].strip(), row[col_label].strip()
            if not image or len(image) > MAX_NAME_CHARS:
                problems.append(
                    f"{where} line {line}: the image name is empty or longer than {MAX_NAME_CHARS} "
                    "characters."
                )
                continue
            if label in index_of:
                value = index_of[label]
            elif label.isdigit() and len(label) < 10 and int(label) < len(class_names):
                value = int(label)
            else:
                problems.append(
                    f"{where} line {line}: {quote(label, 60)} for {quote(image, 60)} is not one of the "
                    f"models' {len(class_names)} classes (a class name or an index below "
                    f"{len(class_names)})."
                )
                continue
            if image in labels and labels[image] != value:
                problems.append(
                    f"{where} line {line}: {quote(image, 60)} is labelled twice, differently; the "
                    "first label is kept."
                )
                continue
            labels.setdefault(image, value)
    except csv.Error as err:
        problems.append(f"{where}: the CSV cannot be read past line {rows.line_num} ({cut(err, 120)}).")
    if len(problems) > MAX_PROBLEMS:
        problems = problems[:MAX_PROBLEMS] + [
            f"{where}: {len(problems) - MAX_PROBLEMS} more rows with problems."
        ]
    return labels, problems


def _labels_text(source: str | Path | bytes, where: str | None) -> tuple[str, str]:
    """The labels file's text and how to name it in messages; ValueError if it cannot be read."""
    if isinstance(source, (bytes, bytearray)):
        data, where = bytes(source), where or "the labels file"
    else:
        path = Path(source)
        where = where or path.name
        try:
            if path.stat().st_size > MAX_LABELS_BYTES:
                raise ValueError(
                    f"{where} is larger than {MAX_LABELS_BYTES >> 20} MiB; a labels file has one "
                    "short row per image."
                )
            data = path.read_bytes()
        except FileNotFoundError:
            raise ValueError(f"{where}: no such labels file.") from None
        except OSError as err:
            raise ValueError(f"{where}: cannot be read ({err.strerror or err}).") from None
    if len(data) > MAX_LABELS_BYTES:
        raise ValueError(
            f"{where} is larger than {MAX_LABELS_BYTES >> 20} MiB; a labels file has one short row per image."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{where} is not UTF-8 text; save it as a CSV file (image,label).") from None
    if "\x00" in text:
        raise ValueError(f"{where} is not a text file; expected a CSV file (image,label).")
    return text, where


def _label_columns(rows, where: str) -> tuple[int, int]:
    """The places of the 'image' and 'label' (or 'class') columns, read from the header row."""
    header = [h.strip().lower() for h in next(rows, [])]
    if "image" not in header or not ({"label", "class"} & set(header)):
        raise ValueError(
            f"{where}: the first row must name the columns 'image' and 'label' "
            f"(e.g. image,label); got {quote(','.join(header), 80)}."
        )
    col_image = header.index("image")
    col_label = header.index("label") if "label" in header else header.index("class")
    return col_image, col_label


def label_for(name: str, labels: dict[str, int] | None) -> int | None:
    """The true class of image ``name`` in ``labels`` (see ``read_labels``), or None."""
    if not labels:
        return None
    for key in _name_keys(name):
        if key in labels:
            return labels[key]
    return None


def classify_change(top_a: int, top_b: int, truth: int | None) -> str:
    """``unchanged``, or for a changed top-1 class: ``fixed`` / ``broken`` / ``changed, both wrong``
    when the true class is known, else ``changed``."""
    if top_a == top_b:
        return UNCHANGED
    if truth is None:
        return CHANGED
    if top_b == truth:
        return FIXED
    if top_a == truth:
        return BROKEN
    return BOTH_WRONG
