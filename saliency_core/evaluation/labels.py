"""Which model class a data set's label stands for: exactly one, or a refusal that says why.

A label is resolved in this order; the first rule that finds anything decides:

1. a **mapping** entry (``classes.json``, or a mapping file ``label,class`` given by the user)
   for this label: each class it names is resolved by rules 2-5 and must be unique;
2. an **exact** class name (``Cardigan`` is ImageNet class 264, the dog; ``cardigan`` is 474,
   the sweater: each resolves to its own class, never to the other);
3. an exact **alias**, one comma-separated part of a class name (``tabby`` in ``tabby, tabby cat``);
4. a class **index** written as a whole number (``281``);
5. a **loose** match: letter case, spaces, ``_``, ``-`` and punctuation ignored.

Where a rule finds more than one class (a loose ``CARDIGAN`` fits both cardigans; ImageNet has
two classes named ``crane``), the label is refused with the candidates named and the hint to
settle it in a mapping file; it is never resolved to the first one found.

Example:
    >>> match_label("cardigan", imagenet_labels()).indices
    (474,)
    >>> match_label("CARDIGAN", imagenet_labels()).problem
    "fits 2 classes when case, spaces and punctuation are ignored: 'Cardigan' (#264), 'cardigan' (#474) ..."
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..engine.untrusted import cut, quote

MAPPING_HINT = "settle it in a mapping file (CSV label,class or classes.json)"
MAX_MAPPING_BYTES = 16 * 2**20
MAX_MAPPING_ROWS = 100_000
HOW = {
    "mapping": "mapping file",
    "exact": "exact class name",
    "alias": "exact alias (part of a class name)",
    "index": "class index",
    "loose": "loose (case, spaces or punctuation differ)",
}


@dataclass(frozen=True)
class LabelMatch:
    """How one label resolved.

    Attributes:
        label: the label as written in the set.
        indices: the model's classes it stands for (empty when refused).
        how: a key of ``HOW`` (empty when refused).
        problem: why it is refused (empty when resolved).
    """

    label: str
    indices: tuple[int, ...]
    how: str
    problem: str = ""


def loose(text: str) -> str:
    """``Tiger_Cat``, ``tiger-cat`` and ``Tiger cat.`` -> ``tiger cat``: case folded, every run of
    spaces, underscores, hyphens and punctuation one space."""
    return " ".join(re.sub(r"[\W_]+", " ", str(text).casefold()).split())


class ClassIndex:
    """The model's class names looked up exactly, by alias and loosely (built once per model)."""

    def __init__(self, model_labels: Sequence[str]):
        self.labels = list(model_labels)
        self.exact: dict[str, list[int]] = {}
        self.alias: dict[str, list[int]] = {}
        self.loose: dict[str, list[int]] = {}
        for i, name in enumerate(self.labels):
            name = str(name)
            self.exact.setdefault(name, []).append(i)
            parts = [p.strip() for p in name.split(",")] if "," in name else []
            for part in dict.fromkeys(p for p in parts if p):
                self.alias.setdefault(part, []).append(i)
            for key in dict.fromkeys(loose(n) for n in [name, *parts]):
                if key:
                    self.loose.setdefault(key, []).append(i)

    def candidates(self, indices: Iterable[int]) -> str:
        return ", ".join(f"{self.labels[i]!r} (#{i})" for i in list(dict.fromkeys(indices))[:8])

    def resolve(self, target: str | int) -> LabelMatch:
        """One name or index -> ``LabelMatch`` (rules 2-5 of the module's order)."""
        label = str(target)
        if isinstance(target, bool):
            return LabelMatch(label, (), "", "is neither a class name nor a class index")
        if isinstance(target, int):
            if 0 <= target < len(self.labels):
                return LabelMatch(label, (target,), "index")
            return LabelMatch(
                label, (), "", f"names no class of this model (class indices are 0 to {len(self.labels) - 1})"
            )
        for how, table in (("exact", self.exact), ("alias", self.alias)):
            found = table.get(label)
            if found:
                return self._one(label, found, how)
        text = label.strip()
        if text.isdigit() and len(text) < 10:
            return self.resolve(int(text))
        found = self.loose.get(loose(label))
        if found:
            return self._one(label, found, "loose")
        return LabelMatch(label, (), "", "names no class of this model" + self.closest(label))

    def _one(self, label: str, found: list[int], how: str) -> LabelMatch:
        unique = tuple(dict.fromkeys(found))
        if len(unique) == 1:
            return LabelMatch(label, unique, how)
        words = {
            "exact": "is the exact name of",
            "alias": "is an exact alias of",
            "loose": "fits, when case, spaces and punctuation are ignored,",
        }[how]
        return LabelMatch(
            label,
            (),
            "",
            f"{words} {len(unique)} classes: {self.candidates(unique)}; it is not guessed: {MAPPING_HINT}",
        )

    def closest(self, label: str) -> str:
        names = {loose(x): x for x in self.labels}
        close = difflib.get_close_matches(loose(label), list(names), n=3, cutoff=0.6)
        return f" (closest: {', '.join(repr(names[c]) for c in close)})" if close else ""


