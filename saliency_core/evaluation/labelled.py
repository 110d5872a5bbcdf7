"""Labelled data sets for the gallery: images with their true class, from a folder, a ZIP or the demo.

Layouts read (the same in a server folder and in a ZIP):

- **ImageFolder**: one sub-folder per class, the images inside it (at any depth), e.g.
  ``cat/001.png``, ``espresso/a/b.jpg``. The sub-folder name is the label.
- **A table** at the root, ``labels.csv`` (columns ``file,label``; ``image``/``path`` and
  ``class`` are accepted too) or ``labels.json`` (``{"file": "label", ...}`` or
  ``[{"file": ..., "label": ...}, ...]``); file paths are relative to the root.

Labels are mapped to the model's classes by ``labels.map_labels`` (exact name first, then an
alias, an index, a loose match; a loose match fitting several classes is refused with the
candidates named), or by an entry of an optional ``classes.json`` at the root, or a mapping the
caller passes (``{"cat": ["tabby", "tiger cat", ...]}``: one label standing for several classes).
A label naming no class is listed with the closest class names, and its images are left out.

Every file is hostile: paths that leave the root (absolute, ``..``, links pointing out), files
over ``max_file_bytes``, archive members that are links or encrypted, duplicates (the same
bytes under two names), files beyond ``max_images`` are each listed in ``problems`` by name with
the reason; the rest of the set opens. Only an empty set or an unreadable archive as a whole is
an error (``ValueError``). Images are decoded later, by the pipeline, one at a time.

Example:
    >>> labelled = open_folder("photos/", model.labels)   # photos/cat/1.png, photos/espresso/2.jpg
    >>> labelled.items[0].label, labelled.classes["cat"]
    ('cat', (281, 282, 283, 284, 285))
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import stat
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..engine.safe_text import visible
from ..engine.untrusted import cut, inside, quote, read_member, read_regular, regular_file_inside
from .annotations import Skipped
from .labels import map_labels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
TABLE_NAMES = ("labels.csv", "labels.json")
CLASSES_NAME = "classes.json"
MAX_TABLE_BYTES = 16 * 2**20  # labels.csv / labels.json / classes.json
MAX_LABEL = 200  # characters in a label
MAX_ZIP_MEMBERS = 200_000  # entries in an archive's directory


def max_images() -> int:
    """Images a set may hold (``SALIENCY_GALLERY_MAX_IMAGES``, default 20,000)."""
    return _env_int("SALIENCY_GALLERY_MAX_IMAGES", 20_000)


def max_file_bytes() -> int:
    """Size limit of one image file (``SALIENCY_GALLERY_MAX_FILE_MB``, default 50 MiB)."""
    return _env_int("SALIENCY_GALLERY_MAX_FILE_MB", 50) * 2**20


def max_total_bytes() -> int:
    """Size limit of all images of a set together (``SALIENCY_GALLERY_MAX_TOTAL_MB``, default 20 GiB)."""
    return _env_int("SALIENCY_GALLERY_MAX_TOTAL_MB", 20 * 1024) * 2**20


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or not 0 < int(text) < 10**9:
        raise ValueError(f"{name} must be a whole number between 1 and 999,999,999; got {quote(text)}.")
    return int(text)


@dataclass
class LabelledItem:
    """One image of a labelled set; its bytes are read only when ``read()`` is called.

    Attributes:
        name: path inside the set (``cat/001.png``), unique.
        label: the true label as written in the set.
        classes: the model's class indices that count as this label.
        key: ``sha256`` of the file's bytes: the set's identity of this file.
        read: returns the file's bytes (ValueError in plain words if that fails).
    """

    name: str
    label: str
    classes: tuple[int, ...]
    key: str
    read: Callable[[], bytes] = field(repr=False)
    path: str | None = None  # the file on the server, for a folder set (Ray workers read it)


@dataclass
class LabelledSet:
    """Images with true labels, and what was left out.

    Attributes:
        items: in name order.
        problems: files, rows and labels left out, each with the reason.
        classes: label -> the model's class indices it stands for (labels that map to one).
        description: one line saying what the set is.
        source: where it came from (``demo``, ``folder:cats``, ``zip:upload.zip``).
    """

    items: list[LabelledItem]
    problems: list[Skipped]
    classes: dict[str, tuple[int, ...]]
    description: str
    source: str

    def __len__(self) -> int:
        return len(self.items)

    @property
    def id(self) -> str:
        """Digest of (name, label, file key) of every item: the same set gives the same id."""
        h = hashlib.sha256(self.source.encode())
        for it in self.items:
            h.update(f"\0{it.name}\0{it.label}\0{it.key}".encode())
        return h.hexdigest()[:20]

    def by_key(self) -> dict[str, LabelledItem]:
        return {it.key: it for it in self.items}


# ---- labels -> classes -------------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(re.split(r"[\s_\-]+", str(text).strip().lower())).strip()


def merge_labels(
    classes: dict[str, tuple[int, ...]], model_labels: Sequence[str], problems: list[Skipped]
) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """One true label per class, each shown so that it can be told from look-alikes.

    Several labels that stand for the same classes (``tiger_cat``, ``Tiger cat``, ``282``) would
    be separate rows of every table, and the confusion matrix would put correct predictions off
    its diagonal; they are merged into one label, the model's class name (for a group of classes,
    the first of the labels), and ``problems`` says which were merged. A label with characters
    that can pass for others (``safe_text.visible``) is shown with them escaped.

    Returns:
        (``{label: classes}`` with the merged labels, ``{label as written: label used}`` for the
        labels that changed).
    """
    by_classes: dict[tuple[int, ...], list[str]] = {}
    for label, indices in classes.items():
        by_classes.setdefault(indices, []).append(label)
    merged: dict[str, tuple[int, ...]] = {}
    renamed: dict[str, str] = {}
    for indices, labels in by_classes.items():
        if len(labels) == 1:
            true = visible(labels[0])
        else:
            true = visible(model_labels[indices[0]] if len(indices) == 1 else sorted(labels)[0])
            names = ", ".join(f"'{cut(visible(x), 60)}'" for x in sorted(labels)[:6])
            more = f" and {len(labels) - 6} more" if len(labels) > 6 else ""
            problems.append(
                Skipped(
                    f"labels {names}{more}",
                    f"they name the same class of this model, so their images are counted as one "
                    f"label, '{true}'.",
                )
            )
        if true in merged:  # a written label equal to another class's name: keep them apart
            true = f"{true} (classes {', '.join(map(str, indices[:4]))})"
        merged[true] = indices
        renamed.update({x: true for x in labels if x != true})
    return merged, renamed


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


# ---- safe paths ----------------------------------------------------------------------------------


def _unsafe_path(path: str) -> str | None:
    """Why ``path`` (a path inside a set) cannot be used, or None."""
    if not path or "\x00" in path or any(ord(c) < 32 for c in path):
        return "its name holds control characters; left out"
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        return "its path is absolute, so it would leave the set's root folder; left out for safety"
    if ".." in re.split(r"[\\/]+", path):
        return "its path leaves the set's root folder ('..'); left out for safety"
    return None


def _hidden(parts: Sequence[str]) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _is_image(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


# ---- building a set ------------------------------------------------------------------------------


@dataclass
class _File:
    name: str  # path inside the set (POSIX)
    size: int  # bytes, as stated by the file system or the archive
    read: Callable[[int], bytes]  # read(limit) -> bytes; ValueError if it fails or exceeds limit
    path: str | None = None


def _assemble(
    files: list[_File],
    problems: list[Skipped],
    model_labels: Sequence[str],
    *,
    table: tuple[str, bytes] | None,
    mapping: dict | None,
    description: str,
    source: str,
    limit: int | None,
) -> LabelledSet:
    """Labels for ``files`` (from ``table`` or the ImageFolder layout), mapped to classes;
    duplicates, size and count limits applied; each file's bytes hashed."""
    limit = max_images() if limit is None else int(limit)
    per_file, total_limit = max_file_bytes(), max_total_bytes()
    images = sorted((f for f in files if _is_image(f.name)), key=lambda f: f.name)
    for f in files:
        if not _is_image(f.name):
            problems.append(
                Skipped(
                    f.name, f"not an image file ({PurePosixPath(f.name).suffix or 'no suffix'}); left out."
                )
            )
    labelled: list[tuple[_File, str]] = []
    if table is not None:
        tname, tdata = table
        rows, bad = read_table(tdata, tname)
        problems += bad
        by_name = {f.name: f for f in images}
        used: dict[str, str] = {}
        for path, label in rows:
            shown = cut(path, 200)
            why = _unsafe_path(path)
            if why:
                problems.append(Skipped(shown, f"{tname}: {why}."))
                continue
            rel = PurePosixPath(path.replace("\\", "/")).as_posix()  # also drops "./" and doubled "/"
            if rel in used:
                same = (
                    "the same label"
                    if used[rel] == label
                    else f"label {quote(used[rel])}, here {quote(label)}"
                )
                problems.append(
                    Skipped(shown, f"{tname} lists this file twice ({same}); the first row is used.")
                )
                continue
            f = by_name.get(rel)
            if f is None:
                problems.append(Skipped(shown, f"{tname} lists it, but there is no such image in the set."))
                continue
            used[rel] = label
            labelled.append((f, label))
        for f in images:
            if f.name not in used:
                problems.append(
                    Skipped(f.name, f"not listed in {tname}, so its true class is unknown; left out.")
                )
    else:
        for f in images:
            parts = PurePosixPath(f.name).parts
            if len(parts) < 2:
                problems.append(
                    Skipped(
                        f.name,
                        "not inside a class folder (ImageFolder layout: one sub-folder "
                        "per class), so its true class is unknown; left out.",
                    )
                )
                continue
            labelled.append((f, parts[0]))
    if not labelled and not images:
        raise ValueError(
            f"{description}: no images found (expected one sub-folder per class with images in "
            f"it, or {' / '.join(TABLE_NAMES)} next to the images)."
        )
    # labels -> classes
    too_long = {lab for _, lab in labelled if len(lab) > MAX_LABEL}
    classes, missing = map_labels([lab for _, lab in labelled if lab not in too_long], model_labels, mapping)
    for lab in sorted(missing):
        count = sum(1 for _, x in labelled if x == lab)
        problems.append(
            Skipped(f"label '{cut(visible(lab), 80)}'", f"{missing[lab]}; its {count} image(s) are left out.")
        )
    classes, renamed = merge_labels(classes, model_labels, problems)
    labelled = [(f, renamed.get(lab, lab)) for f, lab in labelled]
    items: list[LabelledItem] = []
    seen: dict[str, LabelledItem] = {}
    total = 0
    for f, label in labelled:
        if label in too_long:
            problems.append(Skipped(f.name, f"its label is longer than {MAX_LABEL} characters; left out."))
            continue
        if label not in classes:
            problems.append(
                Skipped(
                    visible(f.name),
                    f"its label '{cut(visible(label), 80)}' names no class of this model; left out.",
                )
            )
            continue
        if len(items) >= limit:
            problems.append(
                Skipped(
                    f.name,
                    f"the set holds more than {limit:,} images, the configured limit "
                    "(SALIENCY_GALLERY_MAX_IMAGES); left out.",
                )
            )
            continue
        if f.size > per_file:
            problems.append(
                Skipped(
                    f.name,
                    f"the file is too large ({f.size / 2**20:,.1f} MiB; the limit is "
                    f"{per_file // 2**20} MiB); left out.",
                )
            )
            continue
        if total + f.size > total_limit:
            problems.append(
                Skipped(
                    f.name,
                    f"the set's images together exceed {total_limit // 2**20:,} MiB, the "
                    "configured limit (SALIENCY_GALLERY_MAX_TOTAL_MB); left out.",
                )
            )
            continue
        try:
            data = f.read(per_file)
        except ValueError as err:
            problems.append(Skipped(f.name, _strip(err, f.name)))
            continue
        total += len(data)
        key = hashlib.sha256(data).hexdigest()
        del data
        if key in seen:
            first = seen[key]
            conflict = "" if first.label == label else f" (labelled {first.label!r} there, {label!r} here)"
            problems.append(
                Skipped(
                    f.name,
                    f"duplicate file: the same bytes as {first.name}{conflict}; "
                    "counted once, under the first name.",
                )
            )
            continue
        item = LabelledItem(
            name=f.name,
            label=label,
            classes=classes[label],
            key=key,
            read=_checked(f.read, per_file, key, f.name),
            path=f.path,
        )
        seen[key] = item
        items.append(item)
    if not items:
        reasons = "; ".join(f"{p.item}: {p.reason}" for p in problems[:5])
        raise ValueError(
            f"{description}: none of its images can be used ({len(problems)} problem(s): "
            f"{cut(reasons, 600)})."
        )
    return LabelledSet(
        items=items,
        problems=problems,
        classes={k: v for k, v in classes.items() if any(i.label == k for i in items)},
        description=description,
        source=source,
    )


