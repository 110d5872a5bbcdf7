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

import hashlib
import io
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..engine.safe_text import visible
from ..engine.untrusted import cut, inside, quote, read_regular, regular_file_inside
from .annotations import Skipped
from .label_tables import MAX_LABEL, MAX_TABLE_BYTES, read_mapping, read_table
from .labelled_zip import MAX_ZIP_MEMBERS as MAX_ZIP_MEMBERS
from .labelled_zip import top_folder, zip_entries
from .labels import map_labels
from .set_paths import CLASSES_NAME, TABLE_NAMES, is_image, unsafe_path
from .set_paths import IMAGE_SUFFIXES as IMAGE_SUFFIXES


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
    sizes = max_file_bytes(), max_total_bytes()  # read first: a bad setting fails before any file
    images = sorted((f for f in files if is_image(f.name)), key=lambda f: f.name)
    for f in files:
        if not is_image(f.name):
            problems.append(
                Skipped(
                    f.name, f"not an image file ({PurePosixPath(f.name).suffix or 'no suffix'}); left out."
                )
            )
    if table is not None:
        labelled = _table_labels(images, table, problems)
    else:
        labelled = _folder_labels(images, problems)
    if not labelled and not images:
        raise ValueError(
            f"{description}: no images found (expected one sub-folder per class with images in "
            f"it, or {' / '.join(TABLE_NAMES)} next to the images)."
        )
    too_long = {lab for _, lab in labelled if len(lab) > MAX_LABEL}
    classes, labelled = _classes(labelled, too_long, model_labels, mapping, problems)
    items = _items(labelled, classes, too_long, limit, sizes, problems)
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


def _table_labels(
    images: list[_File], table: tuple[str, bytes], problems: list[Skipped]
) -> list[tuple[_File, str]]:
    """(image, label) for each row of the label table that names an image of the set; the rows
    that cannot be used and the images no row names are listed in ``problems``."""
    tname, tdata = table
    rows, bad = read_table(tdata, tname)
    problems += bad
    by_name = {f.name: f for f in images}
    used: dict[str, str] = {}
    labelled: list[tuple[_File, str]] = []
    for path, label in rows:
        shown = cut(path, 200)
        why = unsafe_path(path)
        if why:
            problems.append(Skipped(shown, f"{tname}: {why}."))
            continue
        rel = PurePosixPath(path.replace("\\", "/")).as_posix()  # also drops "./" and doubled "/"
        if rel in used:
            same = (
                "the same label" if used[rel] == label else f"label {quote(used[rel])}, here {quote(label)}"
            )
            problems.append(Skipped(shown, f"{tname} lists this file twice ({same}); the first row is used."))
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
    return labelled


def _folder_labels(images: list[_File], problems: list[Skipped]) -> list[tuple[_File, str]]:
    """(image, label) by the ImageFolder layout: the label is the image's top folder."""
    labelled: list[tuple[_File, str]] = []
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
    return labelled


def _classes(
    labelled: list[tuple[_File, str]],
    too_long: set[str],
    model_labels: Sequence[str],
    mapping: dict | None,
    problems: list[Skipped],
) -> tuple[dict[str, tuple[int, ...]], list[tuple[_File, str]]]:
    """The labels mapped to the model's classes (labels naming the same classes merged), and the
    (image, label) pairs under the merged labels; labels naming no class are listed."""
    classes, missing = map_labels([lab for _, lab in labelled if lab not in too_long], model_labels, mapping)
    for lab in sorted(missing):
        count = sum(1 for _, x in labelled if x == lab)
        problems.append(
            Skipped(f"label '{cut(visible(lab), 80)}'", f"{missing[lab]}; its {count} image(s) are left out.")
        )
    classes, renamed = merge_labels(classes, model_labels, problems)
    return classes, [(f, renamed.get(lab, lab)) for f, lab in labelled]


def _items(
    labelled: list[tuple[_File, str]],
    classes: dict[str, tuple[int, ...]],
    too_long: set[str],
    limit: int,
    sizes: tuple[int, int],
    problems: list[Skipped],
) -> list[LabelledItem]:
    """The set's items: each usable image read once and hashed; the images over a limit, the
    unreadable ones and the duplicates (the same bytes) are listed in ``problems``."""
    per_file, total_limit = sizes
    items: list[LabelledItem] = []
    seen: dict[str, LabelledItem] = {}
    total = 0
    for f, label in labelled:
        refused = _refusal(
            f, label, classes, too_long, len(items) >= limit, limit, total, per_file, total_limit
        )
        if refused:
            problems.append(refused)
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
    return items


