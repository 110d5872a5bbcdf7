"""Detail levels: the Gaussian keeps constants and totals, level 0 is the raw map, the ladder
scales with the input size, and recorded values are read only when they are numbers."""

import numpy as np
import pytest

from saliency_core.engine import detail


def test_ladder_scales_with_input_size():
    assert detail.ladder(224) == [0, 1, 2, 4, 8, 16]
    assert detail.ladder(448) == [0, 2, 4, 8, 16, 32]
    with pytest.raises(ValueError):
        detail.ladder(0)


def test_smooth_keeps_constants_and_totals_and_level_zero_is_raw():
    rng = np.random.default_rng(0)
    m = rng.random((32, 40)).astype(np.float32)
    np.testing.assert_array_equal(detail.smooth(m, 0), m)
    np.testing.assert_allclose(detail.smooth(np.full((16, 16), 3.0), 2), 3.0, rtol=1e-6)
    blurred = detail.smooth(m, 2)
    assert blurred.shape == m.shape and blurred.dtype == np.float32
    assert abs(blurred.mean() - m.mean()) < 0.01 and blurred.std() < m.std() / 2
    # a point spreads into a symmetric bump whose peak sits where the point was
    point = np.zeros((33, 33), np.float32)
    point[16, 16] = 1
    bump = detail.smooth(point, 3)
    assert np.unravel_index(bump.argmax(), bump.shape) == (16, 16)
    np.testing.assert_allclose(bump, bump.T, atol=1e-7)
    np.testing.assert_allclose(bump, bump[::-1], atol=1e-7)
    with pytest.raises(ValueError):
        detail.smooth(m, float("nan"))


def test_reproducible_px_reads_only_numbers():
    assert detail.reproducible_px({"convergence": {"reproducible_px": 4}}) == 4.0
    assert detail.reproducible_px({"convergence": [{"reproducible_px": 2.0}]}) == 2.0
    for bad in (
        None,
        {},
        {"convergence": {"reproducible_px": "4"}},
        {"convergence": {"reproducible_px": float("inf")}},
        {"convergence": {"reproducible_px": True}},
        {"convergence": {"reproducible_px": -1}},
    ):
        assert detail.reproducible_px(bad) is None


def test_strided_smoothing_is_the_blurred_map_read_every_stride_pixels():
    import torch

    maps = torch.rand(3, 50, 37, generator=torch.Generator().manual_seed(0))
    for sigma in (0, 1.5, 4):
        full = detail.smooth_tensor(maps, sigma)
        for stride in (2, 3):
            torch.testing.assert_close(detail.smooth_tensor(maps, sigma, stride), full[:, ::stride, ::stride])
    with pytest.raises(ValueError):
        detail.smooth_tensor(maps, 1, 0)


def test_stated_detail_is_the_coarsest_reproducible_detail_of_the_maps():
    exact = {}
    settled = {"convergence": {"verdict": "settled", "reproducible_px": 4.0, "levels": []}}
    coarse = {"convergence": [{"verdict": "settled", "reproducible_px": 8.0}]}
    unsettled = {"convergence": {"verdict": "still changing", "reproducible_px": None}}
    assert detail.stated_detail(exact, None, size=224) == 0
    assert detail.stated_detail(exact, settled, size=224) == 4
    assert detail.stated_detail(settled, coarse, size=224) == 8
    assert detail.stated_detail(settled, unsettled, size=448) == 32  # not settled: the coarsest level