def _checked(read: Callable[[int], bytes], limit: int, key: str, name: str) -> Callable[[], bytes]:
    def again() -> bytes:
        data = read(limit)
        if hashlib.sha256(data).hexdigest() != key:
            raise ValueError(f"{name}: the file changed since the set was opened; open the set again.")
        return data

    return again


def _strip(err: Exception, name: str) -> str:
    text = " ".join(str(err).split())
    return text[len(name) + 2 :] if text.startswith(name + ": ") else text


# ---- folder --------------------------------------------------------------------------------------


def open_folder(
    root: str | os.PathLike,
    model_labels: Sequence[str],
    *,
    mapping: dict | None = None,
    limit: int | None = None,
    table: str | None = None,
) -> LabelledSet:
    """A labelled set from a folder (ImageFolder layout, or ``labels.csv`` / ``labels.json``).

    Args:
        root: the folder.
        model_labels: ``model.labels``.
        mapping: ``{label: classes}``; default: ``classes.json`` in the folder, if there is one.
        limit: most images (default ``max_images()``).
        table: the name of a label table at the root to read instead (``train.csv``).
    Raises:
        ValueError: no such folder, no images, or no usable image.

    Example:
        >>> s = open_folder("welds/", model.labels)
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder.")
    real_root = root.resolve()
    files: list[_File] = []
    problems: list[Skipped] = []
    table_names = (table,) if table else TABLE_NAMES
    table = None
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for d in list(dirnames):
            if (Path(dirpath) / d).is_symlink():
                dirnames.remove(d)
                problems.append(
                    Skipped(
                        (rel_dir / d).as_posix(),
                        "a link to another folder; links are not followed, so it is left out.",
                    )
                )
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            p = Path(dirpath) / fname
            rel = (rel_dir / fname).as_posix()
            if rel_dir == Path(".") and (
                fname in table_names or fname.lower() in TABLE_NAMES + (CLASSES_NAME,)
            ):
                continue
            if p.is_symlink() and inside(real_root, p) is None:
                problems.append(
                    Skipped(rel, "a link that points outside the set's folder; left out for safety.")
                )
                continue
            try:
                info = p.stat()
            except OSError as err:
                problems.append(Skipped(rel, f"cannot read it ({err.strerror or err})."))
                continue
            if not stat.S_ISREG(info.st_mode):
                problems.append(
                    Skipped(
                        rel, "not a regular file (a named pipe, socket or device); never opened, left out."
                    )
                )
                continue
            files.append(_File(rel, info.st_size, _file_reader(p, rel, real_root), path=str(p.resolve())))
        if len(files) > 10 * max_images() + 100_000:
            raise ValueError(
                f"{root}: more than {len(files):,} files; the gallery takes at most "
                f"{max_images():,} images (SALIENCY_GALLERY_MAX_IMAGES)."
            )
    tables = [n for n in table_names if _set_file(root, n, problems)]
    if tables:
        table = (tables[0], read_regular(root / tables[0], MAX_TABLE_BYTES, tables[0], real_root))
        if len(tables) > 1:
            problems.append(Skipped(tables[1], f"{tables[0]} is used; only one label table is read."))
    if mapping is None and _set_file(root, CLASSES_NAME, problems):
        mapping = read_mapping(read_regular(root / CLASSES_NAME, MAX_TABLE_BYTES, CLASSES_NAME, real_root))
    if not files:
        raise ValueError(
            f"The folder {root.name or root} is empty: it holds no image files (expected one "
            "sub-folder per class with images in it)."
        )
    return _assemble(
        files,
        problems,
        model_labels,
        table=table,
        mapping=mapping,
        description=f"folder {root.name or root}",
        source=f"folder:{root}",
        limit=limit,
    )


def _set_file(root: Path, name: str, problems: list[Skipped]) -> bool:
    """Whether the set's ``name`` (labels.csv, classes.json ...) is there to read: a regular file
    inside the set. A link leading outside it, or a named pipe, is a problem, never read."""
    path = root / name
    if not (path.exists() or path.is_symlink()):
        return False
    if regular_file_inside(root, path):
        return True
    problems.append(
        Skipped(
            name,
            "not read: it is a link that leads outside the set's folder, or not a regular file "
            "(a named pipe, socket or device).",
        )
    )
    return False


def _file_reader(path: Path, name: str, root: Path | None = None) -> Callable[[int], bytes]:
    """Reads ``path`` (at most ``limit`` bytes, a regular file inside ``root`` when given, checked
    again at read time)."""

    def read(limit: int) -> bytes:
        return read_regular(path, limit, name, root)

    return read


# ---- ZIP ------------------------------------------------------------------------------------------


def open_zip(
    data: bytes,
    name: str,
    model_labels: Sequence[str],
    *,
    mapping: dict | None = None,
    limit: int | None = None,
) -> LabelledSet:
    """A labelled set from a ZIP holding the folder layout (optionally inside one top folder).

    Members that are links, encrypted, or whose path leaves the archive's root are listed and
    left out; each member is inflated with a hard limit on the bytes it may produce, whatever
    its header says.

    Raises:
        ValueError: not a readable ZIP, too many entries, or no usable image.
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
    lock = threading.Lock()
    problems: list[Skipped] = []
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        raw = info.filename
        shown = cut(raw, 200)
        why = _unsafe_path(raw)
        if why:
            problems.append(Skipped(shown, why.replace("set's root folder", "archive's root") + "."))
            continue
        if info.is_dir():
            continue
        path = PurePosixPath(raw.replace("\\", "/"))
        if _hidden(path.parts):
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            problems.append(
                Skipped(
                    shown, "a symbolic link inside the archive; links are not followed, so it is left out."
                )
            )
            continue
        if info.flag_bits & 0x1:
            problems.append(
                Skipped(shown, "encrypted; it cannot be read without a password, so it is left out.")
            )
            continue
        key = path.as_posix()
        if key in members:
            problems.append(
                Skipped(shown, "the archive holds two entries with this name; the first is used.")
            )
            continue
        members[key] = info
    # one top folder holding everything (zip of a folder): strip it
    tops = {PurePosixPath(k).parts[0] for k in members}
    prefix = ""
    if len(tops) == 1 and all(len(PurePosixPath(k).parts) > 1 for k in members):
        top = next(iter(tops))
        inner = {PurePosixPath(k).relative_to(top).as_posix() for k in members}
        if any(n.lower() in TABLE_NAMES for n in inner) or all(
            len(PurePosixPath(n).parts) > 1 for n in inner if _is_image(n)
        ):
            prefix = top + "/"

    def reader(info: zipfile.ZipInfo, rel: str) -> Callable[[int], bytes]:
        def read(limit: int) -> bytes:
            with lock:  # one archive, read from several threads
                return read_member(archive, info, limit, rel)

        return read

    files: list[_File] = []
    table = None
    for key, info in members.items():
        rel = key[len(prefix) :] if prefix and key.startswith(prefix) else key
        if "/" not in rel and rel.lower() in TABLE_NAMES:
            if table is None:
                table = (rel, reader(info, rel)(MAX_TABLE_BYTES))
            else:
                problems.append(Skipped(rel, f"{table[0]} is used; only one label table is read."))
            continue
        if "/" not in rel and rel.lower() == CLASSES_NAME:
            if mapping is None:
                mapping = read_mapping(reader(info, rel)(MAX_TABLE_BYTES), rel)
            continue
        files.append(_File(rel, int(info.file_size), reader(info, rel)))
    if not files:
        raise ValueError(
            f"{name}: the archive holds no image files"
            + (
                f" ({len(problems)} entries left out: {cut(problems[0].item, 80)}: {problems[0].reason})"
                if problems
                else ""
            )
            + "."
        )
    return _assemble(
        files,
        problems,
        model_labels,
        table=table,
        mapping=mapping,
        description=f"ZIP {cut(name, 80)}",
        source=f"zip:{cut(name, 120)}",
        limit=limit,
    )


