"""Pages that know why say it: the Validate page lists the items it will skip, with the reasons, as
soon as the upload is read (not "after the run", which never comes when every item is skipped);
an ONNX model uploaded through the sidebar is refused with what uploads accept and why, not as
"not a PyTorch model file"."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import _hostile_onnx as hostile_onnx
import skimage
from conftest import open_page, rerun_page, shown
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
METHODS = ["gradient"]


def _photo(name: str) -> bytes:
    with open(os.path.join(skimage.data_dir, name), "rb") as f:
        return f.read()


def _unescaped(text: str) -> str:
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


def test_validate_page_lists_skip_reasons_before_any_run_when_every_item_is_skipped():
    at = open_page("pages/validate.py", METHODS)
    next(r for r in at.radio if r.label.startswith("Data set")).set_value("My data set (upload)")
    at = rerun_page(at, METHODS)
    next(u for u in at.file_uploader if u.label.startswith("Images")).set_value(
        [("chelsea.png", _photo("chelsea.png"), "image/png")]
    )
    next(u for u in at.file_uploader if u.label.startswith("Annotation files")).set_value(
        [("chelsea.xml", b"<annotation><filename>chelsea.png</filename><object>", "text/xml")]
    )
    at = rerun_page(at, METHODS)
    assert not at.exception, at.exception
    page_text = " ".join(_unescaped(c.value) for c in [*at.caption, *at.markdown, *at.info])
    assert "after the run" not in page_text
    assert next(b for b in at.button if b.label.startswith("Run validation")).disabled
    table = next(d.value for d in at.dataframe if "Reason" in d.value.columns)
    reasons = dict(zip(table["Item"], table["Reason"]))
    assert "not well-formed XML" in reasons["chelsea.xml"]
    assert "no annotation for this image" in reasons["chelsea.png"]


def test_onnx_upload_says_what_uploads_accept_and_why(monkeypatch, tmp_path):
    monkeypatch.setenv("SALIENCY_ALLOW_MODEL_UPLOAD", "1")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "models").mkdir()
    monkeypatch.setenv("SALIENCY_MODELS_DIR", str(tmp_path / "models"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.session_state["methods"] = []
    at = at.run()
    uploader = next(u for u in at.get("file_uploader") if u.key == "model_upload")
    data = hostile_onnx.times(1.0).SerializeToString()
    uploader.set_value(("parts.onnx", data, "application/octet-stream"))
    at = at.run()
    assert not at.exception, at.exception
    (error,) = [shown(e.value) for e in at.sidebar.error]
    assert "not a PyTorch model file" not in error
    assert error.startswith("Upload: parts.onnx: this is an ONNX model. The operator's models folder loads")
    assert "uploads take only weights: a state dict" in error and "loop and ask for memory" in error


def test_report_page_says_which_upload_will_be_left_out_before_building():
    at = open_page("pages/report.py", METHODS)
    next(u for u in at.file_uploader if u.label.startswith("Upload")).set_value(
        [
            ("chelsea.png", _photo("chelsea.png"), "image/png"),
            ("broken.png", b"not a picture at all", "image/png"),
        ]
    )
    at = rerun_page(at, METHODS)
    assert not at.exception, at.exception
    warnings = [_unescaped(w.value) for w in at.warning]
    assert any(
        w.startswith("Will be left out of the report: broken.png: this is not an image") for w in warnings
    )
    assert not any("chelsea.png" in w for w in warnings)
