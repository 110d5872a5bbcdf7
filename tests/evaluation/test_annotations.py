"""Annotations: every format read, bad input turned into named skipped items, and regions that
line up with the model's resize + centre crop pixel for pixel."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest
import skimage
import torch
from PIL import Image

from saliency_core.engine.classifier import Classifier
from saliency_core.evaluation import annotations as an
from saliency_core.evaluation.annotations import Annotation, Box, CropGeometry
from saliency_core.evaluation.annotations.coco import _rle_string_counts
from saliency_core.evaluation.data import CANVAS, demo_dataset, pasted_objects

PHOTOS = os.path.join(os.path.dirname(skimage.__file__), "data")
DEMO_GEOMETRY = CropGeometry(256, 224, "bicubic")  # the demo model's resize and crop


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _photo_bytes(name: str) -> bytes:
    with open(os.path.join(PHOTOS, name), "rb") as f:
        return f.read()


def _classifier(resize: int, size: int) -> Classifier:
    return Classifier(
        name="geometry only",
        network=torch.nn.Identity(),
        labels=["a", "b"],
        fingerprint="-",
        input_size=size,
        resize=resize,
        interpolation="nearest",
    )


# ---- geometry: the region lands where the model's crop puts the pixels ---------------------------


@pytest.mark.parametrize(
    "width,height,resize,size",
    [
        (451, 300, 256, 224),  # landscape, downscale (chelsea)
        (300, 451, 256, 224),  # portrait
        (512, 512, 256, 224),  # square
        (150, 100, 256, 224),  # upscale
        (640, 480, 200, 224),  # crop larger than the resized image: torchvision pads
        (224, 400, 224, 224),  # short side already at the size: no resize
    ],
)
def test_box_region_matches_what_the_model_crops(width, height, resize, size):
    """Paint the box white on black, push the picture through Classifier.crop (nearest), and
    compare with the region computed from the coordinates alone."""
    box = Box(width * 0.3, height * 0.25, width * 0.8, height * 0.7)
    picture = np.zeros((height, width, 3), np.uint8)
    picture[int(box.y_min) : int(box.y_max), int(box.x_min) : int(box.x_max)] = 255
    seen = np.asarray(_classifier(resize, size).crop(Image.fromarray(picture)))[..., 0] > 127
    region = Annotation("x.png", boxes=[box]).region((width, height), CropGeometry(resize, size)).mask
    assert region.shape == (size, size)
    disagree = (seen != region).sum()
    edge = 2 * (seen.sum(0).max() + seen.sum(1).max())  # one pixel ring around the box at most
    assert disagree <= edge * 1.05 + 4, (disagree, edge)
    ys, xs = np.nonzero(seen)
    ry, rx = np.nonzero(region)
    assert abs(ys.min() - ry.min()) <= 1 and abs(ys.max() - ry.max()) <= 1
    assert abs(xs.min() - rx.min()) <= 1 and abs(xs.max() - rx.max()) <= 1


def test_mask_region_is_the_models_crop_of_the_mask():
    """A mask goes through exactly the image's resize and crop (nearest neighbour)."""
    rng = np.random.default_rng(0)
    mask = np.zeros((300, 451), bool)
    mask[40:260, 120:330] = True
    mask &= rng.random(mask.shape) > 0.1  # texture: any misalignment shows
    seen = np.asarray(_classifier(256, 224).crop(Image.fromarray(mask.astype(np.uint8) * 255)))[..., 0] > 127
    region = Annotation("cat.png", mask=mask, size=(451, 300)).region((451, 300), CropGeometry(256, 224)).mask
    assert np.array_equal(seen, region)