# ---- the bundled demo set --------------------------------------------------------------------------

# Label -> ImageNet class names. ImageNet-1k has no "motorcycle", "rocket", "clock" or "horse"
# class: the nearest classes count as correct (moped / motor scooter, missile / projectile,
# analog / wall clock, sorrel).
DEMO_CLASSES = {
    "cat": ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"],
    "espresso": ["espresso"],
    "motorcycle": ["moped", "motor scooter"],
    "tripod": ["tripod"],
    "rocket": ["missile", "projectile"],
    "clock": ["analog clock", "wall clock"],
    "horse": ["sorrel"],
}
# scikit-image photos with a known class (file, label)
DEMO_PHOTOS = (
    ("chelsea.png", "cat"),
    ("coffee.png", "espresso"),
    ("motorcycle_left.png", "motorcycle"),
    ("motorcycle_right.png", "motorcycle"),
    ("camera.png", "tripod"),
    ("rocket.jpg", "rocket"),
    ("clock_motion.png", "clock"),
    ("horse.png", "horse"),
)
DEMO_PASTED = 24  # pasted-object images (seed 0): cat, espresso, motorcycle, tripod in turn
DEMO_DESCRIPTION = (
    f"Demo set: {DEMO_PASTED} pasted-object images (scikit-image objects on grass, gravel and brick) and "
    f"{len(DEMO_PHOTOS)} scikit-image photos, with their true classes. ImageNet has no motorcycle, rocket, "
    "clock or horse class: moped / motor scooter, missile / projectile, analog / wall clock and sorrel count "
    "as correct."
)


