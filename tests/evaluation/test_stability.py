"""Stability of maps across similar inputs: similarity measures with known answers, geometric
variants that can be undone, verdicts on the real demo model, and the bad inputs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn

import saliency_core as sc
from saliency_core.evaluation import similarity as sim
from saliency_core.evaluation import stability as stab

# ---- similarity measures: ground truth -------------------------------------------------------


def test_spearman_is_rank_correlation_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, size=(30, 30)).astype(float)  # many ties
    b = a + rng.normal(size=a.shape)
    assert sim.spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel())[0], abs=1e-12)
    assert sim.spearman(a, a**3 + 7) == pytest.approx(1.0)  # any increasing transform
    assert sim.spearman(a, -a) == pytest.approx(-1.0)
    assert sim.spearman(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0
    assert sim.spearman(np.zeros((4, 4)), a[:4, :4]) == 0.0


def test_top_k_overlap_counts_shared_top_pixels():
    a = np.arange(100, dtype=float).reshape(10, 10)  # top 10% = values 90..99
    b = a.copy()
    b.ravel()[[99, 98, 97, 96, 95]] = 0  # half of a's top 10 leave b's top
    assert sim.top_k_overlap(a, a, 0.1) == 1.0
    assert sim.top_k_overlap(a, b, 0.1) == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    random_pairs = [sim.top_k_overlap(rng.random((64, 64)), rng.random((64, 64)), 0.1) for _ in range(5)]
    assert np.mean(random_pairs) == pytest.approx(0.1, abs=0.02)  # chance level = the fraction


def test_ssim_matches_scikit_image_and_masks():
    rng = np.random.default_rng(2)
    a = rng.random((64, 64))
    b = 0.5 * a + 0.5 * rng.random((64, 64))
    expected = structural_similarity(
        sim.normalise(a),
        sim.normalise(b),
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert sim.ssim(a, b) == pytest.approx(expected, abs=1e-12)
    assert sim.ssim(a, a) == pytest.approx(1.0)
    assert sim.ssim(a, 3 * a) == pytest.approx(1.0)  # scale-free
    # a region where the maps agree scores 1 when only it is compared
    c = b.copy()
    c[:, :32] = a[:, :32]
    c_scaled = c.copy()
    mask = np.zeros((64, 64), bool)
    mask[:, :32] = True
    assert sim.spearman(a, c_scaled, mask) == pytest.approx(1.0)
    assert sim.ssim(a, c, mask) > sim.ssim(a, c)


def test_compare_refuses_mismatched_maps():
    with pytest.raises(ValueError, match="same 2-D shape"):
        sim.compare(np.zeros((4, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="NaN"):
        sim.compare(np.full((16, 16), np.nan), np.zeros((16, 16)))
    with pytest.raises(ValueError, match="Unknown similarity"):
        sim.compare(np.zeros((16, 16)), np.zeros((16, 16)), measures=("psnr",))


# ---- variants -------------------------------------------------------------------------------


def test_geometric_variants_are_undone(demo, chelsea_path):
    variants = stab.make_variants(demo, chelsea_path, count=12)
    assert [v.kind for v in variants] == list(stab.KINDS) * 2
    x0 = demo.preprocess(chelsea_path)[0].numpy()
    for v in variants:
        assert tuple(v.x.shape) == (1, 3, 224, 224)
        if v.kind not in ("shift", "rotation"):
            assert v.valid is None
            continue
        aligned = np.stack([v.align(channel) for channel in v.x[0].numpy()])
        error = np.abs(aligned - x0)[:, v.valid]
        if v.kind == "shift":
            assert error.max() == 0.0, v.name  # whole pixels: exact
            assert v.valid.mean() == pytest.approx(1 - 4 / 224)
        else:
            assert error.mean() < 0.02, (v.name, error.mean())  # bilinear there and back
            assert 0.9 < v.valid.mean() < 1.0
        # and the variant really is moved: compared unaligned it differs
        assert np.abs(v.x[0].numpy() - x0).mean() > 5 * error.mean() + 1e-3
    assert variants[3].name == "shift 4 px right" and variants[9].name == "shift 4 px down"


def test_same_variants_from_same_seed(demo, coffee_path):
    a = stab.make_variants(demo, coffee_path, count=7)
    b = stab.make_variants(demo, coffee_path, count=7)
    assert all(torch.equal(u.x, v.x) for u, v in zip(a, b))
    assert not torch.equal(a[0].x, a[6].x)  # two noise draws differ


# ---- verdicts ---------------------------------------------------------------------------------


def test_map_computed_twice_is_perfectly_stable(demo, chelsea_path):
    variants = stab.similar_variants(demo, [("same photo", chelsea_path), ("same photo again", chelsea_path)])
    result = stab.stability_check(demo, chelsea_path, ["gradient"], variants=variants)
    for v in result.variants:
        assert not v.class_changed and v.confidence_drop == pytest.approx(0.0, abs=1e-6)
        assert v.scores["gradient"]["detail_px"] == 0  # an exact map: compared at the raw pixels
        for measure, value in v.scores["gradient"].items():
            if measure != "detail_px":
                assert value == pytest.approx(1.0, abs=1e-9), measure
    summary = result.summary["gradient"]
    assert summary.verdict == "stable", summary.reason
    assert "held under all 2 changes" in summary.reason


@pytest.fixture
def noise_method():
    """A registered method that ignores the model and returns fresh random noise."""
    name = "test_random_noise"

    @sc.register(name, "Random noise (test)", "Ignores the model.")
    def random_noise(network, x, target):
        return torch.randn_like(x)

    try:
        yield name
    finally:
        del sc.METHODS[name]


@pytest.fixture
def pixel_method():
    """A registered method whose map is the image itself (summed over colours): it moves
    exactly with the content, so undoing a shift or rotation must give back the original."""
    name = "test_pixels"

    @sc.register(name, "Pixels (test)", "The image as its own map.", reduction="sum")
    def pixels(network, x, target):
        return x.detach().clone()

    try:
        yield name
    finally:
        del sc.METHODS[name]


def test_undone_geometry_scores_a_content_following_map_as_stable(demo, chelsea_path, pixel_method):
    variants = stab.make_variants(demo, chelsea_path, count=4, kinds=("shift", "rotation"))
    result = stab.stability_check(demo, chelsea_path, [pixel_method], variants=variants)
    for v in result.variants:
        scores = v.scores[pixel_method]
        assert scores["spearman_abs"] > 0.999 and scores["ssim"] > 0.99, (v.name, scores)
        assert scores["top_k_overlap"] > 0.97, (v.name, scores)


def test_random_noise_method_scores_unstable(demo, chelsea_path, noise_method):
    variants = stab.similar_variants(demo, [("same photo", chelsea_path)] * 3)
    result = stab.stability_check(demo, chelsea_path, [noise_method], variants=variants)
    summary = result.summary[noise_method]
    assert summary.verdict == "unstable explanation", summary.reason
    assert abs(summary.mean["spearman_abs"]) < 0.05
    assert summary.mean["top_k_overlap"] == pytest.approx(0.1, abs=0.03)  # chance level
    assert "map moved" in summary.reason


def test_generated_variants_on_demo(demo, coffee_path):
    """Grad-CAM's coarse map moves less than the pixel gradient under the same small changes."""
    seen = []
    result = stab.stability_check(
        demo,
        coffee_path,
        ["gradient", "gradcam"],
        count=6,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[-1][0] == seen[-1][1]
    assert result.target_label == "espresso" and len(result.variants) == 6
    grad, cam = result.summary["gradient"], result.summary["gradcam"]
    assert cam.mean["spearman_abs"] > 0.9 > grad.mean["spearman_abs"]
    assert cam.mean["top_k_overlap"] > grad.mean["top_k_overlap"]
    assert cam.verdict in ("stable", "fragile prediction")
    if all(v.steady for v in result.variants):
        assert cam.verdict == "stable"
    assert all(v.valid_share < 1 for v in result.variants if v.kind in ("shift", "rotation"))
    record = json.loads(json.dumps(result.record()))
    assert record["methods"]["gradcam"]["verdict"] == cam.verdict
    assert len(result.rows()) == 12 and {"spearman_abs", "top_k_overlap", "ssim"} <= set(result.rows()[0])


def test_fragile_prediction_and_threshold_are_stated(demo, coffee_path):
    # a threshold of 0 makes any drop in confidence count as fragile
    strict = stab.StabilityThresholds(max_confidence_drop=0.0)
    variants = stab.make_variants(demo, coffee_path, count=2, kinds=("brightness",))
    result = stab.stability_check(demo, coffee_path, ["gradcam"], variants=variants, thresholds=strict)
    dropped = [v for v in result.variants if v.confidence_drop > 0]
    assert dropped, "one of brightness x1.1 / x0.9 lowers the espresso probability"
    summary = result.summary["gradcam"]
    assert summary.verdict == "fragile prediction"
    assert "fell by more than 0%" in summary.reason


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 10_000, -3, 2.5])
def test_count_out_of_range(demo, chelsea_path, count):
    with pytest.raises(ValueError, match="between 1 and 100"):
        stab.make_variants(demo, chelsea_path, count=count)


