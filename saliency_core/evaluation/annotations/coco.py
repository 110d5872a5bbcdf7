"""COCO JSON: polygon segmentations rasterised, RLE (compressed or not) decoded, otherwise the box;
every size checked before anything is allocated."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image, ImageDraw

from ...engine.safe_text import clip
from .records import (
    MAX_FILE_MASK_PIXELS,
    MAX_MASK_PIXELS,
    MAX_POLYGON_NUMBERS,
    MAX_SIDE,
    Annotation,
    Skipped,
    check_pixels,
    checked_box,
    checked_number,
    checked_whole,
    coco_id,
    decoded_text,
    number_text,
)


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
        raise ValueError(
            f"the RLE is {width}x{height} pixels ({pixels:,}); the limit is {MAX_MASK_PIXELS:,} pixels"
        )
    if isinstance(counts, str):
        counts = _rle_string_counts(counts, limit=pixels + 1)
    elif not isinstance(counts, (list, tuple)):
        raise ValueError(
            f"the RLE counts are a {type(counts).__name__}, expected a list of numbers or a string"
        )
    elif len(counts) > pixels + 1:
        raise ValueError(f"the RLE has {len(counts):,} runs for {pixels:,} pixels")
    runs = _run_lengths(counts, pixels)
    if runs.sum() != pixels:
        raise ValueError(f"the RLE covers {int(runs.sum())} pixels, expected {height}x{width} = {pixels}")
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
    check_pixels(width, height, "the image of the polygon")
    if not all(isinstance(poly, (list, tuple)) for poly in polygons):
        raise ValueError("'segmentation' must be a list of polygons, each a list of numbers")
    total = sum(len(poly) for poly in polygons)
    if total > MAX_POLYGON_NUMBERS:
        raise ValueError(f"the polygons hold {total:,} numbers; the limit is {MAX_POLYGON_NUMBERS:,}")
    reach = 10 * max(width, height)
    shapes = []
    for poly in polygons:
        points = [checked_number(v, "a polygon coordinate") for v in poly]
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
    doc = _coco_document(data, source)
    skipped: list[Skipped] = []
    categories = _coco_categories(doc, source, skipped)
    images = _coco_images(doc, source, skipped)
    out: dict = {}
    budget = MAX_FILE_MASK_PIXELS
    for n, obj in enumerate(doc["annotations"]):
        where = f"{source} annotations[{n}]"
        if not isinstance(obj, dict):
            skipped.append(Skipped(where, "the entry is not an object."))
            continue
        image_id = coco_id(obj.get("image_id"))
        if image_id is None:
            skipped.append(
                Skipped(
                    where,
                    f"image_id {clip(json.dumps(obj.get('image_id')), 60)} is not a whole number or a text.",
                )
            )
            continue
        image = images.get(image_id)
        if image is None:
            skipped.append(
                Skipped(where, f"image_id {clip(repr(image_id), 60)} is not among the file's images.")
            )
            continue
        name, size, refused = image
        if refused:
            skipped.append(Skipped(f"{where} ({name})", refused))
            continue
        category = coco_id(obj.get("category_id"))
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


def _coco_document(data: bytes | str, source: str) -> dict:
    """The parsed JSON, checked to be an object with 'images' and 'annotations' lists."""
    text = decoded_text(data, source)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}: not valid JSON ({err.msg} at line {err.lineno}).") from None
    except RecursionError:
        raise ValueError(f"{source}: the JSON is nested too deeply to be an annotation file.") from None
    except (ValueError, MemoryError) as err:  # e.g. an integer of thousands of digits
        raise ValueError(f"{source}: the JSON cannot be read ({clip(err, 120)}).") from None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("images"), list)
        or not isinstance(doc.get("annotations"), list)
    ):
        raise ValueError(
            f"{source}: not a COCO annotation file (expected an object with 'images' and "
            "'annotations' lists)."
        )
    return doc


def _coco_categories(doc: dict, source: str, skipped: list[Skipped]) -> dict:
    """Category id -> name; entries that cannot be used are added to ``skipped``."""
    categories: dict = {}
    listed = doc.get("categories")
    for n, c in enumerate(listed if isinstance(listed, list) else []):
        if not isinstance(c, dict):
            continue
        key, name = coco_id(c.get("id")), c.get("name", "")
        if key is None or not isinstance(name, str):
            skipped.append(
                Skipped(
                    f"{source} categories[{n}]",
                    "the category's 'id' is not a whole number or a "
                    "text, or its 'name' is not a text; its name is "
                    "not shown.",
                )
            )
            continue
        categories[key] = clip(name, 200)
    return categories


def _coco_images(doc: dict, source: str, skipped: list[Skipped]) -> dict:
    """Image id -> (file name, (width, height) or None, why its objects are refused or None);
    entries that cannot be used are added to ``skipped``."""
    images: dict = {}
    for n, entry in enumerate(doc["images"]):
        where = f"{source} images[{n}]"
        key = coco_id(entry.get("id")) if isinstance(entry, dict) else None
        if key is None or not isinstance(entry.get("file_name"), str) or not entry["file_name"]:
            skipped.append(
                Skipped(where, "the entry has no 'id' (a whole number or a text) or no 'file_name' (a text).")
            )
            continue
        name = clip(entry["file_name"], 500)
        try:
            size = _coco_size(entry)
        except ValueError as err:
            images[key] = (name, None, f"its image entry {where} was left out: {err}.")
            skipped.append(Skipped(f"{where} ({name})", f"{err}."))
            continue
        images[key] = (name, size, None)
    return images


def _coco_size(entry: dict) -> tuple[int, int] | None:
    """(width, height) of a COCO image entry; None when not given (or 0, as some tools write)."""
    if entry.get("width") in (None, 0, "") and entry.get("height") in (None, 0, ""):
        return None
    w = checked_whole(entry.get("width"), "width", 0, MAX_SIDE)
    h = checked_whole(entry.get("height"), "height", 0, MAX_SIDE)
    if w == 0 or h == 0:
        return None
    check_pixels(w, h, "the image")
    return w, h


def _coco_object(
    obj: dict, name: str, size, label: str, where: str, budget: int = MAX_FILE_MASK_PIXELS
) -> Annotation:
    seg = obj.get("segmentation")
    if seg:
        if isinstance(seg, list):
            if size is None:
                raise ValueError("a polygon needs the image's width and height in 'images'")
            if size[0] * size[1] > budget:
                raise ValueError(
                    f"the file's masks add up to more than {MAX_FILE_MASK_PIXELS:,} pixels; this "
                    "object is left out"
                )
            mask = _polygons_mask(seg, size[1], size[0])
        elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
            dims = seg["size"]
            if not isinstance(dims, (list, tuple)) or len(dims) != 2:
                raise ValueError("the RLE 'size' must be [height, width]")
            h = checked_whole(dims[0], "the RLE height", 1, MAX_SIDE)
            w = checked_whole(dims[1], "the RLE width", 1, MAX_SIDE)
            check_pixels(w, h, "the RLE")
            if size is not None and (w, h) != size:
                raise ValueError(f"the RLE is {w}x{h} but the image entry says {size[0]}x{size[1]}")
            if w * h > budget:
                raise ValueError(
                    f"the file's masks add up to more than {MAX_FILE_MASK_PIXELS:,} pixels; this "
                    "object is left out"
                )
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
    x, y = checked_number(bbox[0], "bbox x"), checked_number(bbox[1], "bbox y")
    w, h = checked_number(bbox[2], "bbox width"), checked_number(bbox[3], "bbox height")
    if w < 0 or h < 0:
        raise ValueError(f"the bbox has a negative width or height ({number_text(w)} x {number_text(h)})")
    return Annotation(image=name, boxes=[checked_box(x, y, x + w, y + h, label)], size=size, sources=[where])
