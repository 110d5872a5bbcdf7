"""Qualification runs: the pass rules and verdicts on real runs (a hand-built corner model, the demo
model) and on scorecard rows built by hand; Cancel and resume through the results file."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from torch import nn

import saliency_core as sc
from saliency_core.evaluation import qualification as ql
from saliency_core.evaluation.annotations import Dataset
from saliency_core.evaluation.data import pasted_objects

CHEAP = dict(
    step_fraction=0.5, sanity_images=1, stability_images=1, stability_variants=2, reproducibility_images=1
)
LOOSE = ql.QualificationRules(
    localisation_margin=-1.0, faithfulness_margin=-1.0, sanity_threshold=1.0, stability_min_spearman=0.0
)
PATCH = 32  # the corner patch the hand-built model looks at, px of its 224 px input


class CornerOnly(nn.Module):
    """Class 0's score grows with the brightness of the top-left 32 px corner and sees nothing else;
    class 1 is a constant, so class 0 is always predicted. Non-negative conv weights, no bias: the
    features (and Grad-CAM's map) are zero outside the corner."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.conv.weight.copy_(
                torch.rand(self.conv.weight.shape, generator=torch.Generator().manual_seed(0))
            )
            self.fc.weight.copy_(torch.tensor([[10.0] * 4, [0.0] * 4]))
            self.fc.bias.copy_(torch.tensor([5.0, 0.0]))

    def forward(self, x):
        mask = torch.zeros_like(x[:1, :1])
        mask[..., :PATCH, :PATCH] = 1.0
        return self.fc(self.relu(self.conv(x * mask)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def corner():
    return sc.Classifier(
        name="corner",
        network=CornerOnly().eval(),
        labels=["thing", "other"],
        fingerprint="c" * 64,
        gradcam_layer="conv",
    )


def _away_from_corner(n: int) -> Dataset:
    """Pasted-object images whose box lies well away from the crop's top-left corner."""
    full = pasted_objects(4 * n, seed=3)
    crop_offset = 16  # the 256 px canvas resized to 256, centre crop 224
    far = PATCH + 2 * 15  # beyond the corner patch and twice the pointing game's tolerance
    items = [
        i
        for i in full.items
        if any(b.x_min - crop_offset > far or b.y_min - crop_offset > far for b in i.annotation.boxes)
    ]
    assert len(items) >= n
    return Dataset(items[:n], description="pasted objects away from the corner")


def test_a_model_that_looks_only_at_a_corner_fails_localisation_for_every_method(corner):
    methods = ["gradient", "guided_backprop", "gradcam", "integrated_gradients"]
    settings = ql.QualificationSettings(methods, params={"steps": 8}, **CHEAP)
    q = ql.qualify(corner, _away_from_corner(10), settings)
    assert q.complete and q.images == 10
    for m in methods:
        rows = {r["criterion"]: r for r in q.rows if r["method"] == m}
        assert rows["pointing_game"]["verdict"] == "fail", rows["pointing_game"]
        assert rows["relevance_mass"]["verdict"] == "fail", rows["relevance_mass"]
        assert rows["pointing_game"]["figure"] == 0.0  # its maximum is always in the corner
        assert q.verdicts[m]["verdict"] == "not qualified"
        assert {"pointing_game", "relevance_mass"} <= set(q.verdicts[m]["failing"])
        assert "Fails pointing game" in q.verdicts[m]["reason"]
    assert q.qualified == []


def test_fewer_than_fifty_images_is_provisional_never_qualified(demo):
    settings = ql.QualificationSettings(["gradcam"], rules=LOOSE, **CHEAP)
    q = ql.qualify(demo, pasted_objects(4), settings)
    rows = [r for r in q.rows if r["method"] == "gradcam"]
    assert {r["verdict"] for r in rows} <= {"pass", "n/a"}  # every criterion passes these loose rules ...
    assert q.verdicts["gradcam"]["verdict"] == "provisional"  # ... and 4 images still cannot qualify
    assert "only 4 annotated image(s) scored (50 needed)" in q.verdicts["gradcam"]["reason"]
    # the same rows judged on 50 images qualify
    assert ql.overall("gradcam", rows, 50, LOOSE)["verdict"] == "qualified"
    assert q.rules["sanity_threshold"] == 1.0  # the record keeps the rules used


def test_an_interval_straddling_the_rule_is_undecided_and_provisional():
    rows = [ql.stability_row("gradient", [0.3, 0.9, 0.4, 0.8], ql.ValidationSettings(["gradient"]), LOOSE)]
    assert rows[0]["verdict"] == "pass"
    strict = ql.QualificationRules(stability_min_spearman=0.6)
    row = ql.stability_row(
        "gradient", [0.3, 0.9, 0.4, 0.8], ql.ValidationSettings(["gradient"], seed=1), strict
    )
    assert row["low"] < 0.6 < row["high"] and row["verdict"] == "undecided"
    verdict = ql.overall("gradient", [row], 80, strict)
    assert verdict["verdict"] == "provisional" and "undecided: stability" in verdict["reason"]


def test_reproducibility_reads_the_recorded_detail_of_averaging_methods():
    rules = ql.QualificationRules(max_reproducible_px=4.0)
    ok = ql.reproducibility_row(
        "smoothgrad", [{"px": 2.0, "recorded": True}, {"px": 4.0, "recorded": True}], 224, rules
    )
    assert (ok["verdict"], ok["figure"], ok["low"]) == ("pass", 4.0, 2.0)
    coarse = ql.reproducibility_row("smoothgrad", [{"px": 8.0, "recorded": True}], 224, rules)
    assert coarse["verdict"] == "fail" and "8 px" in coarse["detail"]
    never = ql.reproducibility_row("smoothgrad", [{"px": None, "recorded": True}], 224, rules)
    assert never["verdict"] == "fail" and "coarsest" in never["detail"]
    unknown = ql.reproducibility_row("smoothgrad", [{"px": None, "recorded": False}], 224, rules)
    assert unknown["verdict"] == "undecided" and "not recorded" in unknown["detail"]
    assert (
        ql.reproducibility_row("smoothgrad", [{"px": 8.0, "recorded": True}], 448, rules)["verdict"] == "pass"
    )
    assert ql.reproducibility_row("gradient", [], 224, rules)["verdict"] == "n/a"
    # the figure comes from the diagnostics the way the pipeline records them
    from saliency_core.engine.detail import reproducible_px

    assert reproducible_px({"convergence": {"verdict": "settled", "reproducible_px": 2.0}}) == 2.0


def test_cancel_keeps_the_finished_units_and_a_new_run_resumes(corner, tmp_path):
    dataset = _away_from_corner(5)
    settings = ql.QualificationSettings(["gradient"], **CHEAP)
    results = tmp_path / "run.jsonl"
    stop = threading.Event()

    def progress(done, total, what):
        if done >= 2:
            stop.set()

    partial = ql.QualificationRun(corner, dataset, settings, results=results).run(
        progress=progress, cancel=stop
    )
    assert not partial.complete and partial.images == 2
    assert "the run was stopped before the end" in partial.verdicts["gradient"]["reason"]
    assert len(results.read_text().splitlines()) == 1 + 2  # the header and two finished images
    seen = []
    again = ql.QualificationRun(corner, dataset, settings, results=results)
    assert len(again.done) == 2
    full = again.run(progress=lambda d, t, w: seen.append((d, w)))
    assert seen[0] == (2, "resumed") and full.complete and full.images == 5
    fresh = ql.qualify(corner, dataset, settings)
    assert json.dumps(fresh.rows) == json.dumps(full.rows)  # resumed = computed in one go
    other = ql.QualificationSettings(["gradient"], seed=1, **CHEAP)
    assert ql.QualificationRun(corner, dataset, other, results=results).done == {}  # other settings: anew


def test_rules_out_of_range_are_refused_in_words():
    with pytest.raises(ValueError, match="sanity threshold must be between 0.0 and 1.0"):
        ql.QualificationSettings(["gradient"], rules=ql.QualificationRules(sanity_threshold=2)).check()
    with pytest.raises(ValueError, match="minimum number of images"):
        ql.QualificationRules(min_images=0).check()


def test_guided_backprop_fails_the_sanity_criterion_on_the_demo_model(demo):
    """The one real demo-model qualification: guided backprop's maps stay the same when the top half
    of the network is re-initialised, so it is not qualified, and the reason says so in words."""
    settings = ql.QualificationSettings(
        ["gradient", "guided_backprop"],
        step_fraction=0.5,
        sanity_images=3,
        stability_images=1,
        stability_variants=2,
    )
    q = ql.qualify(demo, pasted_objects(6), settings)
    guided = q.verdicts["guided_backprop"]
    assert guided["verdict"] == "not qualified" and "sanity" in guided["failing"]
    assert "randomisation sanity check" in guided["reason"]
    assert "stays like the trained model's when the model is destroyed" in guided["reason"]
    sanity = {r["method"]: r for r in q.rows if r["criterion"] == "sanity"}
    assert sanity["gradient"]["verdict"] == "pass" and sanity["gradient"]["high"] < 0.5
    assert sanity["guided_backprop"]["high"] >= 0.5
    assert q.verdicts["gradient"]["verdict"] != "qualified"  # 6 images: provisional at best
    table = q.table()
    assert list(table.columns) == list(ql.COLUMNS)
    assert len(table) == 2 * len(ql.CRITERIA) + 2


def test_the_demo_qualifies_the_sidebars_default_methods():
    """The demo's qualification covers the methods every page starts with (pages/_defaults.py)."""
    import pages._defaults as page_defaults

    assert list(ql.DEMO_METHODS) == list(page_defaults.METHODS)
    settings = ql.demo_settings()
    assert settings.methods == list(page_defaults.METHODS) and settings.step_fraction == ql.DEMO_STEP
