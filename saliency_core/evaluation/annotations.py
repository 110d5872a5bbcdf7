"""Expert annotations: the regions people marked as relevant, lined up with the saliency maps.

Formats read:

- **Mask PNGs**, binary or label masks, matched to images by file stem (``cat.png`` <-
  ``cat.png`` in a masks folder, or ``cat_mask.png`` / ``cat_gt.png`` / ``cat_label.png``).
  Every non-zero pixel is in the region; in a label mask with several labels, 255 is the
  Pascal VOC "void" border and is left out.
- **CSV boxes**: a header ``image,x_min,y_min,x_max,y_max[,label]`` and one row per box
  (``filename``, ``xmin`` ... are accepted too). Coordinates are pixel edges of the original
  image: a box over pixel columns 10 to 19 is ``x_min=10, x_max=20``.
- **Pascal VOC XML**, one file per image (``<filename>``, ``<size>``, ``<object><bndbox>``);
  VOC's 1-based inclusive pixel indices are converted to edges (``xmin - 1`` .. ``xmax``).
- **COCO JSON** (``images``, ``annotations``, ``categories``): polygon segmentations are
  rasterised, RLE segmentations (compressed or not) decoded; otherwise the ``bbox``.
- **A ZIP** holding images and any of the above.

An image's region is the union of everything marked on it. ``Annotation.region`` maps it
through the model's resize (short side) and centre crop, so it lines up pixel for pixel with
the (input_size x input_size) map: masks by nearest neighbour, boxes by their coordinates. A
box partly outside the crop is clipped; a box wholly outside it, or outside the image, is
reported and left out.

Nothing here raises on bad data in a file set: every problem becomes a ``Skipped`` entry
(what, why) and the rest goes on.

Limits (files are hostile): an annotation file is at most ``MAX_ANNOTATION_BYTES``; a mask, a
COCO polygon or RLE at most ``MAX_MASK_PIXELS`` (checked from the declared size, before anything
is allocated) and one COCO file's masks ``MAX_FILE_MASK_PIXELS`` in all; every number is
checked for type, finiteness and range; JSON nested deeper than Python's recursion limit is
refused; XML goes through ``defusedxml``. A ZIP is opened once; it may hold at most
``MAX_ZIP_MEMBERS`` files, and each member is inflated in chunks while the real bytes are
counted (its header's sizes are not trusted), refused as soon as it passes its limit.

Example:
    >>> ds = dataset_from_files([("cat.png", cat_bytes)], [("boxes.csv", csv_bytes)])
    >>> item = ds.items[0]
    >>> region = item.annotation.region(item.image().size, CropGeometry.of(model))
    >>> region.mask.shape
    (224, 224)
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import struct
import threading
import zipfile
from zlib import error as zlib_error
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Sequence

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as ET
from PIL import Image, ImageDraw, UnidentifiedImageError
from torchvision.transforms import functional as TF

from ..engine.images import MAX_BYTES, MAX_PIXELS, load_image
from ..engine.safe_text import clip

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
ANNOTATION_SUFFIXES = (".csv", ".xml", ".json")
# a PNG in a folder with one of these names, or with one of these stem endings, is a mask
MASK_FOLDERS = {"mask", "masks", "annotation", "annotations", "label", "labels", "gt", "ground_truth",
                "groundtruth", "segmentation", "segmentations", "segmentationclass", "segmentationobject"}
MASK_ENDINGS = ("_mask", "-mask", ".mask", "_gt", "-gt", "_label", "_labels", "_seg", "_segmentation")
MAX_ANNOTATION_BYTES = 64 * 2**20     # a larger annotation file is refused
MAX_ZIP_MEMBERS = 10_000              # files in one ZIP
MAX_ZIP_DIRECTORY = 8 * 2**20         # bytes of a ZIP's central directory (its list of files)
MAX_ZIP_ANNOTATIONS = 256 * 2**20     # inflated bytes of all annotation files read from one ZIP
MAX_MASK_PIXELS = MAX_PIXELS          # one mask, polygon or RLE (width x height)
MAX_SIDE = 100_000                    # pixels on a side an annotation may declare
MAX_FILE_MASK_PIXELS = 2_000_000_000  # pixels of all masks rasterised from one COCO file
MAX_POLYGON_NUMBERS = 1_000_000       # coordinates in one COCO object's polygons
_ZIP_CHUNK = 1 << 16
VOC_VOID = 255                        # Pascal VOC label masks mark object borders with 255

_CSV_ALIASES = {
    "image": "image", "filename": "image", "file": "image", "file_name": "image", "image_name": "image",
    "name": "image", "path": "image", "image_path": "image",
    "x_min": "x_min", "xmin": "x_min", "x0": "x_min", "left": "x_min", "x1": "x_min",
    "y_min": "y_min", "ymin": "y_min", "y0": "y_min", "top": "y_min", "y1": "y_min",
    "x_max": "x_max", "xmax": "x_max", "right": "x_max", "x2": "x_max",
    "y_max": "y_max", "ymax": "y_max", "bottom": "y_max", "y2": "y_max",
    "label": "label", "class": "label", "category": "label", "class_name": "label",
}
_CSV_REQUIRED = ("image", "x_min", "y_min", "x_max", "y_max")


# ---- records ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Skipped:
    """Something left out of a run and why, in words a reviewer understands."""

    item: str
    reason: str

    def record(self) -> dict:
        return {"item": self.item, "reason": self.reason}


@dataclass(frozen=True)
class Box:
    """A rectangle in pixel-edge coordinates of the original image (x to the right, y down)."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float
    label: str = ""

    def describe(self) -> str:
        name = f"'{self.label}' " if self.label else ""
        return (f"{name}box x {_num(self.x_min)}-{_num(self.x_max)}, y {_num(self.y_min)}-{_num(self.y_max)}")


