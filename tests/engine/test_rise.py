"""RISE (Petsiuk et al. 2018): analytic ground truth on a model whose probability is the mean of
one region, Eq. 6 against a plain loop over the same masks, same seed same map, and chunking."""

from __future__ import annotations

import pytest
import torch
from conftest import relative_error
from torch import nn

import saliency_core as sc
from saliency_core.engine.methods.rise import rise_masks

rise = sc.METHODS["rise"].attribute


class RegionMean(nn.Module):
    """P(class 0 | x) = mean of x over rows and columns r0..r1 (all channels): softmax of
    [log m, log(1 - m)] is exactly [m, 1 - m]."""

    def __init__(self, r0: int, r1: int):
        super().__init__()
        self.r0, self.r1 = r0, r1

    def forward(self, x):
        m = x[:, :, self.r0 : self.r1, self.r0 : self.r1].mean((1, 2, 3)).clamp(1e-6, 1 - 1e-6).double()
        return torch.stack([m.log(), (1 - m).log()], 1).to(x.dtype)


def test_defaults_are_stated():
    m = sc.METHODS["rise"]
    assert m.defaults == {"masks": 1000, "cell": 32, "keep": 0.5, "fill": "black", "seed": 0}
    assert m.averaging and m.needs == frozenset() and not m.signed
    assert m.description and "{score}" in m.meaning


def test_region_model_recovers_its_region():
    """On an all-white 64 px image with black fill, the probability is the region's mean mask
    value. A pixel two cells or more from the region shares no mask cell with it, so its
    expected value is E[p] E[M(p)] / keep = keep * keep / keep = keep exactly; inside the region
    the mask and the probability rise together, so the map is higher there."""
    cell, keep, lo, hi = 8, 0.5, 24, 40
    saliency = rise(
        RegionMean(lo, hi), torch.ones(1, 3, 64, 64), torch.tensor([0]), masks=4000, cell=cell, keep=keep
    )[0, 0]
    region = torch.zeros(64, 64, dtype=torch.bool)
    region[lo:hi, lo:hi] = True
    far = torch.ones(64, 64, dtype=torch.bool)
    far[lo - 2 * cell : hi + 2 * cell, lo - 2 * cell : hi + 2 * cell] = False
    assert abs(float(saliency[far].mean()) - keep) < 0.02  # Monte Carlo: 4000 masks
    assert float((saliency[far] - keep).abs().max()) < 0.06
    assert float(saliency[region].mean()) > keep + 0.05
    top = saliency.flatten().topk(int(region.sum())).indices
    assert float(region.flatten()[top].float().mean()) > 0.8  # the brightest pixels are the region


def test_equation_6_against_a_plain_loop():
    """sum_i P(target | x * M_i + fill * (1 - M_i)) M_i / (N keep), image by image, mask by mask."""
    torch.manual_seed(0)
    net = (
        nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
        )
        .eval()
        .double()
    )
    x = torch.rand(2, 3, 20, 20, dtype=torch.float64)
    target = torch.tensor([2, 0])
    ours = rise(net, x, target, masks=37, cell=6, keep=0.3, fill="grey", seed=5, chunk_size=10)
    masks = rise_masks(20, 20, 6, 0.3, 5, 0, 37).double()
    expected = torch.zeros(2, 1, 20, 20, dtype=torch.float64)
    with torch.no_grad():
        for b in range(2):
            for m in masks:
                shown = x[b] * m + 0.5 * (1 - m)
                p = net(shown[None]).softmax(1)[0, target[b]]
                expected[b] += p * m
    expected /= 37 * 0.3
    assert relative_error(ours, expected) < 1e-12


def test_masks():
    m = rise_masks(50, 40, 8, 0.5, seed=3, start=0, n=200)
    assert m.shape == (200, 1, 50, 40) and m.dtype == torch.float32
    assert float(m.min()) >= 0 and float(m.max()) <= 1
    assert abs(float(m.mean()) - 0.5) < 0.05  # E[M] = keep
    assert torch.equal(rise_masks(50, 40, 8, 0.5, 3, 5, 7), m[5:12])  # mask i depends on (seed, i) only
    assert not torch.equal(rise_masks(50, 40, 8, 0.5, 4, 0, 200), m)
    binary = rise_masks(64, 64, 8, 0.5, 0, 0, 1)[0, 0]
    assert ((binary > 0) & (binary < 1)).any()  # bilinear, not nearest


def test_same_seed_same_map_and_chunks(demo, chelsea_x, record):
    target = torch.tensor([282])
    a = rise(demo.network, chelsea_x, target, masks=40, seed=7, chunk_size=16)
    b = rise(demo.network, chelsea_x, target, masks=40, seed=7, chunk_size=16)
    assert torch.equal(a, b)
    c = rise(demo.network, chelsea_x, target, masks=40, seed=7, chunk_size=7)
    # batch sizes round the convolutions differently, nothing else changes
    assert record("RISE chunk 7 vs 16, demo", relative_error(c, a)) < 1e-5
    other = rise(demo.network, chelsea_x, target, masks=40, seed=8, chunk_size=16)
    assert record("RISE seed 8 vs seed 7 (40 masks)", relative_error(other, a)) > 1e-2
    net = RegionMean(24, 40)
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    exact = [rise(net, x, torch.tensor([0]), masks=50, cell=8, seed=1, chunk_size=n) for n in (1, 9, 64)]
    assert all(relative_error(e, exact[0]) < 1e-14 for e in exact)