def test_box_partly_cropped_is_clipped_and_noted_box_outside_crop_is_dropped():
    # chelsea 451x300 -> 385x256, crop starts at x = 80.5 / 0.853 = 94 px in the original
    ann = Annotation("chelsea.png", boxes=[Box(50, 50, 200, 150, "half in"), Box(0, 0, 60, 60, "left edge")])
    region = ann.region((451, 300), DEMO_GEOMETRY)
    assert any("partly outside the model's centre crop" in n and "half in" in n for n in region.notes)
    assert [d.item for d in region.dropped] == ["chelsea.png box 2"]
    assert "outside the model's centre crop" in region.dropped[0].reason
    x0, y0, x1, y1, label = region.boxes[0]
    assert x0 == 0 and label == "half in" and 0 < x1 < 224
    with pytest.raises(ValueError, match="no annotated region is left"):
        Annotation("chelsea.png", boxes=[Box(0, 0, 60, 60)]).region((451, 300), DEMO_GEOMETRY)


def test_box_outside_the_image_is_dropped_and_overhang_clipped():
    ann = Annotation("a.png", boxes=[Box(500, 10, 600, 50), Box(100, 100, 700, 200)])
    region = ann.region((451, 300), DEMO_GEOMETRY)
    assert "lies outside the image (451x300 pixels)" in region.dropped[0].reason
    assert any("reaches past the image edge" in n for n in region.notes)
    assert region.mask[:, -1].any()  # clipped at the image edge, still reaching the crop's edge


def test_mask_of_the_wrong_size_and_declared_size_mismatch():
    with pytest.raises(ValueError, match=r"the mask is 100x80 pixels but the image is 451x300"):
        Annotation("a.png", mask=np.ones((80, 100), bool)).region((451, 300), DEMO_GEOMETRY)
    with pytest.raises(ValueError, match="made on a 640x480 image but the image is 451x300"):
        Annotation("a.png", boxes=[Box(1, 1, 5, 5)], size=(640, 480)).region((451, 300), DEMO_GEOMETRY)


# ---- CSV ----------------------------------------------------------------------------------------


def test_csv_rows_labels_and_bad_rows_named_by_line():
    text = (
        "image,x_min,y_min,x_max,y_max,label\n"
        "cat.png,10,20,110,90,cat\n"
        "cat.png,5,5,15,15,ear\n"
        "dog.jpg,30,30,20,60,dog\n"  # x_max < x_min
        "dog.jpg,a,1,2,3,dog\n"  # not a number
        "bird.png,1,2,3\n"  # short row
        "fish.png,4,4,4,9,fish\n"
    )  # no area
    anns, skipped = an.read_csv(text, "boxes.csv")
    assert [a.image for a in anns] == ["cat.png"]
    assert [b.label for b in anns[0].boxes] == ["cat", "ear"]
    assert anns[0].boxes[0] == Box(10, 20, 110, 90, "cat")
    reasons = {s.item: s.reason for s in skipped}
    assert "x_max (20) is smaller than x_min (30)" in reasons["boxes.csv line 4"]
    assert "x_min is 'a', expected a number" in reasons["boxes.csv line 5"]
    assert "4 fields, expected 6" in reasons["boxes.csv line 6"]
    assert "no area" in reasons["boxes.csv line 7"]


def test_csv_header_aliases_and_bom():
    anns, skipped = an.read_csv(
        "\ufefffilename,xmin,ymin,xmax,ymax\nimages/a.png,1,2,3,4\n".encode(), "b.csv"
    )
    assert not skipped and anns[0].key == "a" and anns[0].boxes[0] == Box(1, 2, 3, 4)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"name,left,top\nx.png,1,2\n", "missing x_max, y_max"),
        (b"", "the file is empty"),
        (b"\xff\xfe\x00binary", "not a text file"),
        (b"image,x_min,y_min,x_max,y_max\n", "no boxes"),
    ],
)
def test_malformed_csv_is_one_skipped_item(data, message):
    anns, skipped = an.read_annotation_file("boxes.csv", data)
    assert anns == [] and len(skipped) == 1
    assert skipped[0].item == "boxes.csv" and message in skipped[0].reason


# ---- Pascal VOC ----------------------------------------------------------------------------------

VOC = """<annotation><folder>VOC2007</folder><filename>000005.jpg</filename>
<size><width>500</width><height>375</height><depth>3</depth></size>
<object><name>chair</name><bndbox><xmin>263</xmin><ymin>211</ymin><xmax>324</xmax><ymax>339</ymax></bndbox></object>
<object><name>chair</name><bndbox><xmin>10</xmin><ymin>5</ymin><xmax>5</xmax><ymax>20</ymax></bndbox></object>
<object><name>ghost</name></object>
</annotation>"""