def _num(v: float) -> str:
    return f"{v:g}"


@dataclass
class Region:
    """An annotation on the model's input crop.

    Attributes:
        mask: bool (input_size, input_size), True inside the annotated region.
        boxes: boxes in crop pixels after clipping, ``(x_min, y_min, x_max, y_max, label)``,
            for drawing outlines.
        notes: things a reviewer should know (a box clipped by the crop, ...).
        dropped: boxes left out, as ``Skipped`` entries (outside the image or the crop).
    """

    mask: np.ndarray
    boxes: list[tuple[float, float, float, float, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dropped: list[Skipped] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        """Share of the crop inside the region."""
        return float(self.mask.mean())


@dataclass(frozen=True)
class CropGeometry:
    """The model's resize and centre crop (``Classifier.crop``), as coordinates.

    Args:
        resize: length of the short side after resizing.
        input_size: side of the square centre crop.
        interpolation: how the image (not a mask) is resized; recorded only, masks always use
            nearest neighbour.
    """

    resize: int
    input_size: int
    interpolation: str = "bilinear"

    @classmethod
    def of(cls, model) -> "CropGeometry":
        """The geometry of a ``Classifier``."""
        return cls(int(model.resize), int(model.input_size), str(model.interpolation))

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after resizing the short side to ``resize`` (as torchvision does)."""
        short, long = (width, height) if width <= height else (height, width)
        if short == self.resize:
            return width, height
        new_long = int(self.resize * long / short)
        return (self.resize, new_long) if width <= height else (new_long, self.resize)

    def offset(self, width: int, height: int) -> tuple[int, int]:
        """(left, top) of the crop in the resized image; negative where the crop is padded."""
        w, h = self.resized_size(width, height)
        s = self.input_size

        def start(length: int) -> int:
            if s > length:  # torchvision pads (s - length) // 2 before, the rest after
                return -((s - length) // 2)
            return int(round((length - s) / 2.0))
        return start(w), start(h)

    def box_to_crop(self, box: Box, width: int, height: int) -> tuple[float, float, float, float]:
        """A box of an image of ``width`` x ``height`` in crop pixel edges (not clipped)."""
        w, h = self.resized_size(width, height)
        left, top = self.offset(width, height)
        sx, sy = w / width, h / height
        return (box.x_min * sx - left, box.y_min * sy - top, box.x_max * sx - left, box.y_max * sy - top)

    def mask_to_crop(self, mask: np.ndarray) -> np.ndarray:
        """A bool mask (H, W) of the original image -> bool (input_size, input_size), nearest
        neighbour, through exactly the transforms ``Classifier.crop`` applies to the image."""
        picture = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255)
        picture = TF.resize(picture, self.resize, interpolation=TF.InterpolationMode.NEAREST)
        picture = TF.center_crop(picture, self.input_size)
        return np.asarray(picture) > 127


@dataclass
class Annotation:
    """What was marked on one image.

    Attributes:
        image: the image's name as the annotation gives it (matched to files by its stem).
        boxes: boxes in original-image pixel edges.
        mask: bool (H, W) at the image's own size, or None.
        size: (width, height) of the image the annotation was made on, where the file says
            (VOC, COCO, a mask), else None.
        sources: where each part came from (``boxes.csv line 4``, ``masks/cat.png``).
    """

    image: str
    boxes: list[Box] = field(default_factory=list)
    mask: np.ndarray | None = None
    size: tuple[int, int] | None = None
    sources: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return stem_of(self.image)

    @property
    def kind(self) -> str:
        """``mask``, ``boxes`` or ``mask+boxes``."""
        return "+".join(k for k, v in (("mask", self.mask is not None), ("boxes", bool(self.boxes))) if v)

    @property
    def labels(self) -> list[str]:
        return sorted({b.label for b in self.boxes if b.label})

    def merge(self, other: "Annotation") -> None:
        """Add ``other``'s marks (same image) to this one: the region becomes the union."""
        if other.mask is not None:
            if self.mask is None:
                self.mask = other.mask
            elif self.mask.shape != other.mask.shape:
                raise ValueError(f"two masks of different sizes for {self.image}: "
                                 f"{_shape(self.mask)} ({self.sources[0]}) and {_shape(other.mask)} "
                                 f"({other.sources[0]}).")
            else:
                self.mask = self.mask | other.mask
        if other.size is not None and self.size is not None and other.size != self.size:
            raise ValueError(f"{other.sources[0]} was made on a {other.size[0]}x{other.size[1]} image "
                             f"but {self.sources[0]} on a {self.size[0]}x{self.size[1]} one.")
        self.size = self.size or other.size
        self.boxes += other.boxes
        self.sources += other.sources

    def region(self, image_size: tuple[int, int], geometry: CropGeometry) -> Region:
        """The annotation on the model's input crop.

        Args:
            image_size: (width, height) of the decoded image.
            geometry: the model's resize and crop (``CropGeometry.of(model)``).
        Returns:
            ``Region`` with a bool mask (input_size, input_size).
        Raises:
            ValueError: the mask or the declared size does not match the image, or nothing of
                the region is left inside the crop (the reasons of dropped boxes are named).

        Example:
            >>> a = Annotation("cat.png", boxes=[Box(125, 70, 355, 285)])
            >>> a.region((451, 300), CropGeometry(256, 224)).fraction
            0.70...
        """
        width, height = image_size
        s = geometry.input_size
        if self.mask is not None and self.mask.shape != (height, width):
            raise ValueError(f"the mask is {_shape(self.mask)} pixels but the image is {width}x{height}; a "
                             "mask must have the size of its image.")
        if self.size is not None and tuple(self.size) != (width, height):
            raise ValueError(f"the annotation was made on a {self.size[0]}x{self.size[1]} image but the "
                             f"image is {width}x{height} pixels.")
        mask = np.zeros((s, s), dtype=bool)
        notes: list[str] = []
        dropped: list[Skipped] = []
        if self.mask is not None:
            part = geometry.mask_to_crop(self.mask)
            if not part.any():
                notes.append("the mask lies wholly outside the model's centre crop")
            mask |= part
        boxes = []
        for n, box in enumerate(self.boxes, 1):
            name = f"{self.image} box {n}" if len(self.boxes) > 1 else f"{self.image} box"
            if box.x_max <= 0 or box.y_max <= 0 or box.x_min >= width or box.y_min >= height:
                dropped.append(Skipped(name, f"{box.describe()} lies outside the image ({width}x{height} "
                                             "pixels)."))
                continue
            clipped = Box(max(box.x_min, 0.0), max(box.y_min, 0.0), min(box.x_max, float(width)),
                          min(box.y_max, float(height)), box.label)
            if clipped != box:
                notes.append(f"{box.describe()} reaches past the image edge ({width}x{height}); clipped")
            x0, y0, x1, y1 = geometry.box_to_crop(clipped, width, height)
            cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(s)), min(y1, float(s))
            if cx1 <= cx0 or cy1 <= cy0:
                dropped.append(Skipped(name, f"{box.describe()} lies outside the model's centre crop "
                                             f"(the model never sees that part of the image)."))
                continue
            kept = (cx1 - cx0) * (cy1 - cy0) / max((x1 - x0) * (y1 - y0), 1e-12)
            if kept < 0.999:
                notes.append(f"{box.describe()} is partly outside the model's centre crop; "
                             f"{kept:.0%} of it kept")
            # pixel i covers [i, i+1): rounded edges, at least one pixel
            c0, r0 = min(int(round(cx0)), s - 1), min(int(round(cy0)), s - 1)
            c1, r1 = max(int(round(cx1)), c0 + 1), max(int(round(cy1)), r0 + 1)
            mask[r0:r1, c0:c1] = True
            boxes.append((cx0, cy0, cx1, cy1, box.label))
        if not mask.any():
            why = "; ".join(d.reason for d in dropped) or "nothing of the marked region is inside the " \
                                                           "model's centre crop."
            raise ValueError(f"no annotated region is left on the model's input: {why}")
        return Region(mask=mask, boxes=boxes, notes=notes, dropped=dropped)


def _shape(mask: np.ndarray) -> str:
    return f"{mask.shape[1]}x{mask.shape[0]}"


def stem_of(name: str) -> str:
    """The file stem images and annotations are matched by (folders and suffix dropped)."""
    return PurePosixPath(str(name).replace("\\", "/")).stem


# ---- readers -----------------------------------------------------------------------------

def _text(data: bytes | str, source: str) -> str:
    if isinstance(data, str):
        return data
    if len(data) > MAX_ANNOTATION_BYTES:
        raise ValueError(f"{source}: the file is too large ({len(data) / 2**20:,.0f} MiB; the limit is "
                         f"{MAX_ANNOTATION_BYTES // 2**20} MiB).")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{source}: not a text file (it is not UTF-8).") from None


def _number(value, what: str) -> float:
    if isinstance(value, (bool, list, dict)) or value is None:
        shown = json.dumps(value) if isinstance(value, (list, dict)) else value
        raise ValueError(f"{what} is {clip(shown, 60)}, expected a number")
    try:
        v = float(value) if isinstance(value, (int, float)) else float(str(value).strip())
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{what} is {clip(repr(str(value).strip()), 60)}, expected a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{what} is {clip(value, 60)}, expected a finite number")
    return v


def _whole(value, what: str, low: int, high: int) -> int:
    """A whole number in [low, high] from a JSON / XML value (ints, integral floats, digits);
    ValueError naming ``what`` otherwise."""
    v = _number(value, what)
    if v != int(v) or not low <= v <= high:
        raise ValueError(f"{what} is {clip(value, 60)}, expected a whole number from {low:,} to {high:,}")
    return int(v)


def _id(value):
    """A COCO id as a dict key (a whole number or a text), or None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, str)):
        return value
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    return None


def _check_pixels(width: int, height: int, what: str) -> None:
    if width * height > MAX_MASK_PIXELS:
        raise ValueError(f"{what} is {width:,}x{height:,} pixels ({width * height:,}); the limit is "
                         f"{MAX_MASK_PIXELS:,} pixels")


def _box(x_min, y_min, x_max, y_max, label: str = "") -> Box:
    """A checked box: numbers, x_max > x_min and y_max > y_min."""
    x0, y0 = _number(x_min, "x_min"), _number(y_min, "y_min")
    x1, y1 = _number(x_max, "x_max"), _number(y_max, "y_max")
    if x1 < x0:
        raise ValueError(f"x_max ({_num(x1)}) is smaller than x_min ({_num(x0)})")
    if y1 < y0:
        raise ValueError(f"y_max ({_num(y1)}) is smaller than y_min ({_num(y0)})")
    if x1 == x0 or y1 == y0:
        raise ValueError(f"the box has no area (x {_num(x0)}-{_num(x1)}, y {_num(y0)}-{_num(y1)})")
    return Box(x0, y0, x1, y1, str(label or "").strip())


def read_csv(data: bytes | str, source: str = "boxes.csv") -> tuple[list[Annotation], list[Skipped]]:
    """Boxes from a CSV file with the header ``image,x_min,y_min,x_max,y_max[,label]``.

    Args:
        data: the file's bytes or text.
        source: its name, for messages.
    Returns:
        (one ``Annotation`` per image named, rows that were left out with the reason).
    Raises:
        ValueError: the file as a whole cannot be read (not text, no header, missing columns,
            no rows).

    Example:
        >>> anns, skipped = read_csv("image,x_min,y_min,x_max,y_max\\ncat.png,10,20,110,90\\n")
        >>> anns[0].boxes[0]
        Box(x_min=10.0, y_min=20.0, x_max=110.0, y_max=90.0, label='')
    """
    text = _text(data, source)
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as err:
        raise ValueError(f"{source}: not a readable CSV file ({err}).") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise ValueError(f"{source}: the file is empty.")
    header = [_CSV_ALIASES.get(h.strip().lower().replace(" ", "_"), h.strip().lower()) for h in rows[0]]
    missing = [c for c in _CSV_REQUIRED if c not in header]
    if missing:
        raise ValueError(f"{source}: expected the columns image,x_min,y_min,x_max,y_max[,label]; "
                         f"missing {', '.join(missing)} (the header is {','.join(rows[0])!r}).")
    col = {name: header.index(name) for name in header if name in _CSV_REQUIRED or name == "label"}
    by_image: dict[str, Annotation] = {}
    skipped: list[Skipped] = []
    for line, row in enumerate(rows[1:], 2):
        where = f"{source} line {line}"
        try:
            if len(row) < len(header):
                raise ValueError(f"{len(row)} fields, expected {len(header)}")
            image = row[col["image"]].strip()
            if not image:
                raise ValueError("the image name is empty")
            label = row[col["label"]] if "label" in col else ""
            box = _box(*(row[col[c]] for c in _CSV_REQUIRED[1:]), label=label)
        except ValueError as err:
            skipped.append(Skipped(where, f"{err}."))
            continue
        ann = by_image.setdefault(stem_of(image), Annotation(image=image))
        ann.boxes.append(box)
        ann.sources.append(where)
    if not by_image and not skipped:
        raise ValueError(f"{source}: the file has a header but no boxes.")
    return list(by_image.values()), skipped


def _child_text(node, path: str, source: str, required: bool = True) -> str | None:
    found = node.find(path)
    if found is None or found.text is None or not found.text.strip():
        if required:
            raise ValueError(f"{source}: <{path}> is missing.")
        return None
    return found.text.strip()


def read_voc(data: bytes | str, source: str = "annotation.xml") -> tuple[list[Annotation], list[Skipped]]:
    """Boxes of one image from a Pascal VOC XML file.

    VOC numbers pixels from 1 and includes ``xmax``: a box over columns 1..10 covers the first
    ten pixels, i.e. edges 0..10 here.

    Returns:
        ([the image's ``Annotation``], objects left out with the reason).
    Raises:
        ValueError: not well-formed XML, not a VOC annotation, no filename, or no usable object.

    Example:
        >>> anns, _ = read_voc(open("2007_000027.xml", "rb").read())
        >>> anns[0].image, anns[0].size
        ('2007_000027.jpg', (486, 500))
    """
    text = _text(data, source)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise ValueError(f"{source}: not well-formed XML ({err}).") from None
    except DefusedXmlException as err:
        raise ValueError(f"{source}: the XML uses entities or external references, which are refused "
                         f"({type(err).__name__}).") from None
    if root.tag != "annotation":
        raise ValueError(f"{source}: not a Pascal VOC annotation (the root element is <{root.tag}>, "
                         "expected <annotation>).")
    image = _child_text(root, "filename", source)
    size = None
    if root.find("size") is not None:
        try:
            w = _whole(_child_text(root, "size/width", source), "width", 0, MAX_SIDE)
            h = _whole(_child_text(root, "size/height", source), "height", 0, MAX_SIDE)
            size = (w, h) if w > 0 and h > 0 else None
        except ValueError as err:
            raise ValueError(f"{source}: <size> is unreadable ({err}).") from None
    ann = Annotation(image=image, size=size)
    skipped = []
    objects = root.findall("object")
    for n, obj in enumerate(objects, 1):
        label = (obj.findtext("name") or "").strip()
        where = f"{source} object {n}" + (f" ({label})" if label else "")
        box = obj.find("bndbox")
        if box is None:
            skipped.append(Skipped(where, "the object has no <bndbox>."))
            continue
        try:
            b = _box(*(box.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")), label=label)
            # 1-based inclusive indices -> edges
            ann.boxes.append(Box(b.x_min - 1, b.y_min - 1, b.x_max, b.y_max, b.label))
            ann.sources.append(where)
        except ValueError as err:
            skipped.append(Skipped(where, f"{err}."))
    if not objects:
        raise ValueError(f"{source}: the annotation has no <object>.")
    return ([ann] if ann.boxes else []), skipped


def decode_rle(counts, height: int, width: int) -> np.ndarray:
    """A COCO run-length encoding -> bool mask (height, width).

    ``counts`` is a list of run lengths (uncompressed RLE) or COCO's compressed string; runs
    alternate 0s and 1s, starting with 0s, over the pixels in column-major order.

    Example:
        >>> decode_rle([1, 2, 1], 2, 2)        # pixels (0,0)=0, (1,0)=1, (0,1)=1, (1,1)=0
        array([[False,  True], [ True, False]])
    """
    pixels = int(height) * int(width)
    if pixels > MAX_MASK_PIXELS:
        raise ValueError(f"the RLE is {width}x{height} pixels ({pixels:,}); the limit is {MAX_MASK_PIXELS:,} pixels")
    if isinstance(counts, str):
        counts = _rle_string_counts(counts, limit=pixels + 1)
    elif not isinstance(counts, (list, tuple)):
        raise ValueError(f"the RLE counts are a {type(counts).__name__}, expected a list of numbers or a string")
    elif len(counts) > pixels + 1:
        raise ValueError(f"the RLE has {len(counts):,} runs for {pixels:,} pixels")
    runs = _run_lengths(counts, pixels)
    if runs.sum() != pixels:
        raise ValueError(f"the RLE covers {int(runs.sum())} pixels, expected {height}x{width} = "
                         f"{pixels}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape((width, height)).T.copy()


def _run_lengths(counts, pixels: int) -> np.ndarray:
    """Uncompressed RLE counts -> int64 array, each a whole number from 0 to ``pixels``."""
    try:
        values = np.asarray(counts)
    except (ValueError, TypeError, OverflowError):
        values = None
    if values is None or values.ndim != 1 or values.dtype.kind not in "iuf":
        raise ValueError("the RLE counts must be a flat list of whole numbers")
    if values.dtype.kind == "f" and not (np.isfinite(values).all() and (values == np.round(values)).all()):
        raise ValueError("the RLE counts must be whole, finite numbers")
    if values.size and (values.min() < 0 or values.max() > pixels):
        raise ValueError(f"an RLE count lies outside 0 to {pixels:,}")
    return values.astype(np.int64)


def _rle_string_counts(text: str, limit: int | None = None) -> list[int]:
    """COCO's compressed RLE string -> run lengths (pycocotools' rleFrString, as specified:
    6-bit groups offset by 48, 5 data bits, bit 5 = more follows, sign from bit 4 of the last
    group; from the third count on, each is a difference to the count two before).
    ``limit``: most runs accepted. A number longer than 7 groups (35 bits) is refused."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        if limit is not None and len(counts) >= limit:
            raise ValueError(f"the compressed RLE string holds more than {limit:,} runs")
        x, k, more = 0, 0, True
        while more:
            if p >= len(text):
                raise ValueError("the compressed RLE string ends in the middle of a number")
            if k >= 7:
                raise ValueError("the compressed RLE string holds a number too long to be a pixel count")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"the compressed RLE string has an invalid character {text[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _polygons_mask(polygons, height: int, width: int) -> np.ndarray:
    """Polygons ``[[x0, y0, x1, y1, ...], ...]`` filled on a (height, width) mask; every number is
    checked (finite, at most 10 image sizes outside the image) before anything is drawn."""
    _check_pixels(width, height, "the image of the polygon")
    if not all(isinstance(poly, (list, tuple)) for poly in polygons):
        raise ValueError("'segmentation' must be a list of polygons, each a list of numbers")
    total = sum(len(poly) for poly in polygons)
    if total > MAX_POLYGON_NUMBERS:
        raise ValueError(f"the polygons hold {total:,} numbers; the limit is {MAX_POLYGON_NUMBERS:,}")
    reach = 10 * max(width, height)
    shapes = []
    for poly in polygons:
        points = [_number(v, "a polygon coordinate") for v in poly]
        if len(points) < 6 or len(points) % 2:
            raise ValueError(f"a polygon needs at least 3 (x, y) points; it has {len(points)} numbers")
        if any(abs(v) > reach for v in points):
            raise ValueError(f"a polygon point lies far outside the {width}x{height} image")
        shapes.append(list(zip(points[0::2], points[1::2])))
    picture = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(picture)
    for shape in shapes:
        draw.polygon(shape, fill=1, outline=1)
    return np.asarray(picture, dtype=bool)


def read_coco(data: bytes | str, source: str = "annotations.json") -> tuple[list[Annotation], list[Skipped]]:
    """Regions from a COCO JSON file: segmentation (polygons rasterised with PIL, RLE decoded)
    where given, else ``bbox`` ``[x, y, width, height]``.

    Returns:
        (one ``Annotation`` per image with at least one usable object, objects and images
        left out with the reason).
    Raises:
        ValueError: not JSON, or not COCO (no ``images`` / ``annotations`` lists).

    Example:
        >>> anns, skipped = read_coco(open("instances.json", "rb").read())
        >>> anns[0].kind
        'mask'
    """
    text = _text(data, source)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}: not valid JSON ({err.msg} at line {err.lineno}).") from None
    except RecursionError:
        raise ValueError(f"{source}: the JSON is nested too deeply to be an annotation file.") from None
    except (ValueError, MemoryError) as err:   # e.g. an integer of thousands of digits
        raise ValueError(f"{source}: the JSON cannot be read ({clip(err, 120)}).") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) \
            or not isinstance(doc.get("annotations"), list):
        raise ValueError(f"{source}: not a COCO annotation file (expected an object with 'images' and "
                         "'annotations' lists).")
    skipped: list[Skipped] = []
    categories: dict = {}
    listed = doc.get("categories")
    for n, c in enumerate(listed if isinstance(listed, list) else []):
        if not isinstance(c, dict):
            continue
        key, name = _id(c.get("id")), c.get("name", "")
        if key is None or not isinstance(name, str):
            skipped.append(Skipped(f"{source} categories[{n}]", "the category's 'id' is not a whole number or a "
                                                                 "text, or its 'name' is not a text; its name is "
                                                                 "not shown."))
            continue
        categories[key] = clip(name, 200)
    images: dict = {}
    for n, entry in enumerate(doc["images"]):
        where = f"{source} images[{n}]"
        key = _id(entry.get("id")) if isinstance(entry, dict) else None
        if key is None or not isinstance(entry.get("file_name"), str) or not entry["file_name"]:
            skipped.append(Skipped(where, "the entry has no 'id' (a whole number or a text) or no 'file_name' "
                                          "(a text)."))
            continue
        name = clip(entry["file_name"], 500)
        try:
            size = _coco_size(entry)
        except ValueError as err:
            images[key] = (name, None, f"its image entry {where} was left out: {err}.")
            skipped.append(Skipped(f"{where} ({name})", f"{err}."))
            continue
        images[key] = (name, size, None)
    out: dict = {}
    budget = MAX_FILE_MASK_PIXELS
    for n, obj in enumerate(doc["annotations"]):
        where = f"{source} annotations[{n}]"
        if not isinstance(obj, dict):
            skipped.append(Skipped(where, "the entry is not an object."))
            continue
        image_id = _id(obj.get("image_id"))
        if image_id is None:
            skipped.append(Skipped(where, f"image_id {clip(json.dumps(obj.get('image_id')), 60)} is not a whole "
                                          "number or a text."))
            continue
        image = images.get(image_id)
        if image is None:
            skipped.append(Skipped(where, f"image_id {clip(repr(image_id), 60)} is not among the file's images."))
            continue
        name, size, refused = image
        if refused:
            skipped.append(Skipped(f"{where} ({name})", refused))
            continue
        category = _id(obj.get("category_id"))
        label = categories.get(category, "") if category is not None else ""
        where += f" ({name}{', ' + label if label else ''})"
        try:
            ann = _coco_object(obj, name, size, label, where, budget)
            if ann.mask is not None:
                budget -= ann.mask.size
            if image_id in out:
                out[image_id].merge(ann)
            else:
                out[image_id] = ann
        except (ValueError, TypeError, OverflowError, MemoryError) as err:
            skipped.append(Skipped(where, f"{clip(err, 300)}."))
            continue
    return list(out.values()), skipped


