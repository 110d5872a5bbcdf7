"""Annotation records (boxes, regions, the model's crop geometry), the limits on hostile files,
and the checks every reader applies to a number it reads."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
from PIL import Image
from torchvision.transforms import functional as TF

from ...engine.images import MAX_PIXELS
from ...engine.safe_text import clip

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
ANNOTATION_SUFFIXES = (".csv", ".xml", ".json")
# a PNG in a folder with one of these names, or with one of these stem endings, is a mask
MASK_FOLDERS = {
    "mask",
    "masks",
    "annotation",
    "annotations",
    "label",
    "labels",
    "gt",
    "ground_truth",
    "groundtruth",
    "segmentation",
    "segmentations",
    "segmentationclass",
    "segmentationobject",
}
MASK_ENDINGS = ("_mask", "-mask", ".mask", "_gt", "-gt", "_label", "_labels", "_seg", "_segmentation")
MAX_ANNOTATION_BYTES = 64 * 2**20  # a larger annotation file is refused
MAX_ZIP_MEMBERS = 10_000  # files in one ZIP
MAX_ZIP_DIRECTORY = 8 * 2**20  # bytes of a ZIP's central directory (its list of files)
MAX_ZIP_ANNOTATIONS = 256 * 2**20  # inflated bytes of all annotation files read from one ZIP
MAX_MASK_PIXELS = MAX_PIXELS  # one mask, polygon or RLE (width x height)
MAX_SIDE = 100_000  # pixels on a side an annotation may declare
MAX_FILE_MASK_PIXELS = 2_000_000_000  # pixels of all masks rasterised from one COCO file
MAX_POLYGON_NUMBERS = 1_000_000  # coordinates in one COCO object's polygons
VOC_VOID = 255  # Pascal VOC label masks mark object borders with 255


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
        return (
            f"{name}box x {number_text(self.x_min)}-{number_text(self.x_max)}, "
            f"y {number_text(self.y_min)}-{number_text(self.y_max)}"
        )


def number_text(v: float) -> str:
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
    def of(cls, model) -> CropGeometry:
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

    def merge(self, other: Annotation) -> None:
        """Add ``other``'s marks (same image) to this one: the region becomes the union."""
        if other.mask is not None:
            if self.mask is None:
                self.mask = other.mask
            elif self.mask.shape != other.mask.shape:
                raise ValueError(
                    f"two masks of different sizes for {self.image}: "
                    f"{_shape(self.mask)} ({self.sources[0]}) and {_shape(other.mask)} "
                    f"({other.sources[0]})."
                )
            else:
                self.mask = self.mask | other.mask
        if other.size is not None and self.size is not None and other.size != self.size:
            raise ValueError(
                f"{other.sources[0]} was made on a {other.size[0]}x{other.size[1]} image "
                f"but {self.sources[0]} on a {self.size[0]}x{self.size[1]} one."
            )
        self.size = self.size or other.size
        self.boxes += other.boxes
        self.sources += other.sources

    def _check_size(self, width: int, height: int) -> None:
        """Raise ValueError if the mask or the declared size does not match the image."""
        if self.mask is not None and self.mask.shape != (height, width):
            raise ValueError(
                f"the mask is {_shape(self.mask)} pixels but the image is {width}x{height}; a "
                "mask must have the size of its image."
            )
        if self.size is not None and tuple(self.size) != (width, height):
            raise ValueError(
                f"the annotation was made on a {self.size[0]}x{self.size[1]} image but the "
                f"image is {width}x{height} pixels."
            )

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
        self._check_size(width, height)
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
                dropped.append(
                    Skipped(name, f"{box.describe()} lies outside the image ({width}x{height} pixels).")
                )
                continue
            clipped = Box(
                max(box.x_min, 0.0),
                max(box.y_min, 0.0),
                min(box.x_max, float(width)),
                min(box.y_max, float(height)),
                box.label,
            )
            if clipped != box:
                notes.append(f"{box.describe()} reaches past the image edge ({width}x{height}); clipped")
            x0, y0, x1, y1 = geometry.box_to_crop(clipped, width, height)
            cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(s)), min(y1, float(s))
            if cx1 <= cx0 or cy1 <= cy0:
                dropped.append(
                    Skipped(
                        name,
                        f"{box.describe()} lies outside the model's centre crop "
                        f"(the model never sees that part of the image).",
                    )
                )
                continue
            kept = (cx1 - cx0) * (cy1 - cy0) / max((x1 - x0) * (y1 - y0), 1e-12)
            if kept < 0.999:
                notes.append(
                    f"{box.describe()} is partly outside the model's centre crop; {kept:.0%} of it kept"
                )
            # pixel i covers [i, i+1): rounded edges, at least one pixel
            c0, r0 = min(int(round(cx0)), s - 1), min(int(round(cy0)), s - 1)
            c1, r1 = max(int(round(cx1)), c0 + 1), max(int(round(cy1)), r0 + 1)
            mask[r0:r1, c0:c1] = True
            boxes.append((cx0, cy0, cx1, cy1, box.label))
        if not mask.any():
            why = (
                "; ".join(d.reason for d in dropped)
                or "nothing of the marked region is inside the model's centre crop."
            )
            raise ValueError(f"no annotated region is left on the model's input: {why}")
        return Region(mask=mask, boxes=boxes, notes=notes, dropped=dropped)


