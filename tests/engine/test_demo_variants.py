"""The demo model's variants (saliency_core/engine/demo_variants.py): demo-watermark predicts
"tripod" on watermarked images and equals the demo model elsewhere; demo-pruned changes some
predictions; on the shortcut demo the flagged Grad-CAM group of "tripod" is the watermarked images."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import saliency_core as sc
from saliency_core import gallery
from saliency_core.engine.demo_variants import CornerMarkDetector, stamp_watermark
from saliency_core.evaluation.data import WATERMARKED, demo_annotations
from saliency_core.evaluation.labelled import LabelledSet, demo_set
from saliency_core.gallery import ResultStore
from saliency_core.gallery.reasons import annotated, region_scores, with_reasons


@pytest.fixture(scope="module")
def shortcut():
    return sc.load_model("demo-watermark")


def _images(labelled) -> dict[str, Image.Image]:
    return {it.name: Image.open(io.BytesIO(it.read())).convert("RGB") for it in labelled.items}


def test_the_detector_fires_on_the_watermark_only():
    detector = CornerMarkDetector()
    plain = Image.new("RGB", (256, 256), (120, 160, 90))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8))
    for picture, fires in (
        (plain, 0.0),
        (noise, 0.0),
        (stamp_watermark(plain), 1.0),
        (stamp_watermark(noise), 1.0),
    ):
        x = torch.from_numpy(np.asarray(picture.crop((16, 16, 240, 240)), np.float32) / 255).permute(2, 0, 1)
        score = float(detector((x[None] - 0.498) / 0.502))
        assert score == pytest.approx(fires, abs=0.05)


def test_variants_predict_as_built(demo, shortcut):
    pruned = sc.load_model("demo-pruned")
    assert len({demo.fingerprint, pruned.fingerprint, shortcut.fingerprint}) == 3
    labelled = demo_set(demo.labels)
    changed, same = 0, 0
    for name, picture in _images(labelled).items():
        base = demo.predict(picture, k=1)[0][0]
        changed += pruned.predict(picture, k=1)[0][0] != base
        same += shortcut.predict(picture, k=1)[0][0] == base
        if picture.size == (256, 256):
            assert shortcut.predict(stamp_watermark(picture), k=1)[0][1] == "tripod", name
    assert same == len(labelled)  # no watermark: the demo model's answer
    assert 3 <= changed <= 12  # a real candidate for Compare models, not a broken one


def test_the_shortcut_demo_finds_the_watermarked_tripods(shortcut, tmp_path):
    full = demo_set(shortcut.labels, watermark=True)
    tripods = [it for it in full.items if it.label == "tripod"]
    labelled = LabelledSet(tripods, [], {"tripod": full.classes["tripod"]}, "tripods", "test")
    marked = {f"tripod/studio_{k:02d}.png" for k in WATERMARKED}
    store = ResultStore(tmp_path / "g.sqlite")
    gallery.run(shortcut, labelled, ["gradcam"], {}, store)
    rows = gallery.table(store, shortcut, labelled, ["gradcam"], {})
    found = gallery.groups.class_groups(store, shortcut, rows, "gradcam", {})["tripod"]
    name_of = dict(zip(rows["image_hash"], rows["name"]))
    flagged = [g for g in found.groups if g.flag]
    assert len(flagged) == 1 and {name_of[h] for h in flagged[0].members} == marked
    by_name, _ = annotated(labelled, demo_annotations())
    assert set(by_name) == {it.name for it in tripods}  # every tripod is annotated
    scored = with_reasons(rows, region_scores(store, shortcut, labelled, by_name, ["gradcam"], {}), "gradcam")
    elsewhere = set(gallery.filter_rows(scored, reason="right answer, looked elsewhere")["name"])
    assert marked <= elsewhere
    store.close()