def test_image_too_small_for_shift(demo, chelsea_path):
    with pytest.raises(ValueError, match="too small for a 20 px shift.*16 px of picture above"):
        stab.make_variants(
            demo, chelsea_path, count=10, perturbation=stab.Perturbation(shift=20)
        )  # 2nd shift: down
    tight = dataclasses.replace(demo, resize=224)  # crop = whole resized image: no margin
    square = np.zeros((300, 300, 3), np.uint8)
    from PIL import Image

    with pytest.raises(ValueError, match="too small for a 4 px shift"):
        stab.make_variants(tight, Image.fromarray(square), count=4)
    # the photometric kinds still work on it
    assert len(stab.make_variants(tight, Image.fromarray(square), count=3)) == 3


def test_bad_settings_and_methods(demo, chelsea_path):
    with pytest.raises(ValueError, match="kinds must be some of"):
        stab.make_variants(demo, chelsea_path, count=2, kinds=("blur",))
    with pytest.raises(ValueError, match="rotation setting must be between"):
        stab.make_variants(demo, chelsea_path, count=2, perturbation=stab.Perturbation(rotation=90))
    with pytest.raises(ValueError, match="min spearman threshold must be between 0 and 1"):
        stab.stability_check(
            demo, chelsea_path, ["gradient"], thresholds=stab.StabilityThresholds(min_spearman=2)
        )
    with pytest.raises(ValueError, match="at least one saliency method"):
        stab.stability_check(demo, chelsea_path, [])
    with pytest.raises(ValueError, match="Unknown method 'nope'"):
        stab.stability_check(demo, chelsea_path, ["nope"])


