"""Data sets of annotated images: images matched to annotations by file stem, from files, a folder
or a ZIP (opened once, members inflated in counted chunks)."""

from __future__ import annotations

import io
import os
import struct
import threading
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image

from ...engine.images import MAX_BYTES, load_image
from ...engine.safe_text import clip
from ...engine.untrusted import inside, read_member, read_regular, regular_file_inside
from .readers import is_mask_path, read_annotation_file, read_mask
from .records import (
    ANNOTATION_SUFFIXES,
    IMAGE_SUFFIXES,
    MAX_ANNOTATION_BYTES,
    MAX_ZIP_ANNOTATIONS,
    MAX_ZIP_DIRECTORY,
    MAX_ZIP_MEMBERS,
    Annotation,
    Skipped,
    stem_of,
)

# ---- data sets -------------------------------------------------------------------------------


@dataclass
class Item:
    """One annotated image of a data set; the image is read only when ``image()`` is called."""

    name: str
    annotation: Annotation
    load: Callable[[], Image.Image]

    def image(self) -> Image.Image:
        """The decoded RGB image (ValueError in plain words if it cannot be read)."""
        return self.load()


@dataclass
class Dataset:
    """Annotated images, matched by file stem, plus what could not be used.

    Attributes:
        items: the image/annotation pairs, in name order.
        skipped: annotation files, rows, images and annotations left out, with the reason.
        description: one line saying what this data set is.
    """

    items: list[Item]
    skipped: list[Skipped] = field(default_factory=list)
    description: str = ""

    def __len__(self) -> int:
        return len(self.items)