def test_voc_one_based_inclusive_to_edges_and_bad_objects():
    anns, skipped = an.read_voc(VOC, "000005.xml")
    (ann,) = anns
    assert ann.image == "000005.jpg" and ann.size == (500, 375)
    assert ann.boxes == [Box(262, 210, 324, 339, "chair")]  # columns 263..324 (1-based) = edges 262..324
    reasons = [s.reason for s in skipped]
    assert any("x_max (5) is smaller than x_min (10)" in r for r in reasons)
    assert any("no <bndbox>" in r for r in reasons)


@pytest.mark.parametrize(
    "text,message",
    [
        ("<annotation><filename>a.jpg</filename>", "not well-formed XML"),
        ("<root><filename>a.jpg</filename></root>", "not a Pascal VOC annotation"),
        ("<annotation><object/></annotation>", "<filename> is missing"),
        ("<annotation><filename>a.jpg</filename></annotation>", "has no <object>"),
    ],
)
def test_malformed_voc(text, message):
    anns, skipped = an.read_annotation_file("a.xml", text.encode())
    assert anns == [] and message in skipped[0].reason


# ---- COCO --------------------------------------------------------------------------------------------


def _rle_encode(counts: list[int]) -> str:
    """COCO's compressed RLE string, written from its specification (pycocotools rleToString)."""
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def test_rle_string_hand_checked_and_round_trip():
    # [5, 6, 1, 2]: the 4th count is stored as 2 - 6 = -4 -> 5 low bits 11100 = 28 -> chr(76) 'L'
    assert _rle_string_counts("561L") == [5, 6, 1, 2]
    assert _rle_encode([5, 6, 1, 2]) == "561L"
    mask = np.zeros((7, 9), bool)
    mask[2:5, 1:7] = True
    mask[6, 8] = True
    flat = mask.T.ravel()  # column-major
    # run lengths alternating 0s and 1s, starting with 0s
    counts, current, length = [], False, 0
    for v in flat:
        if v == current:
            length += 1
        else:
            counts.append(length)
            current, length = v, 1
    counts.append(length)
    assert np.array_equal(an.decode_rle(counts, 7, 9), mask)
    assert np.array_equal(an.decode_rle(_rle_encode(counts), 7, 9), mask)
    with pytest.raises(ValueError, match="covers 62 pixels, expected 7x9"):
        an.decode_rle([10, 52], 7, 9)


def test_coco_polygon_rle_bbox_and_bad_entries():
    doc = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.jpg", "width": 20, "height": 10},
            {"id": 3, "file_name": "c.jpg", "width": 50, "height": 50},
        ],
        "categories": [{"id": 7, "name": "cup"}],
        "annotations": [
            {
                "image_id": 1,
                "category_id": 7,
                "segmentation": [[10, 5, 30, 5, 30, 25, 10, 25]],
                "bbox": [0, 0, 1, 1],
            },
            {"image_id": 2, "category_id": 7, "segmentation": {"size": [10, 20], "counts": [10, 5, 185]}},
            {"image_id": 3, "category_id": 7, "bbox": [5, 6, 10, 20]},
            {"image_id": 9, "category_id": 7, "bbox": [5, 6, 10, 20]},
            {"image_id": 3, "category_id": 7, "bbox": [5, 6, -1, 20]},
            {"image_id": 3, "category_id": 7, "segmentation": {"size": [50, 50], "counts": [2500]}},
        ],
    }
    anns, skipped = an.read_coco(json.dumps(doc).encode(), "instances.json")
    by = {a.image: a for a in anns}
    poly = by["a.jpg"].mask
    assert poly.shape == (30, 40) and poly[5:26, 10:31].all() and poly.sum() == 21 * 21  # edges included
    rle = by["b.jpg"].mask
    assert (
        rle.sum() == 5 and rle[:5, 1].all()
    )  # column-major: 10 zeros fill column 0, then rows 0-4 of column 1
    assert by["c.jpg"].boxes == [Box(5, 6, 15, 26, "cup")]
    reasons = " | ".join(s.reason for s in skipped)
    assert "image_id 9 is not among the file's images" in reasons
    assert "negative width or height" in reasons
    assert "the segmentation is empty" in reasons