def test_method_the_model_lacks(chelsea_path):
    """Grad-CAM on a model without convolutional layers: refused up front, in words."""
    net = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 2)).eval()
    tiny = sc.Classifier(name="tiny", network=net, labels=["a", "b"], fingerprint="0" * 64)
    with pytest.raises(ValueError, match="gradcam cannot run on this model: needs a convolutional layer"):
        stab.stability_check(tiny, chelsea_path, ["gradcam"], count=2)
    result = stab.stability_check(tiny, chelsea_path, ["gradient"], count=2, kinds=("noise",))
    assert set(result.summary) == {"gradient"}


def test_command_line(chelsea_path, capsys):
    from saliency_core.cli import main

    assert main(["stability", chelsea_path, "--method", "gradcam", "--variants", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["image", "explained", "class"]
    assert out[1].split()[0] == "chelsea.png" and "gradcam" in out[1] and out[1].endswith("/2")
    with pytest.raises(SystemExit) as stop:
        main(["stability", chelsea_path, "--method", "gradcam", "--variants", "10000"])
    assert stop.value.code == 2
    assert "--variants: must be between 1 and 100, got 10000" in capsys.readouterr().err


def test_a_check_stopped_after_one_method_goes_on_to_the_same_result(demo, chelsea_path):
    variants = stab.make_variants(demo, chelsea_path, count=3)
    methods = ["gradient", "gradcam"]
    whole = stab.stability_check(demo, chelsea_path, methods, variants=variants)

    class Stop(Exception):
        pass

    kept = []

    def keep(result):  # the page stores the result so far; a Cancel click then stops the run
        kept.append(result)
        raise Stop

    with pytest.raises(Stop):
        stab.stability_check(demo, chelsea_path, methods, variants=variants, on_result=keep)
    partial = kept[-1]
    assert list(partial.summary) == ["gradient"] and all(
        list(v.scores) == ["gradient"] for v in partial.variants
    )
    seen = []
    resumed = stab.stability_check(
        demo,
        chelsea_path,
        methods,
        variants=variants,
        done=partial,
        progress=lambda done, total: seen.append(total),
    )
    assert set(seen) == {1}  # only Grad-CAM was computed
    assert list(resumed.summary) == methods
    assert resumed.rows() == whole.rows()
    assert {m: s.verdict for m, s in resumed.summary.items()} == {
        m: s.verdict for m, s in whole.summary.items()
    }
    other = stab.make_variants(demo, chelsea_path, count=2)
    with pytest.raises(ValueError, match="another image"):
        stab.stability_check(demo, chelsea_path, methods, variants=other, done=partial)


def test_similarity_at_the_stated_detail_with_the_raw_figure_beside_it(demo, chelsea_path):
    """An averaged map is compared with its variants at the coarser of the two maps' reproducible
    details; an exact map at the raw pixels; the raw-pixel figures are kept in every row."""
    result = stab.stability_check(
        demo, chelsea_path, ["smoothgrad", "gradient"], count=2, params={"samples": 16, "seed": 0}
    )
    for v in result.variants:
        sg, grad = v.scores["smoothgrad"], v.scores["gradient"]
        assert sg["detail_px"] > 0 and sg["spearman_abs"] > sg["spearman_abs_raw"]
        assert grad["detail_px"] == 0 and grad["spearman_abs"] == grad["spearman_abs_raw"]
    assert {"detail_px", "spearman_abs_raw", "top_k_overlap_raw"} <= set(result.rows()[0])
    json.dumps(result.record())