def _coco_size(entry: dict) -> tuple[int, int] | None:
    """(width, height) of a COCO image entry; None when not given (or 0, as some tools write)."""
    if entry.get("width") in (None, 0, "") and entry.get("height") in (None, 0, ""):
        return None
    w = _whole(entry.get("width"), "width", 0, MAX_SIDE)
    h = _whole(entry.get("height"), "height", 0, MAX_SIDE)
    if w == 0 or h == 0:
        return None
    _check_pixels(w, h, "the image")
    return w, h


def _coco_object(obj: dict, name: str, size, label: str, where: str, budget: int = MAX_FILE_MASK_PIXELS
                 ) -> Annotation:
    seg = obj.get("segmentation")
    if seg:
        if isinstance(seg, list):
            if size is None:
                raise ValueError("a polygon needs the image's width and height in 'images'")
            if size[0] * size[1] > budget:
                raise ValueError(f"the file's masks add up to more than {MAX_FILE_MASK_PIXELS:,} pixels; this "
                                 "object is left out")
            mask = _polygons_mask(seg, size[1], size[0])
        elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
            dims = seg["size"]
            if not isinstance(dims, (list, tuple)) or len(dims) != 2:
                raise ValueError("the RLE 'size' must be [height, width]")
            h = _whole(dims[0], "the RLE height", 1, MAX_SIDE)
            w = _whole(dims[1], "the RLE width", 1, MAX_SIDE)
            _check_pixels(w, h, "the RLE")
            if size is not None and (w, h) != size:
                raise ValueError(f"the RLE is {w}x{h} but the image entry says {size[0]}x{size[1]}")
            if w * h > budget:
                raise ValueError(f"the file's masks add up to more than {MAX_FILE_MASK_PIXELS:,} pixels; this "
                                 "object is left out")
            mask = decode_rle(seg["counts"], h, w)
            size = (w, h)
        else:
            raise ValueError("'segmentation' is neither a list of polygons nor an RLE")
        if not mask.any():
            raise ValueError("the segmentation is empty")
        return Annotation(image=name, mask=mask, size=size, sources=[where])
    bbox = obj.get("bbox")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise ValueError("neither a 'segmentation' nor a 'bbox' [x, y, width, height]")
    x, y = _number(bbox[0], "bbox x"), _number(bbox[1], "bbox y")
    w, h = _number(bbox[2], "bbox width"), _number(bbox[3], "bbox height")
    if w < 0 or h < 0:
        raise ValueError(f"the bbox has a negative width or height ({_num(w)} x {_num(h)})")
    return Annotation(image=name, boxes=[_box(x, y, x + w, y + h, label)], size=size, sources=[where])


