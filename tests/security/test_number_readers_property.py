"""Property tests (Hypothesis): every reader of numbers from a file (image decoding, model cards,
annotations, labels files, classes.json, report replay data) fed random and adversarial values
(NaN, infinities, 1e400, huge integers, booleans, text where a number belongs, random bytes)
raises nothing but its own error type (ValueError), gives no non-finite number, and keeps every
message under 500 characters. Every JSON the project writes parses with a strict parser."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import saliency_core as sc
from saliency_core.engine.cards import read_card
from saliency_core.engine.safe_text import json_text
from saliency_core.evaluation.annotations.readers import read_annotation_file
from saliency_core.evaluation.compare_labels import read_labels
from saliency_core.evaluation.labelled import read_mapping, read_table
from saliency_core.pipeline import dumps
from saliency_core.report.replay import read_replay, replay

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MESSAGE_LIMIT = 500
CLASSES = ["sound", "scratch", "dent"]

# numbers as a hostile file writes them: every float, huge integers, and text in their place
NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.sampled_from(
        ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400", "1e-400", "0x1p3", "1_0", "", " "]
    ),
    st.text(max_size=12),
)
JSON_VALUE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4),
)


def _strict_loads(text: str):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def _json_bytes(value) -> bytes:
    """JSON as a hostile writer produces it: NaN / Infinity and 1e400 included."""
    return json.dumps(value, allow_nan=True).encode()


def _cell(text: str) -> str:
    """``text`` as one unquoted CSV cell (no separators, quotes or line ends)."""
    return "".join(" " if c in ',"\r\n' else c for c in text)


def _message_ok(err: BaseException) -> None:
    assert len(str(err)) < MESSAGE_LIMIT, str(err)


def _finite_numbers(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite_numbers(v) for v in value)
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return bool(np.isfinite(value).all())
    return True


# ---- image decoding -------------------------------------------------------------------------------


@SETTINGS
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=64, max_size=64))
def test_float_images_decode_to_finite_pixels_or_a_value_error(values):
    buf = io.BytesIO()
    Image.fromarray(np.array(values, np.float32).reshape(8, 8), mode="F").save(buf, format="TIFF")
    try:
        image = sc.load_image(buf.getvalue(), name="scan.tif")
    except ValueError as err:
        _message_ok(err)
        return
    pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels.dtype == np.uint8 and pixels.shape == (8, 8, 3)


@SETTINGS
@given(st.binary(max_size=4096), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"GIF89a", b"BM"]))
def test_random_bytes_decode_or_give_a_value_error(data, magic):
    try:
        image = sc.load_image(magic + data, name="upload.bin")
    except ValueError as err:
        _message_ok(err)
        return
    assert image.mode == "RGB"


# ---- model cards ----------------------------------------------------------------------------------


@SETTINGS
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "input_size": JSON_VALUE,
            "resize": JSON_VALUE,
            "mean": JSON_VALUE,
            "std": JSON_VALUE,
            "threshold": JSON_VALUE,
            "channels": JSON_VALUE,
        },
    )
)
def test_cards_with_hostile_numbers_are_read_finite_or_refused(fields):
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "m.pth").write_bytes(b"\x80\x02}q\x00.")
        card = {"name": "m", "file": "m.pth", "architecture": "resnet18", "labels": CLASSES, **fields}
        Path(folder, "m.json").write_bytes(_json_bytes(card))
        try:
            read = read_card(Path(folder, "m.json"))
        except ValueError as err:
            _message_ok(err)
            return
    numbers = [read.input_size, read.resize, *read.mean, *read.std, read.threshold, read.channels]
    assert all(isinstance(n, (int, float)) and math.isfinite(n) for n in numbers)
    assert 0 < read.input_size and all(s > 0 for s in read.std)


# ---- annotations ----------------------------------------------------------------------------------


def _check_annotations(name: str, data: bytes) -> None:
    annotations, skipped = read_annotation_file(name, data)
    for skip in skipped:
        assert len(skip.reason) < MESSAGE_LIMIT and len(skip.item) < MESSAGE_LIMIT
    for annotation in annotations:
        for box in annotation.boxes:
            corners = (box.x_min, box.y_min, box.x_max, box.y_max)
            assert all(math.isfinite(c) for c in corners) and box.x_min < box.x_max and box.y_min < box.y_max


@SETTINGS
@given(st.lists(st.lists(NUMBER_TEXT, min_size=4, max_size=4), min_size=1, max_size=5))
def test_csv_boxes_with_hostile_numbers(rows):
    text = "image,x_min,y_min,x_max,y_max\n" + "".join(
        "cat.png," + ",".join(v.replace(",", " ").replace("\n", " ").replace('"', " ") for v in row) + "\n"
        for row in rows
    )
    _check_annotations("boxes.csv", text.encode())


@SETTINGS
@given(st.lists(NUMBER_TEXT, min_size=6, max_size=6))
def test_voc_xml_with_hostile_numbers(values):
    w, h, x0, y0, x1, y1 = (v.replace("<", " ").replace("&", " ") for v in values)
    xml = (
        f"<annotation><filename>cat.png</filename><size><width>{w}</width><height>{h}</height></size>"
        f"<object><name>cat</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
        f"<ymax>{y1}</ymax></bndbox></object></annotation>"
    )
    _check_annotations("cat.xml", xml.encode())


@SETTINGS
@given(st.lists(JSON_VALUE, min_size=4, max_size=4), JSON_VALUE, JSON_VALUE, JSON_VALUE)
def test_coco_json_with_hostile_numbers(bbox, width, height, image_id):
    coco = {
        "images": [{"id": image_id, "file_name": "cat.png", "width": width, "height": height}],
        "annotations": [{"id": 1, "image_id": image_id, "category_id": 1, "bbox": bbox}],
        "categories": [{"id": 1, "name": "cat"}],
    }
    _check_annotations("instances.json", _json_bytes(coco))


# ---- labels files ---------------------------------------------------------------------------------


@SETTINGS
@given(st.lists(NUMBER_TEXT, min_size=1, max_size=6))
def test_compare_labels_file_with_hostile_class_numbers(values):
    text = "image,label\n" + "".join(f"img{i}.png,{_cell(v)}\n" for i, v in enumerate(values))
    try:
        labels, problems = read_labels(text.encode(), CLASSES)
    except ValueError as err:
        _message_ok(err)
        return
    assert all(isinstance(i, int) and 0 <= i < len(CLASSES) for i in labels.values())
    assert all(len(p) < MESSAGE_LIMIT for p in problems)


@SETTINGS
@given(
    st.dictionaries(st.text(max_size=8), st.one_of(JSON_VALUE, st.lists(JSON_VALUE, max_size=3)), max_size=5)
)
def test_classes_json_with_hostile_values(mapping):
    try:
        read = read_mapping(_json_bytes(mapping))
    except ValueError as err:
        _message_ok(err)
        return
    assert _finite_numbers(read)


@SETTINGS
@given(st.lists(st.tuples(st.text(max_size=10), JSON_VALUE), max_size=5))
def test_labels_json_with_hostile_values(rows):
    try:
        read, skipped = read_table(_json_bytes({name: label for name, label in rows}), "labels.json")
    except ValueError as err:
        _message_ok(err)
        return
    assert all(isinstance(name, str) and isinstance(label, str) for name, label in read)
    assert all(len(s.reason) < MESSAGE_LIMIT for s in skipped)


# ---- report replay data ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    """A three-class model small enough to replay many hostile records quickly."""
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    return sc.Classifier(name="tiny", network=net.eval(), labels=CLASSES, fingerprint="e" * 64, input_size=16)


@SETTINGS
@given(
    st.lists(
        st.fixed_dictionaries(
            {"method": st.sampled_from(["gradient", "smoothgrad", "integrated_gradients", "rise", "nope"])},
            optional={
                "target": JSON_VALUE,
                "params": st.dictionaries(
                    st.sampled_from(["samples", "steps", "masks", "noise", "seed"]), JSON_VALUE, max_size=3
                ),
            },
        ),
        max_size=4,
    ),
    st.one_of(st.none(), JSON_VALUE),
)
def test_replay_data_with_hostile_numbers(tiny, maps, threads):
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 60)).save(buf, format="PNG")
    data = buf.getvalue()
    record = {
        "model": {"fingerprint": tiny.fingerprint},
        "environment": {"threads": threads},
        "images": [
            {
                "name": "x.png",
                "input": {
                    "base64": base64.b64encode(data).decode(),
                    "sha256": hashlib.sha256(data).hexdigest(),
                },
                "maps": maps,
            }
        ],
    }
    text = json.dumps({"schema": "saliency-lens-report/1", **record}, allow_nan=True)
    try:
        results = replay(read_replay(text), tiny)
    except ValueError as err:
        _message_ok(err)
        return
    for result in results:
        assert len(result.detail or "") < MESSAGE_LIMIT
        assert result.max_abs_diff is None or math.isfinite(result.max_abs_diff)


# ---- JSON the project writes ----------------------------------------------------------------------


@SETTINGS
@given(
    st.dictionaries(
        st.text(max_size=6), st.one_of(JSON_VALUE, st.dictionaries(st.text(max_size=4), JSON_VALUE))
    )
)
def test_every_json_writer_writes_strict_json(record):
    for text in (json_text(record), json_text(record, indent=2), dumps(record)):
        assert _finite_numbers(_strict_loads(text))
