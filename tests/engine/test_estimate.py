"""Run-time estimates: pass counts per map and the arithmetic of each run's estimate."""

import math
import time

import pytest
import torch
import torchvision

import saliency_core as sc
from saliency_core.engine import estimate as es
from saliency_core.engine.explain import attribute
from saliency_core.engine.methods import Cost


def test_passes_per_map_follow_the_counts_a_method_takes():
    assert es.map_passes("gradient") == 1 and es.map_passes("gradcam", {"samples": 30}) == 1
    assert es.map_passes("smoothgrad", {"samples": 20, "noise": 0.1}) == 20
    assert es.map_passes("smoothgrad") == 50  # the method's default
    assert es.map_passes("integrated_gradients", {"steps": 64}) == 64
    assert es.map_passes("smoothgrad", {"samples": float("nan")}) == 1


def test_run_estimates_add_up_passes():
    times = es.PassTimes(forward=0.02, backward=0.05, threads=1, measured_at=0.0)
    maps = {"gradient": {}, "smoothgrad": {"samples": 10}}
    assert es.maps_seconds(times, maps, images=3) == pytest.approx(3 * 11 * 0.05)
    # 5 images x (2 maps + 2 baselines) x 2 curves x 11 points, forward only, ends shared per image
    assert es.validation_seconds(times, 5, maps, curve_points=11) == pytest.approx(
        5 * 11 * 0.05 + 5 * (4 * (2 * 11 - 4) + 3) * 0.02
    )
    assert es.validation_seconds(times, 5, maps) == pytest.approx(5 * 11 * 0.05)
    assert es.stability_seconds(times, 6, maps) == pytest.approx(7 * 11 * 0.05 + 7 * 0.02)
    assert es.sanity_seconds(times, 4, maps) == pytest.approx(5 * 11 * 0.05 + 5 * 0.02)


def test_words():
    assert es.describe_seconds(2) == "under 5 s"
    assert es.describe_seconds(23) == "about 25 s"
    assert es.describe_seconds(200) == "about 3 min"
    assert es.describe_seconds(math.inf) == "unknown"


def test_pass_times_are_measured_once_per_model(demo):
    first = es.pass_times(demo)
    assert 0 < first.forward and 0 < first.backward and first.threads >= 1
    assert es.pass_times(demo) is first
    assert es.pass_times(demo, refresh=True) is not first
    assert not any(p.grad is not None for p in demo.network.parameters())


# Small counts keep the test affordable; the counts scale the passes, not the rule being checked.
SMALL = {"samples": 8, "steps": 8, "masks": 64, "window": 32, "stride": 32}


def _tiny_vit() -> sc.Classifier:
    """A four-layer vision transformer (torchvision's), the one kind of model attention rollout runs on."""
    torch.manual_seed(0)
    net = torchvision.models.VisionTransformer(
        image_size=224, patch_size=16, num_layers=4, num_heads=3, hidden_dim=192, mlp_dim=768, num_classes=4
    )
    return sc.Classifier(name="tiny vit", network=net.eval(), labels=list("abcd"), fingerprint="1" * 64)


def _measured_over_estimated(model, x, method: str) -> tuple[float, float]:
    """(measured seconds of one map, its estimate) on this machine now; the pass times are timed
    just before, as the pages do."""
    times = es.pass_times(model, refresh=True)
    estimate = es.map_seconds(times, method, SMALL)
    params = sc.METHODS[method].params_for(SMALL)
    target = torch.tensor([0])
    attribute(model, x, target, method, **params)  # warm-up: first-call allocations
    start = time.perf_counter()
    attribute(model, x, target, method, **params)
    return time.perf_counter() - start, estimate


def test_every_methods_estimate_is_within_a_factor_of_two_of_its_run(demo, chelsea_x, record):
    """The estimate a page shows (the method's own pass counts x this machine's pass times) is
    within a factor of 2 of the map's measured time, for every registered method. The CPU may be
    shared: a method outside the factor is measured again, up to 3 times in all."""
    vit = _tiny_vit()
    for method in sc.METHODS:
        model = vit if method == "attention_rollout" else demo
        assert not sc.available_methods(model)[method], method
        x = chelsea_x if model is demo else torch.rand(1, 3, 224, 224)
        for _ in range(3):
            measured, estimate = _measured_over_estimated(model, x, method)
            if 0.5 <= measured / estimate <= 2:
                break
        record(f"{method}: estimated s", estimate)
        record(f"{method}: measured s", measured)
        assert 0.5 <= measured / estimate <= 2, (method, measured, estimate)


def test_each_method_states_its_passes():
    """Occlusion: one forward pass per square (+1); RISE: forward passes only; SmoothGrad: its
    base's passes per sample; Integrated Gradients: a gradient per step (+2 for completeness)."""
    cost = {name: m.cost({}, 224) for name, m in sc.METHODS.items()}
    assert cost["occlusion"] == Cost(forward=13 * 13 + 1)
    assert sc.METHODS["occlusion"].cost({"window": 32, "stride": 32}, (224, 112)) == Cost(forward=7 * 4 + 1)
    assert cost["rise"] == Cost(forward=1000) and es.map_passes("rise") == 0
    assert cost["smoothgrad"] == cost["vargrad"] == Cost(backward=50, batched=True)
    assert sc.METHODS["smoothgrad"].cost({"samples": 4, "base": "guided_gradcam"}) == Cost(
        backward=8, batched=True
    )
    assert cost["integrated_gradients"] == Cost(forward=2, backward=50, batched=True)
    assert cost["gradient"] == cost["gradcam"] == Cost(backward=1) and cost["guided_gradcam"] == Cost(
        backward=2
    )
    assert cost["attention_rollout"] == Cost(forward=1)
    times = es.PassTimes(forward=0.02, backward=0.05, threads=1, measured_at=0.0)
    assert es.map_seconds(times, "occlusion") == pytest.approx(170 * 0.02)
    assert es.map_seconds(times, "integrated_gradients", {"steps": 10}) == pytest.approx(2 * 0.02 + 10 * 0.05)
    batched = es.PassTimes(forward=0.02, backward=0.05, threads=1, measured_at=0.0, batched_backward=0.03)
    assert es.map_seconds(batched, "smoothgrad", {"samples": 10}) == pytest.approx(10 * 0.03)
    assert es.map_seconds(batched, "gradient") == pytest.approx(0.05)