def read_mask(data: bytes, source: str, image: str | None = None) -> Annotation:
    """A binary or label mask PNG: every non-zero pixel is in the region.

    In a label mask with two or more labels besides 255, 255 is Pascal VOC's "void" border
    and is left out. RGB masks count a pixel when any channel is non-zero; RGBA masks use the
    alpha channel when it is not uniform.

    Args:
        data: the PNG's bytes.
        source: its name (the image it belongs to is found by the stem, ``_mask`` etc. removed).
        image: the image name, if known.
    Raises:
        ValueError: not an image, or an empty mask.

    Example:
        >>> read_mask(open("masks/cat.png", "rb").read(), "masks/cat.png").mask.shape
        (300, 451)
    """
    try:
        picture = Image.open(io.BytesIO(data))
        _check_pixels(picture.width, picture.height, f"{source}: the mask")   # before decoding a pixel
        picture.load()
    except ValueError as err:
        if str(err).startswith(source):
            raise ValueError(f"{err}.") from None
        raise ValueError(f"{source}: the mask is not a readable image ({clip(err, 200)}).") from None
    except Image.DecompressionBombError:
        raise ValueError(f"{source}: the mask has more than {MAX_MASK_PIXELS:,} pixels, the limit; it was not "
                         "decoded.") from None
    except (UnidentifiedImageError, OSError, MemoryError) as err:
        raise ValueError(f"{source}: the mask is not a readable image ({clip(err, 200)}).") from None
    if picture.mode == "1":
        region = np.asarray(picture, dtype=bool)
    elif picture.mode in ("RGBA", "LA"):
        alpha = np.asarray(picture.getchannel("A"))
        region = alpha > 0 if alpha.min() != alpha.max() else \
            (np.asarray(picture.convert("RGB")) > 0).any(axis=2)
    elif picture.mode in ("RGB", "CMYK", "YCbCr"):
        region = (np.asarray(picture.convert("RGB")) > 0).any(axis=2)
    else:  # L, P, I, I;16, F: values are labels
        values = np.asarray(picture)
        labels = set(np.unique(values).tolist()) - {0}
        region = values != 0
        if VOC_VOID in labels and len(labels) >= 3:
            region &= values != VOC_VOID
    if not region.any():
        raise ValueError(f"{source}: the mask is empty (no pixel is marked).")
    name = image or _mask_image_name(source)
    return Annotation(image=name, mask=region, size=(picture.width, picture.height), sources=[source])