def test_progress_and_preview_are_the_map_so_far(demo, chelsea_x):
    """The preview after k masks is the map RISE gives with k masks (mask i depends only on i)."""
    calls, previews = [], {}
    target = torch.tensor([282])
    final = rise(
        demo.network,
        chelsea_x,
        target,
        masks=24,
        chunk_size=8,
        progress=lambda d, t: calls.append((d, t)),
        preview=lambda d, t, running: previews.__setitem__(d, running),
    )
    assert calls == [(8, 24), (16, 24), (24, 24)] and sorted(previews) == [8, 16]
    sixteen = rise(demo.network, chelsea_x, target, masks=16, chunk_size=8)
    assert relative_error(previews[16], sixteen) < 1e-6
    assert final.shape == (1, 1, 224, 224)


def test_explain_on_demo(demo, chelsea_path):
    exp = sc.explain(demo, chelsea_path, method="rise", masks=32)
    assert exp.params == {"masks": 32, "cell": 32, "keep": 0.5, "fill": "black", "seed": 0}
    assert exp.saliency.shape == (224, 224) and exp.saliency.min() >= 0
    shown = []
    sc.explain(
        demo,
        chelsea_path,
        method="rise",
        masks=64,
        chunk_size=32,
        preview=lambda d, t, s: shown.append((d, s.shape)),
    )
    assert shown == [(32, (224, 224))]


@pytest.mark.parametrize(
    "params,words",
    [
        ({"masks": 0}, "masks"),
        ({"masks": 10**9}, "masks"),
        ({"keep": 1.0}, "keep"),
        ({"keep": float("nan")}, "keep"),
        ({"cell": 1}, "cell"),
        ({"fill": "x"}, "fill"),
    ],
)
def test_bad_parameters(demo, chelsea_path, params, words):
    with pytest.raises(ValueError, match=words):
        sc.explain(demo, chelsea_path, method="rise", **params)


class _Capture:
    """Stands in for a convergence readout: keeps the quarter and half maps RISE hands it."""

    def check(self, quarters, halves, terms, what="samples"):
        self.quarters, self.halves, self.terms, self.what = quarters, halves, terms, what

    def unavailable(self, batch, terms, reason, what="samples"):
        self.reason = reason


def test_readout_quarters_are_rise_over_their_own_masks():
    """Quarter k is Eq. 6 over the masks i with i % 4 == k alone; the halves are quarters 0 + 1 and
    2 + 3; the map is the same with or without a readout."""
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    net = net.eval().double()
    x, target, keep = torch.rand(1, 3, 20, 20, dtype=torch.float64), torch.tensor([1]), 0.4
    got = _Capture()
    with_readout = rise(net, x, target, masks=30, cell=6, keep=keep, seed=2, chunk_size=7, readout=got)
    assert torch.equal(with_readout, rise(net, x, target, masks=30, cell=6, keep=keep, seed=2, chunk_size=7))
    masks = rise_masks(20, 20, 6, keep, 2, 0, 30).double()
    with torch.no_grad():
        p = torch.stack([net(x * m + 0 * (1 - m)).softmax(1)[0, 1] for m in masks])
    terms = p.view(-1, 1, 1, 1) * masks  # (30, 1, 20, 20)

    def eq6(indices):
        return terms[indices].sum(0, keepdim=True) / (len(indices) * keep)

    quarter_masks = [list(range(k, 30, 4)) for k in range(4)]
    assert got.terms == 30 and got.what == "masks"
    for k in range(4):
        assert relative_error(got.quarters[k], eq6(quarter_masks[k])) < 1e-12
    for half, (a, b) in zip(got.halves, ((0, 1), (2, 3))):
        assert relative_error(half, eq6(quarter_masks[a] + quarter_masks[b])) < 1e-12
    short = _Capture()
    rise(net, x, target, masks=3, cell=6, readout=short)
    assert "at least 4 masks" in short.reason


def test_explain_records_the_masks_readout_and_says_masks(demo, chelsea_path):
    """RISE's map on the demo model carries a readout by detail level, in masks, and its words name
    random masks (64 masks: far from settled)."""
    from saliency_core.engine.render import shown_map

    exp = sc.explain(demo, chelsea_path, method="rise", masks=64)
    readout = exp.diagnostics["convergence"]
    assert readout["masks"] == 64 and [row["px"] for row in readout["levels"]] == [0, 1, 2, 4, 8, 16]
    assert readout["verdict"] == "still changing" and readout["reproducible_px"] is None
    drawn = shown_map(exp.saliency, "rise", exp.diagnostics)
    assert drawn.unsettled and "other random masks" in drawn.words and "More masks" in drawn.words