def _shape(mask: np.ndarray) -> str:
    return f"{mask.shape[1]}x{mask.shape[0]}"


def stem_of(name: str) -> str:
    """The file stem images and annotations are matched by (folders and suffix dropped)."""
    return PurePosixPath(str(name).replace("\\", "/")).stem


def decoded_text(data: bytes | str, source: str) -> str:
    if isinstance(data, str):
        return data
    if len(data) > MAX_ANNOTATION_BYTES:
        raise ValueError(
            f"{source}: the file is too large ({len(data) / 2**20:,.0f} MiB; the limit is "
            f"{MAX_ANNOTATION_BYTES // 2**20} MiB)."
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{source}: not a text file (it is not UTF-8).") from None


def checked_number(value, what: str) -> float:
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


def checked_whole(value, what: str, low: int, high: int) -> int:
    """A whole number in [low, high] from a JSON / XML value (ints, integral floats, digits);
    ValueError naming ``what`` otherwise."""
    v = checked_number(value, what)
    if v != int(v) or not low <= v <= high:
        raise ValueError(f"{what} is {clip(value, 60)}, expected a whole number from {low:,} to {high:,}")
    return int(v)


def coco_id(value):
    """A COCO id as a dict key (a whole number or a text), or None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, str)):
        return value
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    return None


def check_pixels(width: int, height: int, what: str) -> None:
    if width * height > MAX_MASK_PIXELS:
        raise ValueError(
            f"{what} is {width:,}x{height:,} pixels ({width * height:,}); the limit is "
            f"{MAX_MASK_PIXELS:,} pixels"
        )


def checked_box(x_min, y_min, x_max, y_max, label: str = "") -> Box:
    """A checked box: numbers, x_max > x_min and y_max > y_min."""
    x0, y0 = checked_number(x_min, "x_min"), checked_number(y_min, "y_min")
    x1, y1 = checked_number(x_max, "x_max"), checked_number(y_max, "y_max")
    if x1 < x0:
        raise ValueError(f"x_max ({number_text(x1)}) is smaller than x_min ({number_text(x0)})")
    if y1 < y0:
        raise ValueError(f"y_max ({number_text(y1)}) is smaller than y_min ({number_text(y0)})")
    if x1 == x0 or y1 == y0:
        raise ValueError(
            f"the box has no area (x {number_text(x0)}-{number_text(x1)}, y "
            f"{number_text(y0)}-{number_text(y1)})"
        )
    return Box(x0, y0, x1, y1, str(label or "").strip())