def match_label(
    label: str, model_labels: Sequence[str] | ClassIndex, mapping: dict | None = None, source: str = "mapping"
) -> LabelMatch:
    """Resolve one label (see the module's order).

    Args:
        label: as written in the set.
        model_labels: ``model.labels`` (or a ``ClassIndex`` of them, to resolve many labels).
        mapping: ``{label: class name / index, or a list of them}``; wins over names.
        source: what the mapping is called in messages (``classes.json``, ``labels_map.csv``).
    Returns:
        ``LabelMatch``: ``indices`` non-empty, or ``problem`` saying why not.
    """
    index = model_labels if isinstance(model_labels, ClassIndex) else ClassIndex(model_labels)
    if mapping and label in mapping:
        targets = mapping[label] if isinstance(mapping[label], list) else [mapping[label]]
        if not targets:
            return LabelMatch(label, (), "", f"{source} maps it to no class")
        found: list[int] = []
        for target in targets:
            m = index.resolve(target)
            if not m.indices:
                why = m.problem
                if why.startswith("names no class"):
                    why = "is not a class of this model" + (
                        index.closest(target) if isinstance(target, str) else ""
                    )
                return LabelMatch(label, (), "", f"{source} maps it to {quote(target, 60)}, which {why}")
            found += m.indices
        return LabelMatch(label, tuple(dict.fromkeys(found)), "mapping")
    m = index.resolve(label)
    if m.problem and "names no class" in m.problem:
        return LabelMatch(
            label, (), "", f"{m.problem}. Rename the folder or label to a class name, or {MAPPING_HINT}"
        )
    return m


def map_labels(
    labels: Iterable[str],
    model_labels: Sequence[str],
    mapping: dict | None = None,
    source: str = "classes.json",
) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Which of the model's classes each label stands for.

    Returns:
        (``{label: class indices}`` for the labels that resolve, ``{label: why not}`` for the others).

    Example:
        >>> map_labels(["tabby", "Tiger_Cat", "281", "dog"], model.labels)
        ({'tabby': (281,), 'Tiger_Cat': (282,), '281': (281,)}, {'dog': "names no class of this model ..."})
    """
    index = ClassIndex(model_labels)
    found: dict[str, tuple[int, ...]] = {}
    missing: dict[str, str] = {}
    for label in dict.fromkeys(labels):
        m = match_label(label, index, mapping, source)
        if m.indices:
            found[label] = m.indices
        else:
            missing[label] = m.problem
    return found, missing


def mapping_rows(
    classes: dict[str, tuple[int, ...]], model_labels: Sequence[str], counts: dict[str, int] | None = None
) -> list[dict]:
    """The resolved mapping to show before a run: one row per label with its classes (names and
    indices), how it was matched and how many images carry it. A label whose classes differ from
    what its name alone resolves to came from a mapping."""
    index = ClassIndex(model_labels)
    rows = []
    for label, indices in classes.items():
        by_name = index.resolve(label)
        how = by_name.how if by_name.indices == tuple(indices) else "mapping"
        rows.append(
            {
                "label": label,
                "images": int((counts or {}).get(label, 0)),
                "model classes": ", ".join(f"{model_labels[i]} (#{i})" for i in indices[:20])
                + (f" and {len(indices) - 20} more" if len(indices) > 20 else ""),
                "matched by": HOW[how],
            }
        )
    return rows


def read_label_map(data: bytes, name: str = "labels_map.csv") -> dict[str, list[str]]:
    """A mapping file: CSV rows ``label,class`` (a header ``label,class`` is optional; a label on
    several rows stands for all of their classes). Classes are names or indices, resolved like
    labels. Raises ValueError in plain words for a file that cannot be read."""
    if len(data) > MAX_MAPPING_BYTES:
        raise ValueError(f"{name}: the file is too large (the limit is {MAX_MAPPING_BYTES // 2**20} MiB).")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{name}: not UTF-8 text ({err.reason} at byte {err.start}).") from None
    try:
        table = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    except csv.Error as err:
        raise ValueError(f"{name}: not a readable CSV file ({cut(err, 120)}).") from None
    if not table:
        raise ValueError(f"{name}: the mapping file is empty (expected rows label,class).")
    if len(table) > MAX_MAPPING_ROWS:
        raise ValueError(f"{name}: more than {MAX_MAPPING_ROWS:,} rows.")
    if [loose(c) for c in table[0][:2]] in (["label", "class"], ["label", "model class"]):
        table = table[1:]
    out: dict[str, list[str]] = {}
    for n, row in enumerate(table, 1):
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise ValueError(f"{name} row {n}: expected two columns, label,class; got {quote(row, 120)}.")
        label, target = cut(row[0].strip(), 200), cut(row[1].strip(), 200)
        out.setdefault(label, [])
        if target not in out[label]:
            out[label].append(target)
    return out