def demo_set(model_labels: Sequence[str], watermark: bool = False) -> LabelledSet:
    """The bundled labelled demo set (for ImageNet models such as the demo model); with
    ``watermark``, the shortcut demo: also 12 pasted tripods, 7 of them with a small corner
    watermark (``data.watermark_tripods``; the ``demo-watermark`` model uses it). Annotations
    of both: ``data.demo_annotations()``.

    Example:
        >>> s = demo_set(sc.load_model("demo").labels)
        >>> len(s), sorted(s.classes)[:2]
        (32, ['cat', 'clock'])
    """
    from .data import OBJECTS, pasted_objects, photo_path, watermark_tripods

    files: list[_File] = []
    problems: list[Skipped] = []
    pasted = pasted_objects(DEMO_PASTED, seed=0)
    for index, item in enumerate(pasted.items):
        label = OBJECTS[index % len(OBJECTS)][2]
        name = f"{label}/{item.name}"

        def read(limit: int, item=item) -> bytes:
            buf = io.BytesIO()
            item.image().save(buf, format="PNG")
            return buf.getvalue()

        files.append(_File(name, 0, read))
    for name, _, _, load in watermark_tripods() if watermark else []:

        def read_marked(limit: int, load=load) -> bytes:
            buf = io.BytesIO()
            load().save(buf, format="PNG")
            return buf.getvalue()

        files.append(_File(f"tripod/{name}", 0, read_marked))
    for photo, label in DEMO_PHOTOS:
        try:
            path = Path(photo_path(photo))
        except ValueError as err:
            problems.append(Skipped(photo, str(err)))
            continue
        files.append(
            _File(f"{label}/{photo}", path.stat().st_size, _file_reader(path, photo), path=str(path))
        )
    return _assemble(
        files,
        problems,
        model_labels,
        table=None,
        mapping=DEMO_CLASSES,
        description="Demo set with watermarks" if watermark else "Demo set",
        source="demo-watermark" if watermark else "demo",
        limit=None,
    )
