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

The package: ``records`` (what an annotation is, the limits), ``readers`` (CSV, VOC, masks),
``coco``, ``datasets`` (matching, folders, ZIPs).

Example:
    >>> ds = dataset_from_files([("cat.png", cat_bytes)], [("boxes.csv", csv_bytes)])
    >>> item = ds.items[0]
    >>> region = item.annotation.region(item.image().size, CropGeometry.of(model))
    >>> region.mask.shape
    (224, 224)
"""

from __future__ import annotations

from .coco import decode_rle, read_coco
from .datasets import Dataset, Item, dataset_from_files, dataset_from_folder, dataset_from_zip, match
from .readers import is_mask_path, read_annotation_file, read_csv, read_mask, read_voc
from .records import (
    ANNOTATION_SUFFIXES,
    IMAGE_SUFFIXES,
    MASK_ENDINGS,
    MASK_FOLDERS,
    MAX_ANNOTATION_BYTES,
    MAX_FILE_MASK_PIXELS,
    MAX_MASK_PIXELS,
    MAX_POLYGON_NUMBERS,
    MAX_SIDE,
    MAX_ZIP_ANNOTATIONS,
    MAX_ZIP_DIRECTORY,
    MAX_ZIP_MEMBERS,
    VOC_VOID,
    Annotation,
    Box,
    CropGeometry,
    Region,
    Skipped,
    stem_of,
)

__all__ = [
    "ANNOTATION_SUFFIXES",
    "IMAGE_SUFFIXES",
    "MASK_ENDINGS",
    "MASK_FOLDERS",
    "MAX_ANNOTATION_BYTES",
    "MAX_FILE_MASK_PIXELS",
    "MAX_MASK_PIXELS",
    "MAX_POLYGON_NUMBERS",
    "MAX_SIDE",
    "MAX_ZIP_ANNOTATIONS",
    "MAX_ZIP_DIRECTORY",
    "MAX_ZIP_MEMBERS",
    "VOC_VOID",
    "Annotation",
    "Box",
    "CropGeometry",
    "Dataset",
    "Item",
    "Region",
    "Skipped",
    "dataset_from_files",
    "dataset_from_folder",
    "dataset_from_zip",
    "decode_rle",
    "is_mask_path",
    "match",
    "read_annotation_file",
    "read_coco",
    "read_csv",
    "read_mask",
    "read_voc",
    "stem_of",
]