def _loader(source, name: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        data = source() if callable(source) else source
        return load_image(data, name=name)

    return load


def match(
    images: Sequence[tuple[str, object]],
    annotations: Iterable[Annotation],
    skipped: list[Skipped] | None = None,
    description: str = "",
) -> Dataset:
    """Pair images with annotations by file stem.

    Args:
        images: (name, source) pairs; a source is what ``load_image`` takes (path, bytes, PIL
            image) or a function returning one, called only when the image is needed.
        annotations: what was read; several for one image are merged (the union).
        skipped: problems found so far, extended here.
    Returns:
        ``Dataset``; an annotation with no image, an image with no annotation and two images
        with one stem each become a ``Skipped`` entry.

    Example:
        >>> ds = match([("cat.png", "photos/cat.png")], read_csv(open("boxes.csv").read())[0])
    """
    skipped = list(skipped or [])
    by_stem: dict[str, tuple[str, object]] = {}
    for name, source in images:
        stem = stem_of(name)
        if stem in by_stem:
            skipped.append(
                Skipped(
                    name,
                    f"another image, {by_stem[stem][0]}, has the same name stem "
                    f"'{stem}'; annotations are matched by stem, so only the first "
                    "is used (masks belong in a folder named masks/ or end in _mask).",
                )
            )
            continue
        by_stem[stem] = (name, source)
    merged: dict[str, Annotation] = {}
    for ann in annotations:
        key = ann.key
        try:
            if key in merged:
                merged[key].merge(ann)
            else:
                merged[key] = Annotation(
                    image=ann.image,
                    boxes=list(ann.boxes),
                    mask=ann.mask,
                    size=ann.size,
                    sources=list(ann.sources),
                )
        except ValueError as err:
            skipped.append(Skipped(ann.image, f"{err}"))
    items = []
    for key, ann in merged.items():
        if key not in by_stem:
            where = ann.sources[0] if ann.sources else "the annotations"
            more = f" and {len(ann.sources) - 1} more" if len(ann.sources) > 1 else ""
            skipped.append(
                Skipped(ann.image, f"annotated in {where}{more}, but no image named '{key}' was given.")
            )
    for key, (name, source) in sorted(by_stem.items(), key=lambda kv: kv[1][0]):
        ann = merged.get(key)
        if ann is None:
            skipped.append(
                Skipped(name, f"no annotation for this image (no mask, box or object names '{key}').")
            )
            continue
        items.append(Item(name=name, annotation=ann, load=_loader(source, name)))
    return Dataset(items=items, skipped=skipped, description=description)


def dataset_from_files(
    images: Sequence[tuple[str, object]], annotation_files: Sequence[tuple[str, bytes]], description: str = ""
) -> Dataset:
    """A data set from uploaded files: images and annotation files (CSV / XML / JSON / mask
    images). Every image-type file in ``annotation_files`` is read as a mask.

    Example:
        >>> ds = dataset_from_files([("cat.png", cat_bytes)], [("masks/cat.png", mask_bytes)])
    """
    annotations, skipped = [], []
    for name, data in annotation_files:
        found, problems = read_annotation_file(name, data)
        annotations += found
        skipped += problems
    return match(
        images,
        annotations,
        skipped,
        description or f"{len(images)} image(s), {len(annotation_files)} annotation file(s)",
    )


def _files_under(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Regular files under ``path`` with one of ``suffixes``, not hidden; a link leading outside
    ``path``, a named pipe, socket or device is left out (never opened)."""
    return sorted(
        p
        for p in path.rglob("*")
        if p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
        and regular_file_inside(path, p)
    )


def _read_bytes(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of a regular file (opened without blocking: never a named pipe)."""
    return read_regular(path, limit, str(path))


def dataset_from_folder(images: str | os.PathLike, annotations: str | os.PathLike | None = None) -> Dataset:
    """A data set from a folder of images (searched recursively) and an annotation file, a
    folder of them (CSV, XML, JSON, mask PNGs) or a ZIP.

    ``images`` may also be a ZIP (annotations inside it are used too).

    Raises:
        ValueError: a path does not exist.

    Example:
        >>> ds = dataset_from_folder("photos/", "boxes.csv")
    """
    images, annotations = Path(images), Path(annotations) if annotations else None
    skipped: list[Skipped] = []
    found: list[Annotation] = []
    if images.is_file() and images.suffix.lower() == ".zip":
        pictures, found, skipped = _zip_contents(images)
    elif images.is_dir():
        pictures, mask_files = [], []
        for p in _files_under(images, IMAGE_SUFFIXES):
            rel = p.relative_to(images).as_posix()
            if annotations is not None and annotations.is_dir() and inside(annotations, p):
                continue
            (mask_files if is_mask_path(rel) else pictures).append((rel, p))
        for rel, p in mask_files:
            try:
                found.append(read_mask(_read_bytes(p, MAX_BYTES), rel))
            except ValueError as err:
                skipped.append(Skipped(rel, _strip_name(err, rel)))
    else:
        raise ValueError(f"{images}: no such folder (expected a folder of images or a ZIP).")
    if annotations is not None:
        if annotations.is_dir():
            files = _files_under(annotations, ANNOTATION_SUFFIXES + IMAGE_SUFFIXES)
        elif annotations.is_file():
            files = [annotations]
        else:
            raise ValueError(f"{annotations}: no such file or folder.")
        for p in files:
            name = p.relative_to(annotations).as_posix() if annotations.is_dir() else p.name
            if p.suffix.lower() == ".zip":
                _, got, problems = _zip_contents(p)
                found += got
                skipped += problems
                continue
            try:
                data = _read_bytes(p, MAX_ANNOTATION_BYTES)
            except (ValueError, OSError) as err:
                skipped.append(Skipped(name, f"cannot read it ({err})."))
                continue
            got, problems = read_annotation_file(name, data)
            found += got
            skipped += problems
    where = (
        f"images from {images}, annotations from {annotations}"
        if annotations
        else f"images and annotations from {images}"
    )
    return match(pictures, found, skipped, where)


def _strip_name(err: Exception, name: str) -> str:
    text = str(err)
    return text[len(name) + 2 :] if text.startswith(name + ": ") else text


def dataset_from_zip(source: str | os.PathLike | bytes, name: str = "upload.zip") -> Dataset:
    """A data set from a ZIP of images and annotations (CSV / XML / JSON anywhere, masks in a
    ``masks/`` (or ``annotations/``, ``gt/`` ...) folder or named ``<stem>_mask.png``).

    Images are read from the archive one at a time, when the run needs them.

    Raises:
        ValueError: not a ZIP file, or one that is damaged.

    Example:
        >>> ds = dataset_from_zip(open("welds.zip", "rb").read())
    """
    pictures, annotations, skipped = _zip_contents(source, name)
    label = str(source) if isinstance(source, (str, os.PathLike)) else name
    return match(pictures, annotations, skipped, f"{label}: {len(pictures)} image(s)")


def _zip_directory(data: bytes) -> tuple[int, int] | None:
    """(files listed, size of the central directory in bytes) from a ZIP's end record (ZIP64
    included), read before the directory itself is parsed; None if there is no end record."""
    tail = data[-(22 + 65535) :]
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return None
    entries, size = struct.unpack("<HI", tail[at + 10 : at + 16])
    if entries == 0xFFFF or size == 0xFFFFFFFF:  # ZIP64: the locator sits just before
        base = len(data) - len(tail) + at
        locator = data[base - 20 : base]
        if len(locator) == 20 and locator[:4] == b"PK\x06\x07":
            (offset,) = struct.unpack("<Q", locator[8:16])
            record = data[offset : offset + 56]
            if len(record) == 56 and record[:4] == b"PK\x06\x06":
                entries, size = struct.unpack("<QQ", record[32:48])
    return entries, size


def _check_zip_directory(data: bytes, label: str) -> None:
    """Raise ValueError if the archive's own directory declares too many files or too long a list."""
    directory = _zip_directory(data)
    if directory is not None:
        entries, size = directory
        if entries > MAX_ZIP_MEMBERS:
            raise ValueError(
                f"{label}: the archive holds {entries:,} files; the limit is {MAX_ZIP_MEMBERS:,}."
            )
        if size > MAX_ZIP_DIRECTORY:
            raise ValueError(
                f"{label}: the archive's list of files is {size / 2**20:,.1f} MiB; the limit is "
                f"{MAX_ZIP_DIRECTORY // 2**20} MiB."
            )


def _zip_contents(
    source: str | os.PathLike | bytes, name: str = "upload.zip"
) -> tuple[list[tuple[str, object]], list[Annotation], list[Skipped]]:
    """(images as (name, reader), annotations read, problems) of a ZIP, opened once.

    The file count and the size of the file list are checked before the list is parsed; every
    member is inflated in chunks with its real bytes counted (see ``read_member``)."""
    label = str(source) if isinstance(source, (str, os.PathLike)) else name
    data = Path(source).read_bytes() if isinstance(source, (str, os.PathLike)) else bytes(source)
    _check_zip_directory(data, label)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise ValueError(f"{label}: not a readable ZIP file ({clip(err, 200)}).") from None
    if len(members) > MAX_ZIP_MEMBERS:
        raise ValueError(
            f"{label}: the archive holds {len(members):,} files; the limit is {MAX_ZIP_MEMBERS:,}."
        )
    skipped: list[Skipped] = []
    annotations: list[Annotation] = []
    pictures: list[tuple[str, object]] = []
    lock = threading.Lock()  # one ZipFile, read from whichever thread needs an image

    def reader(member: zipfile.ZipInfo, limit: int) -> Callable[[], bytes]:
        def read() -> bytes:
            with lock:
                return read_member(archive, member, limit)

        return read

    left = MAX_ZIP_ANNOTATIONS
    for m in members:
        path = m.filename
        parts = PurePosixPath(path).parts
        if any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        suffix = PurePosixPath(path).suffix.lower()
        if suffix in ANNOTATION_SUFFIXES or (suffix in IMAGE_SUFFIXES and is_mask_path(path)):
            if left <= 0:
                skipped.append(
                    Skipped(
                        path,
                        f"not read: the archive's annotation files already reached "
                        f"{MAX_ZIP_ANNOTATIONS // 2**20} MiB unpacked, the limit for one archive.",
                    )
                )
                continue
            try:
                content = read_member(
                    archive,
                    m,
                    min(MAX_ANNOTATION_BYTES if suffix in ANNOTATION_SUFFIXES else MAX_BYTES, left),
                )
            except ValueError as err:
                skipped.append(Skipped(path, f"{_strip_name(err, path)}"))
                continue
            left -= len(content)
            got, problems = read_annotation_file(path, content)
            annotations += got
            skipped += problems
        elif suffix in IMAGE_SUFFIXES:
            pictures.append((path, reader(m, MAX_BYTES)))
        else:
            skipped.append(
                Skipped(
                    path, f"neither an image nor an annotation file ('{clip(suffix, 20) or 'no suffix'}')."
                )
            )
    return pictures, annotations, skipped
