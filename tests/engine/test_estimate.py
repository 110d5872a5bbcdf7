"""Run-time estimates: pass counts per map and the arithmetic of each run's estimate."""

import math

import pytest

from saliency_core.engine import estimate as es


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