@pytest.mark.parametrize(
    "text,message",
    [
        ("{not json", "not valid JSON"),
        ('{"images": []}', "not a COCO annotation file"),
    ],
)
def test_malformed_coco(text, message):
    anns, skipped = an.read_annotation_file("coco.json", text.encode())
    assert anns == [] and message in skipped[0].reason


# ---- masks --------------------------------------------------------------------------------------------


def test_binary_and_label_masks():
    binary = np.zeros((30, 40), np.uint8)
    binary[5:10, 5:20] = 255
    ann = an.read_mask(_png(binary), "masks/cat_mask.png")
    assert ann.image == "cat" and ann.mask.sum() == 75 and ann.size == (40, 30)
    labels = np.zeros((30, 40), np.uint8)
    labels[0:10, 0:10] = 15  # person
    labels[20:30, 20:30] = 8  # cat
    labels[10, 0:10] = 255  # VOC void border
    ann = an.read_mask(_png(labels), "gt/2007_000032.png")
    assert ann.mask.sum() == 200 and not ann.mask[10].any()
    with pytest.raises(ValueError, match="the mask is empty"):
        an.read_mask(_png(np.zeros((5, 5), np.uint8)), "empty.png")
    with pytest.raises(ValueError, match="not a readable image"):
        an.read_mask(b"no png", "bad.png")


def test_is_mask_path():
    assert an.is_mask_path("masks/cat.png") and an.is_mask_path("x/cat_mask.png")
    assert an.is_mask_path("SegmentationClass/2007_000032.png")
    assert not an.is_mask_path("images/cat.png") and not an.is_mask_path("masks/notes.txt")


# ---- matching, files, folders, ZIP ----------------------------------------------------------------------


def test_match_reports_missing_images_and_annotations():
    anns, _ = an.read_csv("image,x_min,y_min,x_max,y_max\ncat.png,1,1,9,9\nghost.png,1,1,9,9\n", "b.csv")
    ds = an.match([("photos/cat.jpg", b"x"), ("dog.png", b"y"), ("other/cat.png", b"z")], anns)
    assert [i.name for i in ds.items] == ["photos/cat.jpg"]
    reasons = {s.item: s.reason for s in ds.skipped}
    assert "no image named 'ghost' was given" in reasons["ghost.png"]
    assert "no annotation for this image" in reasons["dog.png"]
    assert "same name stem 'cat'" in reasons["other/cat.png"]


def test_zip_with_images_masks_csv_and_junk(tmp_path):
    mask = np.zeros((300, 451), np.uint8)
    mask[50:250, 100:350] = 1
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("set/images/chelsea.png", _photo_bytes("chelsea.png"))
        z.writestr("set/images/coffee.png", _photo_bytes("coffee.png"))
        z.writestr("set/images/camera.png", _photo_bytes("camera.png"))
        z.writestr("set/masks/chelsea.png", _png(mask))
        z.writestr("set/boxes.csv", "image,x_min,y_min,x_max,y_max\ncoffee.png,170,15,420,300\n")
        z.writestr("set/readme.txt", "hello")
        z.writestr("__MACOSX/set/._chelsea.png", b"junk")
    ds = an.dataset_from_zip(buf.getvalue(), name="set.zip")
    assert [i.name for i in ds.items] == ["set/images/chelsea.png", "set/images/coffee.png"]
    chelsea = ds.items[0]
    assert chelsea.annotation.kind == "mask" and chelsea.image().size == (451, 300)
    assert ds.items[1].annotation.kind == "boxes"
    reasons = {s.item: s.reason for s in ds.skipped}
    assert "no annotation" in reasons["set/images/camera.png"]
    assert "neither an image nor an annotation" in reasons["set/readme.txt"]
    with pytest.raises(ValueError, match="not a readable ZIP"):
        an.dataset_from_zip(b"PK\x03\x04 broken", name="bad.zip")
    # the command line's --images set.zip, alone or with annotations outside the archive
    (tmp_path / "set.zip").write_bytes(buf.getvalue())
    (tmp_path / "more.csv").write_text("image,x_min,y_min,x_max,y_max\ncamera.png,228,195,405,512\n")
    alone = an.dataset_from_folder(tmp_path / "set.zip")
    assert [i.name for i in alone.items] == [i.name for i in ds.items]
    both = an.dataset_from_folder(tmp_path / "set.zip", tmp_path / "more.csv")
    assert [i.name for i in both.items] == [
        "set/images/camera.png",
        "set/images/chelsea.png",
        "set/images/coffee.png",
    ]


