"""Small annotation files that ask for huge resources: each is refused within a stated memory
(tracemalloc peak of Python allocations, which include zlib's and NumPy's buffers) and time,
with its own message, while the rest of the upload goes on. No uncaught exception reaches the
Validate page.

Real files built here byte by byte (ZIPs, PNG headers, COCO JSON), the real readers, and the
real Validate page through AppTest."""

from __future__ import annotations

import io
import json
import os
import struct
import time
import tracemalloc
import zipfile
import zlib

import pytest
import skimage
from streamlit.testing.v1 import AppTest

from saliency_core.evaluation import annotations as an

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CAT = os.path.join(os.path.dirname(skimage.__file__), "data", "chelsea.png")
MiB = 2**20


def measured(fn, *args):
    """(result, peak MiB of Python allocations, seconds)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = fn(*args)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] / MiB
    finally:
        tracemalloc.stop()
    return result, peak, seconds


def _cat() -> bytes:
    with open(CAT, "rb") as f:
        return f.read()


def _reasons(dataset) -> str:
    return " | ".join(f"{s.item}: {s.reason}" for s in dataset.skipped)


# ---- ZIP ---------------------------------------------------------------------------------------------


def test_zip_of_8000_members_is_read_in_seconds():
    """Hostile input: 8,000 small annotation files in one ZIP (the archive was re-opened per member:
    264 s). Limit: 30 s and 200 MiB on this 2-core machine."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("images/cat.png", _cat())
        for n in range(8000):
            z.writestr(
                f"boxes/{n:05d}.csv",
                f"image,x_min,y_min,x_max,y_max\ncat.png,{n % 200},10,{n % 200 + 50},90\n",
            )
    data = buf.getvalue()
    dataset, peak, seconds = measured(an.dataset_from_zip, data, "many.zip")
    assert len(dataset) == 1 and len(dataset.items[0].annotation.boxes) == 8000
    assert seconds < 30 and peak < 200, (seconds, peak)


def test_zip_listing_more_files_than_the_limit_is_refused_before_parsing_the_list():
    """Hostile input: 20,000 empty members (limit 10,000). Limit: 2 s, 20 MiB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for n in range(20_000):
            z.writestr(f"{n}.csv", b"")
    data = buf.getvalue()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ValueError, match="holds 20,000 files; the limit is 10,000"):
            an.dataset_from_zip(data, "wide.zip")
        seconds, peak = time.perf_counter() - started, tracemalloc.get_traced_memory()[1] / MiB
    finally:
        tracemalloc.stop()
    assert seconds < 2 and peak < 20 + len(data) / MiB, (seconds, peak)


@pytest.fixture(scope="module")
def inflating_zip() -> bytes:
    """A ZIP whose boxes.csv says (in both headers) it unpacks to 60 bytes but inflates to 1 GiB of
    zeros (about 5 MiB compressed), beside a good image and a good CSV."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("cat.png", _cat())
        z.writestr("good.csv", "image,x_min,y_min,x_max,y_max\ncat.png,125,70,355,285\n")
        with z.open("boxes.csv", "w") as f:
            block = bytes(MiB)
            for _ in range(1024):
                f.write(block)
    data = bytearray(buf.getvalue())
    for signature, size_at, name_len_at, fixed in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        at = data.find(signature)
        while at >= 0:
            (name_len,) = struct.unpack_from("<H", data, at + name_len_at)
            if data[at + fixed : at + fixed + name_len] == b"boxes.csv":
                struct.pack_into("<I", data, at + size_at, 60)
            at = data.find(signature, at + 4)
    return bytes(data)


def test_member_claiming_60_bytes_that_inflates_to_a_gib_is_refused(inflating_zip):
    """Hostile input: the 1 GiB member above (it once inflated to 3 GiB before it was refused).
    Limit: the per-file cap (64 MiB) + 16 MiB, and 5 s."""
    assert len(inflating_zip) < 8 * MiB
    dataset, peak, seconds = measured(an.dataset_from_zip, inflating_zip, "bomb.zip")
    assert peak < an.MAX_ANNOTATION_BYTES / MiB + 16 and seconds < 5, (peak, seconds)
    [bomb] = [s for s in dataset.skipped if s.item == "boxes.csv"]
    assert (
        "cannot read it from the archive" in bomb.reason
        and "unpacks to more than its header says" in bomb.reason
    )
    assert len(dataset) == 1 and dataset.items[0].name == "cat.png"  # the rest went on