def _mask_image_name(source: str) -> str:
    stem = stem_of(source)
    for ending in MASK_ENDINGS:
        if stem.lower().endswith(ending) and len(stem) > len(ending):
            return stem[: -len(ending)]
    return stem


def is_mask_path(name: str) -> bool:
    """Whether a PNG in a mixed folder or ZIP is a mask: it sits in a folder named like
    ``masks`` / ``annotations`` / ``gt`` or its stem ends in ``_mask`` / ``_gt`` / ``_label``."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.suffix.lower() not in (".png", ".bmp", ".tif", ".tiff"):
        return False
    if any(part.lower() in MASK_FOLDERS for part in p.parts[:-1]):
        return True
    return any(p.stem.lower().endswith(e) for e in MASK_ENDINGS)


def read_annotation_file(name: str, data: bytes) -> tuple[list[Annotation], list[Skipped]]:
    """Read one annotation file of any supported kind, chosen by its suffix (.csv, .xml, .json,
    or an image = a mask). Problems come back as ``Skipped`` entries, never as exceptions.

    Example:
        >>> anns, skipped = read_annotation_file("boxes.csv", data)
    """
    suffix = PurePosixPath(name).suffix.lower()
    try:
        if suffix == ".csv":
            return read_csv(data, name)
        if suffix == ".xml":
            return read_voc(data, name)
        if suffix == ".json":
            return read_coco(data, name)
        if suffix in IMAGE_SUFFIXES:
            return [read_mask(data, name)], []
    except ValueError as err:
        text = str(err)
        return [], [Skipped(name, text[len(name) + 2:] if text.startswith(name + ": ") else text)]
    except Exception as err:  # noqa: BLE001  a reader's oversight must not stop the other files
        return [], [Skipped(name, f"the file could not be read ({type(err).__name__}: {clip(err, 200)}).")]
    return [], [Skipped(name, f"not an annotation file (expected .csv, .xml, .json or a mask PNG; got "
                              f"'{suffix or 'no suffix'}').")]


# ---- data sets -------------------------------------------------------------------------------

@dataclass
class Item:
    """One annotated image of a data set; the image is read only when ``image()`` is called."""

    name: str
    annotation: Annotation
    load: Callable[[], "Image.Image"]

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


def match(images: Sequence[tuple[str, object]], annotations: Iterable[Annotation],
          skipped: list[Skipped] | None = None, description: str = "") -> Dataset:
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
            skipped.append(Skipped(name, f"another image, {by_stem[stem][0]}, has the same name stem "
                                         f"'{stem}'; annotations are matched by stem, so only the first "
                                         "is used (masks belong in a folder named masks/ or end in _mask)."))
            continue
        by_stem[stem] = (name, source)
    merged: dict[str, Annotation] = {}
    for ann in annotations:
        key = ann.key
        try:
            if key in merged:
                merged[key].merge(ann)
            else:
                merged[key] = Annotation(image=ann.image, boxes=list(ann.boxes), mask=ann.mask,
                                         size=ann.size, sources=list(ann.sources))
        except ValueError as err:
            skipped.append(Skipped(ann.image, f"{err}"))
    items = []
    for key, ann in merged.items():
        if key not in by_stem:
            where = ann.sources[0] if ann.sources else "the annotations"
            more = f" and {len(ann.sources) - 1} more" if len(ann.sources) > 1 else ""
            skipped.append(Skipped(ann.image, f"annotated in {where}{more}, but no image named "
                                              f"'{key}' was given."))
    for key, (name, source) in sorted(by_stem.items(), key=lambda kv: kv[1][0]):
        ann = merged.get(key)
        if ann is None:
            skipped.append(Skipped(name, f"no annotation for this image (no mask, box or object names "
                                         f"'{key}')."))
            continue
        items.append(Item(name=name, annotation=ann, load=_loader(source, name)))
    return Dataset(items=items, skipped=skipped, description=description)


def dataset_from_files(images: Sequence[tuple[str, object]], annotation_files: Sequence[tuple[str, bytes]],
                       description: str = "") -> Dataset:
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
    return match(images, annotations, skipped,
                 description or f"{len(images)} image(s), {len(annotation_files)} annotation file(s)")


def _files_under(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


def _read_bytes(path: Path, limit: int) -> bytes:
    if path.stat().st_size > limit:
        raise ValueError(f"{path}: the file is too large ({path.stat().st_size / 2**20:,.0f} MiB).")
    return path.read_bytes()


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
            if annotations is not None and _inside(p, annotations):
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
    where = f"images from {images}, annotations from {annotations}" if annotations else \
        f"images and annotations from {images}"
    return match(pictures, found, skipped, where)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return folder.is_dir()
    except ValueError:
        return False


def _strip_name(err: Exception, name: str) -> str:
    text = str(err)
    return text[len(name) + 2:] if text.startswith(name + ": ") else text


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
    tail = data[-(22 + 65535):]
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return None
    entries, size = struct.unpack("<HI", tail[at + 10:at + 16])
    if entries == 0xFFFF or size == 0xFFFFFFFF:       # ZIP64: the locator sits just before
        base = len(data) - len(tail) + at
        locator = data[base - 20:base]
        if len(locator) == 20 and locator[:4] == b"PK\x06\x07":
            (offset,) = struct.unpack("<Q", locator[8:16])
            record = data[offset:offset + 56]
            if len(record) == 56 and record[:4] == b"PK\x06\x06":
                entries, size = struct.unpack("<QQ", record[32:48])
    return entries, size


def _zip_contents(source: str | os.PathLike | bytes, name: str = "upload.zip"
                  ) -> tuple[list[tuple[str, object]], list[Annotation], list[Skipped]]:
    """(images as (name, reader), annotations read, problems) of a ZIP, opened once.

    The file count and the size of the file list are checked before the list is parsed; every
    member is inflated in chunks with its real bytes counted (see ``_read_member``)."""
    label = str(source) if isinstance(source, (str, os.PathLike)) else name
    data = Path(source).read_bytes() if isinstance(source, (str, os.PathLike)) else bytes(source)
    directory = _zip_directory(data)
    if directory is not None:
        entries, size = directory
        if entries > MAX_ZIP_MEMBERS:
            raise ValueError(f"{label}: the archive holds {entries:,} files; the limit is {MAX_ZIP_MEMBERS:,}.")
        if size > MAX_ZIP_DIRECTORY:
            raise ValueError(f"{label}: the archive's list of files is {size / 2**20:,.1f} MiB; the limit is "
                             f"{MAX_ZIP_DIRECTORY // 2**20} MiB.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise ValueError(f"{label}: not a readable ZIP file ({clip(err, 200)}).") from None
    if len(members) > MAX_ZIP_MEMBERS:
        raise ValueError(f"{label}: the archive holds {len(members):,} files; the limit is {MAX_ZIP_MEMBERS:,}.")
    skipped: list[Skipped] = []
    annotations: list[Annotation] = []
    pictures: list[tuple[str, object]] = []
    lock = threading.Lock()   # one ZipFile, read from whichever thread needs an image

    def reader(member: zipfile.ZipInfo, limit: int) -> Callable[[], bytes]:
        def read() -> bytes:
            with lock:
                return _read_member(archive, member, limit)
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
                skipped.append(Skipped(path, f"not read: the archive's annotation files already reached "
                                             f"{MAX_ZIP_ANNOTATIONS // 2**20} MiB unpacked, the limit for one archive."))
                continue
            try:
                content = _read_member(archive, m, min(MAX_ANNOTATION_BYTES if suffix in ANNOTATION_SUFFIXES
                                                       else MAX_BYTES, left))
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
            skipped.append(Skipped(path, f"neither an image nor an annotation file ('{clip(suffix, 20) or 'no suffix'}')."))
    return pictures, annotations, skipped


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int) -> bytes:
    """The bytes of one ZIP member, inflated ``_ZIP_CHUNK`` bytes at a time and refused as soon
    as more than ``limit`` real bytes came out (whatever its header says).

    Raises:
        ValueError: too large, encrypted, damaged, or in a compression method not supported.
    """
    path = member.filename
    if member.file_size > limit:
        raise ValueError(f"{path}: the file is too large ({member.file_size / 2**20:,.1f} MiB unpacked; the "
                         f"limit is {limit / 2**20:,.0f} MiB).")
    out = bytearray()
    try:
        with archive.open(member) as f:
            while True:
                chunk = f.read(_ZIP_CHUNK)
                if not chunk:
                    break
                out += chunk
                if len(out) > limit:
                    raise ValueError(f"{path}: the file unpacks to more than {limit / 2**20:,.0f} MiB (its header "
                                     f"says {member.file_size:,} bytes); refused after reading that much.")
    except ValueError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError, NotImplementedError,
            zlib_error) as err:
        raise ValueError(f"{path}: cannot read it from the archive: it is damaged, encrypted, or unpacks to more "
                         f"than its header says ({clip(err, 120)}).") from None
    return bytes(out)