def test_folder_of_images_and_voc_folder(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "xml").mkdir()
    (tmp_path / "img" / "chelsea.png").write_bytes(_photo_bytes("chelsea.png"))
    (tmp_path / "img" / "broken.png").write_bytes(b"not an image")
    (tmp_path / "xml" / "chelsea.xml").write_text(
        "<annotation><filename>chelsea.png</filename><size><width>451</width><height>300</height></size>"
        "<object><name>cat</name><bndbox><xmin>126</xmin><ymin>71</ymin><xmax>355</xmax><ymax>285</ymax>"
        "</bndbox></object></annotation>"
    )
    (tmp_path / "xml" / "broken.xml").write_text(
        "<annotation><filename>broken.png</filename><object><name>x</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"
    )
    ds = an.dataset_from_folder(tmp_path / "img", tmp_path / "xml")
    assert [i.name for i in ds.items] == ["broken.png", "chelsea.png"]
    assert ds.items[1].annotation.boxes == [Box(125, 70, 355, 285, "cat")]
    with pytest.raises(ValueError, match="not an image file"):
        ds.items[0].image()  # reported by the run as a skipped item
    with pytest.raises(ValueError, match="no such folder"):
        an.dataset_from_folder(tmp_path / "nope", tmp_path / "xml")


# ---- bundled data ---------------------------------------------------------------------------------------


def test_demo_dataset_boxes_land_on_the_crop():
    ds = demo_dataset()
    assert [i.name for i in ds.items] == [
        "camera.png",
        "chelsea.png",
        "coffee.png",
        "motorcycle_left.png",
        "rocket.jpg",
    ]
    assert not ds.skipped and "too few examples" in ds.description
    for item in ds.items:
        region = item.annotation.region(item.image().size, DEMO_GEOMETRY)
        assert 0.05 < region.fraction < 0.9, (item.name, region.fraction)
        assert not region.dropped
    assert len(ds.items[0].annotation.boxes) == 2  # camera.png: tripod and camera


def test_pasted_objects_are_deterministic_and_the_box_holds_the_object():
    a, b = pasted_objects(8, seed=3), pasted_objects(8, seed=3)
    other = pasted_objects(8, seed=4)
    assert len(a) == 8 and not a.skipped
    for i in (0, 1, 5):
        x, y = np.asarray(a.items[i].image()), np.asarray(b.items[i].image())
        assert np.array_equal(x, y) and x.shape == (CANVAS, CANVAS, 3)
        assert a.items[i].annotation.boxes == b.items[i].annotation.boxes
    assert any(a.items[i].annotation.boxes != other.items[i].annotation.boxes for i in range(8))
    for item in a.items:
        picture = np.asarray(item.image()).astype(int)
        box = item.annotation.boxes[0]
        inside = np.zeros(picture.shape[:2], bool)
        inside[int(box.y_min) : int(box.y_max), int(box.x_min) : int(box.x_max)] = True
        colour = np.ptp(picture, axis=2)  # the textures are grey, the objects (but the tripod) in colour
        if box.label != "tripod":
            assert colour[inside].mean() > 10 * max(colour[~inside].mean(), 0.5), item.name
        assert colour[~inside].max() == 0, item.name  # nothing of the object outside its box
        region = item.annotation.region((CANVAS, CANVAS), DEMO_GEOMETRY)
        assert not region.notes and not region.dropped  # wholly inside the model's crop