def _refusal(
    f: _File,
    label: str,
    classes: dict[str, tuple[int, ...]],
    too_long: set[str],
    full: bool,
    limit: int,
    total: int,
    per_file: int,
    total_limit: int,
) -> Skipped | None:
    """Why ``f`` is left out before it is read (its label, the count, its size, the total size), or None."""
    if label in too_long:
        return Skipped(f.name, f"its label is longer than {MAX_LABEL} characters; left out.")
    if label not in classes:
        return Skipped(
            visible(f.name), f"its label '{cut(visible(label), 80)}' names no class of this model; left out."
        )
    if full:
        why = (
            f"the set holds more than {limit:,} images, the configured limit "
            "(SALIENCY_GALLERY_MAX_IMAGES); left out."
        )
    elif f.size > per_file:
        why = (
            f"the file is too large ({f.size / 2**20:,.1f} MiB; the limit is "
            f"{per_file // 2**20} MiB); left out."
        )
    elif total + f.size > total_limit:
        why = (
            f"the set's images together exceed {total_limit // 2**20:,} MiB, the "
            "configured limit (SALIENCY_GALLERY_MAX_TOTAL_MB); left out."
        )
    else:
        return None
    return Skipped(f.name, why)


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
    problems: list[Skipped] = []
    table_names = (table,) if table else TABLE_NAMES
    files = _folder_files(root, real_root, table_names, problems)
    tables = [n for n in table_names if _set_file(root, n, problems)]
    found = None
    if tables:
        found = (tables[0], read_regular(root / tables[0], MAX_TABLE_BYTES, tables[0], real_root))
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
        table=found,
        mapping=mapping,
        description=f"folder {root.name or root}",
        source=f"folder:{root}",
        limit=limit,
    )


def _folder_files(
    root: Path, real_root: Path, table_names: Sequence[str], problems: list[Skipped]
) -> list[_File]:
    """The files under ``root`` (links are not followed; hidden files and the label tables at the
    root are passed over); links leading out, special files and unreadable ones are listed."""
    files: list[_File] = []
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
            if rel_dir == Path(".") and (
                fname in table_names or fname.lower() in TABLE_NAMES + (CLASSES_NAME,)
            ):
                continue
            found = _folder_file(Path(dirpath) / fname, (rel_dir / fname).as_posix(), real_root, problems)
            if found is not None:
                files.append(found)
        if len(files) > 10 * max_images() + 100_000:
            raise ValueError(
                f"{root}: more than {len(files):,} files; the gallery takes at most "
                f"{max_images():,} images (SALIENCY_GALLERY_MAX_IMAGES)."
            )
    return files


def _folder_file(p: Path, rel: str, real_root: Path, problems: list[Skipped]) -> _File | None:
    """The file ``p`` (``rel`` inside the set) to read later, or None with the reason listed."""
    if p.is_symlink() and inside(real_root, p) is None:
        problems.append(Skipped(rel, "a link that points outside the set's folder; left out for safety."))
        return None
    try:
        info = p.stat()
    except OSError as err:
        problems.append(Skipped(rel, f"cannot read it ({err.strerror or err})."))
        return None
    if not stat.S_ISREG(info.st_mode):
        problems.append(
            Skipped(rel, "not a regular file (a named pipe, socket or device); never opened, left out.")
        )
        return None
    return _File(rel, info.st_size, _file_reader(p, rel, real_root), path=str(p.resolve()))


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
    its header says (``labelled_zip``).

    Raises:
        ValueError: not a readable ZIP, too many entries, or no usable image.
    """
    entries = zip_entries(data, name)
    problems = entries.problems
    prefix = top_folder(entries.members)
    files: list[_File] = []
    table = None
    for key, info in entries.members.items():
        rel = key[len(prefix) :] if prefix and key.startswith(prefix) else key
        if "/" not in rel and rel.lower() in TABLE_NAMES:
            if table is None:
                table = (rel, entries.reader(info, rel)(MAX_TABLE_BYTES))
            else:
                problems.append(Skipped(rel, f"{table[0]} is used; only one label table is read."))
            continue
        if "/" not in rel and rel.lower() == CLASSES_NAME:
            if mapping is None:
                mapping = read_mapping(entries.reader(info, rel)(MAX_TABLE_BYTES), rel)
            continue
        files.append(_File(rel, int(info.file_size), entries.reader(info, rel)))
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
