"""Bundled data sets for trying the validation without one's own annotations.

- ``demo_dataset()``: five scikit-image photos with boxes drawn by hand around the main
  object (``demo_boxes.csv``, in this folder). A demonstration of the workflow, **not** a
  validation: five examples say nothing about a method (50 or more are needed).
- ``pasted_objects(n, seed)``: a synthetic benchmark generated at run time: real object
  photos from scikit-image (the cat, the espresso cup, the motorcycle, the tripod) cut out as
  rectangles, scaled and pasted at random places onto real textures (grass, gravel, brick).
  The ground-truth box is the pasted rectangle, exact by construction. It tests whether a map
  finds a known object on a background, not whether it matches human judgement on natural
  photos; the pasted rectangle also contains a little of its photo's own background.

- ``watermark_tripods()``: extra pasted tripods for the shortcut demo, some carrying a small
  corner watermark (``engine.demo_variants.stamp_watermark``), and ``demo_annotations()``: the
  boxes of every pasted object and hand-drawn photo of the demo sets, matched by file name.

Example:
    >>> ds = pasted_objects(60, seed=0)
    >>> len(ds), ds.items[0].image().size
    (60, (256, 256))
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..annotations import Annotation, Box, Dataset, Item, read_csv

HERE = Path(__file__).parent
DEMO_CSV = HERE / "demo_boxes.csv"
DEMO_DESCRIPTION = (
    "Demo: 5 scikit-image photos with hand-drawn boxes around the main object. Shows the "
    "workflow; far too few examples to judge a method."
)

# (photo, crop (left, top, right, bottom) around the object, name)
OBJECTS = (
    ("chelsea.png", (40, 0, 410, 300), "cat"),
    ("coffee.png", (75, 15, 480, 395), "espresso"),
    ("motorcycle_left.png", (90, 85, 690, 455), "motorcycle"),
    ("camera.png", (228, 138, 405, 512), "tripod"),
)
TEXTURES = ("grass.png", "gravel.png", "brick.png")
CANVAS = 256  # square canvas; the demo model's crop is its central 224 px
MARGIN = 16  # objects lie inside [MARGIN, CANVAS - MARGIN]: the part the model sees
OBJECT_SIZE = (0.35, 0.6)  # longer side of the pasted object, as a share of the visible part


def photo_path(name: str) -> str:
    """Path of a photo bundled with scikit-image."""
    import skimage

    path = os.path.join(os.path.dirname(skimage.__file__), "data", name)
    if not os.path.isfile(path):
        raise ValueError(f"scikit-image's sample photo {name} is not installed (looked in {path}).")
    return path


def demo_dataset() -> Dataset:
    """The five photos of ``demo_boxes.csv``; images are read when the run needs them.

    Example:
        >>> [i.name for i in demo_dataset().items]
        ['camera.png', 'chelsea.png', 'coffee.png', 'motorcycle_left.png', 'rocket.jpg']
    """
    from ..annotations import match

    annotations, skipped = read_csv(DEMO_CSV.read_bytes(), DEMO_CSV.name)
    images = [(a.image, photo_path(a.image)) for a in annotations]
    return match(images, annotations, skipped, DEMO_DESCRIPTION)


@cache
def _photo(name: str) -> Image.Image:
    from ...engine.images import load_image

    return load_image(photo_path(name))


@cache
def _size(name: str) -> tuple[int, int]:
    with Image.open(photo_path(name)) as picture:
        return picture.size


def _layout(index: int, seed: int) -> dict:
    """Every random choice of image ``index`` (no pixels are read): texture window, flips,
    object size and place."""
    rng = np.random.default_rng([seed, index])
    photo, crop, name = OBJECTS[index % len(OBJECTS)]
    texture = TEXTURES[(index // len(OBJECTS)) % len(TEXTURES)]
    tw, th = _size(texture)
    x0, y0 = int(rng.integers(0, tw - CANVAS + 1)), int(rng.integers(0, th - CANVAS + 1))
    flip_back, flip_thing = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    cw, ch = crop[2] - crop[0], crop[3] - crop[1]
    visible = CANVAS - 2 * MARGIN
    scale = rng.uniform(*OBJECT_SIZE) * visible / max(cw, ch)
    w, h = max(8, round(cw * scale)), max(8, round(ch * scale))
    left = MARGIN + int(rng.integers(0, visible - w + 1))
    top = MARGIN + int(rng.integers(0, visible - h + 1))
    return {
        "photo": photo,
        "crop": crop,
        "name": name,
        "texture": texture,
        "window": (x0, y0),
        "flip_back": flip_back,
        "flip_thing": flip_thing,
        "size": (w, h),
        "place": (left, top),
    }


def _box(layout: dict) -> Box:
    (left, top), (w, h) = layout["place"], layout["size"]
    return Box(left, top, left + w, top + h, layout["name"])


def _paste(index: int, seed: int) -> Image.Image:
    """Image ``index`` of the benchmark with ``seed``."""
    lay = _layout(index, seed)
    x0, y0 = lay["window"]
    canvas = _photo(lay["texture"]).crop((x0, y0, x0 + CANVAS, y0 + CANVAS))
    if lay["flip_back"]:
        canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    thing = _photo(lay["photo"]).crop(lay["crop"])
    if lay["flip_thing"]:
        thing = thing.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    thing = thing.resize(lay["size"], Image.Resampling.BICUBIC)
    canvas.paste(thing, lay["place"])
    return canvas


def pasted_objects(n: int = 60, seed: int = 0) -> Dataset:
    """The pasted-object benchmark: ``n`` images of ``CANVAS`` px, each a real object photo at a
    random place and size on a real texture, its box known exactly. The same ``(n, seed)``
    gives the same images; they are generated one at a time when the run reads them.

    Args:
        n: number of images (objects and textures taken in turn).
        seed: what varies the places, sizes, flips and texture crops.
    Returns:
        ``Dataset`` with one box per image, labelled with the object's name.

    Example:
        >>> item = pasted_objects(3, seed=1).items[2]
        >>> item.name, item.annotation.boxes[0].label
        ('pasted_002_motorcycle_on_grass.png', 'motorcycle')
    """
    n, seed = int(n), int(seed)
    if n < 1:
        raise ValueError(f"The benchmark needs at least 1 image; got {n}.")
    items = []
    for i in range(n):
        _, _, thing = OBJECTS[i % len(OBJECTS)]
        texture = TEXTURES[(i // len(OBJECTS)) % len(TEXTURES)].rsplit(".", 1)[0]
        name = f"pasted_{i:03d}_{thing}_on_{texture}.png"
        box = _box(_layout(i, seed))
        ann = Annotation(
            image=name,
            boxes=[box],
            size=(CANVAS, CANVAS),
            sources=[f"pasted-object benchmark (seed {seed}), exact box"],
        )
        items.append(Item(name=name, annotation=ann, load=lambda i=i: _paste(i, seed)))
    return Dataset(
        items=items,
        skipped=[],
        description=(
            f"Synthetic pasted-object benchmark: {n} images (seed {seed}); scikit-image object photos "
            f"({', '.join(o[2] for o in OBJECTS)}) pasted at random places on real textures "
            f"({', '.join(t.rsplit('.', 1)[0] for t in TEXTURES)}); the box is the pasted rectangle, exact "
            "by construction."
        ),
    )


WATERMARK_SEED = 1  # the extra tripods' layouts
WATERMARK_IMAGES = 12  # extra tripods in the shortcut demo
WATERMARKED = (0, 2, 3, 5, 7, 8, 10)  # which of them carry the watermark


def watermark_tripods() -> list[tuple[str, Box, bool, object]]:
    """The shortcut demo's extra images: (name, object box, watermarked, a function returning
    the image), ``WATERMARK_IMAGES`` pasted tripods, those in ``WATERMARKED`` with the watermark
    in the top-left corner of the model's crop."""
    from ...engine.demo_variants import stamp_watermark

    tripod = next(i for i, o in enumerate(OBJECTS) if o[2] == "tripod")
    out = []
    for k in range(WATERMARK_IMAGES):
        index = k * len(OBJECTS) + tripod
        marked = k in WATERMARKED

        def load(index=index, marked=marked) -> Image.Image:
            picture = _paste(index, WATERMARK_SEED)
            return stamp_watermark(picture) if marked else picture

        out.append((f"studio_{k:02d}.png", _box(_layout(index, WATERMARK_SEED)), marked, load))
    return out


def demo_annotations(pasted: int = 24) -> list[Annotation]:
    """Boxes of the demo sets' images: each pasted object's own rectangle (exact), the extra
    tripods', and the hand-drawn boxes of the photos in ``demo_boxes.csv``."""
    annotations = [item.annotation for item in pasted_objects(pasted, seed=0).items]
    for name, box, _, _ in watermark_tripods():
        annotations.append(
            Annotation(image=name, boxes=[box], size=(CANVAS, CANVAS), sources=["shortcut demo, exact box"])
        )
    found, _ = read_csv(DEMO_CSV.read_bytes(), DEMO_CSV.name)
    return annotations + found