def test_member_honest_about_a_huge_size_is_refused_from_its_header():
    """Hostile input: an annotation member of 200 MiB of zeros (limit 64 MiB). Limit: 1 s, 16 MiB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("boxes.csv", "w") as f:
            for _ in range(200):
                f.write(bytes(MiB))
    dataset, peak, seconds = measured(an.dataset_from_zip, buf.getvalue(), "big.zip")
    assert peak < 16 and seconds < 1, (peak, seconds)
    assert "the file is too large (200.0 MiB unpacked; the limit is 64 MiB)" in _reasons(dataset)


# ---- COCO, RLE, masks ----------------------------------------------------------------------------------


def _coco(annotations, images=None) -> bytes:
    images = (
        images if images is not None else [{"id": 1, "file_name": "cat.png", "width": 451, "height": 300}]
    )
    return json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "cat"}]},
        separators=(",", ":"),
    ).encode()


GOOD = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [125, 70, 230, 215]}

HOSTILE = {
    # name: (file bytes, words of the message); each limit: 2 s and 32 MiB
    "polygon_100000x100000": (
        _coco(
            [{"id": 1, "image_id": 2, "segmentation": [[0, 0, 100000, 0, 100000, 100000]]}],
            [{"id": 2, "file_name": "huge.png", "width": 100000, "height": 100000}],
        ),
        "100,000x100,000 pixels (10,000,000,000); the limit is 50,000,000",
    ),
    "rle_100000x100000": (
        _coco([{"id": 1, "image_id": 1, "segmentation": {"size": [100000, 100000], "counts": [0, 10**10]}}]),
        "the RLE is 100,000x100,000 pixels (10,000,000,000); the limit is 50,000,000",
    ),
    "width_1e400": (
        b'{"images":[{"id":2,"file_name":"x.png","width":1e400,"height":5}],"annotations":'
        b'[{"image_id":2,"segmentation":[[0,0,1,0,1,1]]}]}',
        "width is inf, expected a finite number",
    ),
    "width_10_to_30": (
        _coco(
            [{"id": 1, "image_id": 2, "segmentation": [[0, 0, 5, 0, 5, 5]]}],
            [{"id": 2, "file_name": "x.png", "width": 10**30, "height": 10**30}],
        ),
        "expected a whole number from 0 to 100,000",
    ),
    "rle_count_10_to_30": (
        _coco([{"id": 1, "image_id": 1, "segmentation": {"size": [300, 451], "counts": [10**30, 5]}}]),
        "the RLE counts must be a flat list of whole numbers",
    ),
    "list_as_image_id": (
        _coco([{"id": 1, "image_id": [1], "bbox": [1, 1, 5, 5]}]),
        "image_id [1] is not a whole number or a text",
    ),
    "list_as_image_entry_id": (
        _coco([], [{"id": [1, 2], "file_name": "x.png"}]),
        "the entry has no 'id' (a whole number or a text)",
    ),
    "dict_as_category_id": (
        json.dumps({"images": [], "annotations": [], "categories": [{"id": {"a": 1}, "name": "x"}]}).encode(),
        "the category's 'id' is not a whole number or a text",
    ),
    "compressed_rle_endless_number": (
        _coco([{"id": 1, "image_id": 1, "segmentation": {"size": [300, 451], "counts": "o" * 100_000}}]),
        "a number too long to be a pixel count",
    ),
    "polygon_point_1e300": (
        _coco([{"id": 1, "image_id": 1, "segmentation": [[0, 0, 1e300, 0, 5, 5]]}]),
        "a polygon point lies far outside the 451x300 image",
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_coco_item_gets_its_message_and_the_rest_goes_on(name):
    data, words = HOSTILE[name]
    files = [("hostile.json", data), ("good.json", _coco([GOOD]))]
    dataset, peak, seconds = measured(an.dataset_from_files, [("cat.png", _cat())], files)
    assert words in _reasons(dataset), _reasons(dataset)
    assert len(dataset) == 1 and dataset.items[0].annotation.boxes  # the good file was still read
    assert peak < 32 and seconds < 2, (peak, seconds)


def test_230_byte_coco_asking_for_9_gib_is_refused_without_allocating():
    """Hostile input: the 230-byte file of the report (a 100000 x 100000 polygon)."""
    data = HOSTILE["polygon_100000x100000"][0]
    assert len(data) <= 230
    (anns, skipped), peak, seconds = measured(an.read_coco, data, "tiny.json")
    assert anns == [] and "the limit is 50,000,000" in skipped[0].reason
    assert peak < 1 and seconds < 0.5, (peak, seconds)


def test_deeply_nested_json_is_refused_in_words():
    """Hostile input: 100,000 nested arrays (Python's JSON parser recurses)."""
    data = b"[" * 100_000 + b"]" * 100_000
    dataset, peak, seconds = measured(
        an.dataset_from_files, [("cat.png", _cat())], [("deep.json", data), ("good.json", _coco([GOOD]))]
    )
    assert "nested too deeply" in _reasons(dataset)
    assert len(dataset) == 1 and peak < 32 and seconds < 2, (peak, seconds)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height (1 bit grey) with a tiny compressed body."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("width, height", [(20_000, 10_000), (10_000, 8_000)])
def test_200_megapixel_mask_is_refused_before_decoding(width, height):
    """Hostile input: a mask PNG of a few hundred bytes declaring 200 (and 80) megapixels."""
    mask = _png_header_only(width, height)
    assert len(mask) < 200
    dataset, peak, seconds = measured(
        an.dataset_from_files, [("cat.png", _cat())], [("masks/cat.png", mask), ("good.json", _coco([GOOD]))]
    )
    assert "pixels" in _reasons(dataset) and "50,000,000" in _reasons(dataset), _reasons(dataset)
    assert len(dataset) == 1 and peak < 32 and seconds < 2, (peak, seconds)


def test_validate_page_lists_every_hostile_file_and_shows_no_exception():
    """All the hostile COCO files and the 200-megapixel mask uploaded at once to the Validate page."""
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300).run()
    at = at.switch_page("pages/validate.py").run()
    at.radio(key="validate_source").set_value("My data set (upload)")
    at = at.run()
    hostile = [(f"{name}.json", data, "application/json") for name, (data, _) in HOSTILE.items()]
    hostile += [
        ("deep.json", b"[" * 100_000 + b"]" * 100_000, "application/json"),
        ("cat_mask.png", _png_header_only(20_000, 10_000), "image/png"),
        ("good.json", _coco([GOOD]), "application/json"),
    ]
    at.file_uploader(key="validate_images").set_value([("cat.png", _cat(), "image/png")])
    at.file_uploader(key="validate_annotations").set_value(hostile)
    at = at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    captions = " ".join(c.value for c in at.caption)
    assert "1 annotated image(s) found" in captions and "will be skipped" in captions
