"""Reading one annotation file: CSV boxes, Pascal VOC XML, mask PNGs, and the dispatch by file type
(COCO JSON in ``coco``)."""

from __future__ import annotations

import csv
import io
from pathlib import PurePosixPath

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as ET
from PIL import Image, UnidentifiedImageError

from ...engine.safe_text import clip
from .coco import read_coco
from .records import (
    IMAGE_SUFFIXES,
    MASK_ENDINGS,
    MASK_FOLDERS,
    MAX_MASK_PIXELS,
    MAX_SIDE,
    VOC_VOID,
    Annotation,
    Box,
    Skipped,
    check_pixels,
    checked_box,
    checked_whole,
    decoded_text,
    stem_of,
)

_CSV_ALIASES = {
    "image": "image",
    "filename": "image",
    "file": "image",
    "file_name": "image",
    "image_name": "image",
    "name": "image",
    "path": "image",
    "image_path": "image",
    "x_min": "x_min",
    "xmin": "x_min",
    "x0": "x_min",
    "left": "x_min",
    "x1": "x_min",
    "y_min": "y_min",
    "ymin": "y_min",
    "y0": "y_min",
    "top": "y_min",
    "y1": "y_min",
    "x_max": "x_max",
    "xmax": "x_max",
    "right": "x_max",
    "x2": "x_max",
    "y_max": "y_max",
    "ymax": "y_max",
    "bottom": "y_max",
    "y2": "y_max",
    "label": "label",
    "class": "label",
    "category": "label",
    "class_name": "label",
}
_CSV_REQUIRED = ("image", "x_min", "y_min", "x_max", "y_max")


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
    text = decoded_text(data, source)
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
        raise ValueError(
            f"{source}: expected the columns image,x_min,y_min,x_max,y_max[,label]; "
            f"missing {', '.join(missing)} (the header is {','.join(rows[0])!r})."
        )
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
            box = checked_box(*(row[col[c]] for c in _CSV_REQUIRED[1:]), label=label)
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
    text = decoded_text(data, source)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise ValueError(f"{source}: not well-formed XML ({err}).") from None
    except DefusedXmlException as err:
        raise ValueError(
            f"{source}: the XML uses entities or external references, which are refused "
            f"({type(err).__name__})."
        ) from None
    if root.tag != "annotation":
        raise ValueError(
            f"{source}: not a Pascal VOC annotation (the root element is <{root.tag}>, "
            "expected <annotation>)."
        )
    image = _child_text(root, "filename", source)
    size = None
    if root.find("size") is not None:
        try:
            w = checked_whole(_child_text(root, "size/width", source), "width", 0, MAX_SIDE)
            h = checked_whole(_child_text(root, "size/height", source), "height", 0, MAX_SIDE)
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
            b = checked_box(*(box.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")), label=label)
            # 1-based inclusive indices -> edges
            ann.boxes.append(Box(b.x_min - 1, b.y_min - 1, b.x_max, b.y_max, b.label))
            ann.sources.append(where)
        except ValueError as err:
            skipped.append(Skipped(where, f"{err}."))
    if not objects:
        raise ValueError(f"{source}: the annotation has no <object>.")
    return ([ann] if ann.boxes else []), skipped


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
        check_pixels(picture.width, picture.height, f"{source}: the mask")  # before decoding a pixel
        picture.load()
    except ValueError as err:
        if str(err).startswith(source):
            raise ValueError(f"{err}.") from None
        raise ValueError(f"{source}: the mask is not a readable image ({clip(err, 200)}).") from None
    except Image.DecompressionBombError:
        raise ValueError(
            f"{source}: the mask has more than {MAX_MASK_PIXELS:,} pixels, the limit; it was not decoded."
        ) from None
    except (UnidentifiedImageError, OSError, MemoryError) as err:
        raise ValueError(f"{source}: the mask is not a readable image ({clip(err, 200)}).") from None
    if picture.mode == "1":
        region = np.asarray(picture, dtype=bool)
    elif picture.mode in ("RGBA", "LA"):
        alpha = np.asarray(picture.getchannel("A"))
        region = (
            alpha > 0 if alpha.min() != alpha.max() else (np.asarray(picture.convert("RGB")) > 0).any(axis=2)
        )
    elif picture.mode in ("RGB", "CMYK", "YCbCr"):
        region = (np.asarray(picture.convert("RGB")) > 0).any(axis=2)
    else:  # L, P, I, I;16, F: values are labels
        values = np.asarray(picture)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise ValueError(
                f"{source}: the mask holds pixel values that are not numbers (NaN) or are infinite; "
                "a mask marks pixels with finite values (0 = not marked)."
            )
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
        return [], [Skipped(name, text[len(name) + 2 :] if text.startswith(name + ": ") else text)]
    except Exception as err:  # a reader's oversight must not stop the other files
        return [], [Skipped(name, f"the file could not be read ({type(err).__name__}: {clip(err, 200)}).")]
    return [], [
        Skipped(
            name,
            f"not an annotation file (expected .csv, .xml, .json or a mask PNG; got "
            f"'{suffix or 'no suffix'}').",
        )
    ]
