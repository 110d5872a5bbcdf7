"""Work a file can order: report replay data, a review batch and a gallery set whose total cost is
past the operator's limit (SALIENCY_MAX_PASSES) are refused before any pass, with the estimate and
the limit in words; ONNX models whose load-time test run never ends or asks for tens of GB are
stopped by the time and memory limits of the test process."""

from __future__ import annotations

import re
import shutil
import time

import _hostile_onnx as hostile_onnx
import onnx
import pytest
import skimage

import saliency_core as sc
from saliency_core import gallery
from saliency_core.engine import estimate
from saliency_core.evaluation.labelled import open_folder
from saliency_core.report.replay import replay
from saliency_core.review import batches

LIMIT_WORDS = re.escape(
    "more than the limit of 1,000 set by the operator (SALIENCY_MAX_PASSES); nothing was started"
)


@pytest.fixture
def limit_1000(monkeypatch):
    monkeypatch.setenv(estimate.MAX_PASSES_ENV, "1000")


def _counting_explain(monkeypatch):
    """Count calls of the engine's explain / attribute: none may run when work is refused."""
    calls = []
    import saliency_core.engine.explain as engine_explain

    for name in ("explain", "attribute"):
        original = getattr(engine_explain, name)
        monkeypatch.setattr(engine_explain, name, lambda *a, _o=original, **k: calls.append(1) or _o(*a, **k))
    return calls


def test_replay_data_asking_for_too_many_passes_is_refused_before_any_map(demo, limit_1000, monkeypatch):
    """Each map is within SmoothGrad's limits; 30 of them at 50 samples are 1,500 passes."""
    calls = _counting_explain(monkeypatch)
    maps = [{"method": "smoothgrad", "params": {"samples": 50}, "target": 0}] * 30
    record = {"model": {"fingerprint": demo.fingerprint}, "images": [{"name": "x.png", "maps": maps}]}
    with pytest.raises(estimate.TooMuchWork, match="about 1,500 network passes, " + LIMIT_WORDS):
        replay(record, demo)
    assert calls == []


def test_review_batch_with_too_many_passes_is_refused(limit_1000):
    methods = {"integrated_gradients": {"steps": 100}, "gradient": {}}
    with pytest.raises(
        estimate.TooMuchWork, match="Review batch 'night shift' .20 items. asks for about 2,020"
    ):
        batches.check_batch_work(methods, 20, "night shift")
    assert batches.check_batch_work(methods, 9, "night shift") == 909


def test_gallery_set_with_too_many_passes_is_refused_before_any_map(demo, tmp_path, limit_1000, monkeypatch):
    root = tmp_path / "set"
    (root / "tiger_cat").mkdir(parents=True)
    for photo in ("chelsea.png", "coffee.png", "camera.png"):  # three different images
        shutil.copy(f"{skimage.data_dir}/{photo}", root / "tiger_cat" / photo)
    labelled = open_folder(root, demo.labels)
    store = gallery.ResultStore(tmp_path / "gallery.sqlite")
    calls = _counting_explain(monkeypatch)
    try:
        with pytest.raises(
            estimate.TooMuchWork, match="The gallery run .3 images to compute. asks for about 1,500"
        ):
            gallery.run(demo, labelled, ["smoothgrad"], {"samples": 500}, store)
    finally:
        store.close()
    assert calls == []


@pytest.mark.parametrize("raw", ["-5", "lots", "1e9", "0", "9" * 30])
def test_a_bad_limit_is_refused_in_words(monkeypatch, raw):
    monkeypatch.setenv(estimate.MAX_PASSES_ENV, raw)
    with pytest.raises(ValueError, match="SALIENCY_MAX_PASSES must be a whole number"):
        estimate.max_passes()


def test_onnx_whose_test_run_never_ends_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_LOAD_TIMEOUT", "3")
    onnx.save_model(hostile_onnx.looping(), str(tmp_path / "loop.onnx"))
    start = time.monotonic()
    with pytest.raises(ValueError, match="did not finish its test run on one image within 3 seconds"):
        sc.load_model(tmp_path / "loop.onnx")
    assert time.monotonic() - start < 60


def test_onnx_whose_shapes_ask_for_tens_of_gb_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_TRIAL_MEMORY_GB", "1")
    onnx.save_model(hostile_onnx.huge(), str(tmp_path / "huge.onnx"))
    with pytest.raises(
        ValueError, match="asked for more than 1 GiB of memory .the limit set by SALIENCY_TRIAL_MEMORY"
    ):
        sc.load_model(tmp_path / "huge.onnx")
