"""Occlusion against Captum's ``Occlusion`` on the demo model as users call it, against the analytic
score drop of a linear model, and the incremental pass against the plain batched pass."""

from __future__ import annotations

import pytest
import torch
import torchvision
from captum.attr import Occlusion
from conftest import relative_error
from torch import nn

import saliency_core as sc
from saliency_core.engine import _fast
from saliency_core.engine._incremental import PatchedForward
from saliency_core.engine.methods import occlusion as occlusion_module
from saliency_core.engine.methods.integrated import make_baseline
from saliency_core.engine.methods.occlusion import fill_image, window_starts
from saliency_core.engine.samples import sample_images

EXACT = 1e-5


def _captum(network, x, target, window, stride, baselines, per_eval=32):
    """Captum's Occlusion over all channels at once: (3, k, k) windows, (3, s, s) strides."""
    attribution = Occlusion(network).attribute(
        x.clone(),
        sliding_window_shapes=(3, window, window),
        strides=(3, stride, stride),
        baselines=baselines,
        target=target,
        perturbations_per_eval=per_eval,
    )
    assert torch.equal(attribution[:, :1].expand_as(attribution), attribution)  # one value per pixel
    return attribution[:, :1]


def test_defaults_are_stated():
    m = sc.METHODS["occlusion"]
    assert m.defaults == {"window": 32, "stride": 16, "fill": "grey"}
    assert m.needs == frozenset() and m.signed and m.reduction == "sum"
    assert m.description and "{score}" in m.meaning


def test_explain_as_users_call_it_equals_captum(demo, record):
    """``sc.explain(model, photo, "occlusion")`` on every bundled photo against Captum with the same
    window (32), stride (16) and grey baseline (0.5), to 1e-5. Captum against itself with another
    batch size moves by a few 1e-6 on this model (float32 rounding of the score differences)."""
    assert _fast.OPTIONS["incremental"]  # the default engine
    worst = 0.0
    for label, path in sample_images().items():
        exp = sc.explain(demo, path, method="occlusion")
        assert exp.params == {"window": 32, "stride": 16, "fill": "grey"}
        x = demo.preprocess(path)
        reference = _captum(demo.network, x, exp.target, 32, 16, 0.5)[0]
        err = relative_error(torch.from_numpy(exp.attribution), reference)
        worst = max(worst, err)
        assert err < EXACT, f"{label}: {err:.3g}"
    record(f"occlusion: sc.explain vs captum Occlusion, worst of {len(sample_images())} photos", worst)
    other = _captum(demo.network, x, (exp.target + 1) % 1000, 32, 16, 0.5)[0]
    assert relative_error(torch.from_numpy(exp.attribution), other) > 1e-2  # the check can fail


@pytest.mark.parametrize("fill", ["black", "mean", "blurred"])
def test_other_fills_equal_captum(demo, chelsea_x, fill, record):
    """Large squares (56 px, 16 per image) keep this quick; the fill is Captum's baseline tensor."""
    ours = sc.METHODS["occlusion"].attribute(
        demo.network, chelsea_x, torch.tensor([282]), window=56, stride=56, fill=fill
    )
    baselines = fill_image(chelsea_x, fill)
    if fill == "blurred":
        assert torch.equal(baselines, make_baseline(chelsea_x, "blurred"))
    err = record(
        f"occlusion fill={fill} vs captum",
        relative_error(ours, _captum(demo.network, chelsea_x, 282, 56, 56, baselines)),
    )
    assert err < EXACT


class Linear(nn.Module):
    def __init__(self, side=12, classes=4):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * side * side, classes).double()

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("window,stride", [(4, 2), (4, 3), (5, 5), (12, 1)])
def test_linear_model_gives_the_analytic_drop(window, stride):
    """score(x) - score(x with square S hidden) = sum over S of w (x - fill), exactly; each pixel
    gets the mean over the squares covering it. Strides that do not reach the far edge get a
    last square flush with it (4, 3 on 12 px: 0, 3, 6, then 8)."""
    net = Linear()
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64)
    target = torch.tensor([1, 3])
    ours = sc.METHODS["occlusion"].attribute(net, x, target, window=window, stride=stride, fill="mean")
    fill = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    w = net.fc.weight.detach().view(-1, 3, 12, 12)
    starts = window_starts(12, window, stride)
    assert starts[-1] == 12 - window and all(b - a <= stride for a, b in zip(starts, starts[1:]))
    expected = torch.zeros(2, 1, 12, 12, dtype=torch.float64)
    covered = torch.zeros(12, 12, dtype=torch.float64)
    for b in range(2):
        contribution = w[target[b]] * (x[b] - fill[b])  # (3, 12, 12)
        for r in starts:
            for c in starts:
                drop = contribution[:, r : r + window, c : c + window].sum()
                expected[b, 0, r : r + window, c : c + window] += drop
                if b == 0:
                    covered[r : r + window, c : c + window] += 1
    expected /= covered
    assert relative_error(ours, expected) < 1e-12


def test_chunks_and_progress(demo, chelsea_x):
    calls = []
    a = sc.METHODS["occlusion"].attribute(demo.network, chelsea_x, torch.tensor([282]), window=56, stride=28)
    b = sc.METHODS["occlusion"].attribute(
        demo.network,
        chelsea_x,
        torch.tensor([282]),
        window=56,
        stride=28,
        chunk_size=5,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert relative_error(b, a) < 1e-5
    assert calls == [(min(d, 49), 49) for d in range(5, 50, 5)] + [(49, 49)]


# ---------------------------------------------------------------- the incremental pass


class Counting(PatchedForward):
    """Counts passes and the layers computed on boxes only (and the ones made whole)."""

    calls = cropped = whole = 0

    def __call__(self, *args):
        Counting.calls += 1
        return super().__call__(*args)

    def _cropped(self, node, values):
        out = super()._cropped(node, values)
        if out is not None:
            Counting.cropped += 1
        return out

    def _whole(self, values, node, n):
        if not isinstance(values[node], torch.Tensor):
            Counting.whole += 1
        return super()._whole(values, node, n)


def _both_ways(network, x, target, monkeypatch, **params):
    """Occlusion with and without the incremental pass; asserts the incremental pass really ran on
    every batch of squares, cropping some layers."""
    monkeypatch.setattr(occlusion_module, "PatchedForward", Counting)
    Counting.calls = Counting.cropped = Counting.whole = 0
    with _fast.switched(incremental=True):
        fast = sc.METHODS["occlusion"].attribute(network, x, target, chunk_size=32, **params)
    squares = len(window_starts(x.shape[-2], params["window"], params["stride"])) ** 2
    assert Counting.calls == x.shape[0] * -(-squares // 32) and Counting.cropped > 0 and Counting.whole > 0
    with _fast.switched(incremental=False):
        plain = sc.METHODS["occlusion"].attribute(network, x, target, **params)
    return fast, plain


def test_incremental_equals_plain_on_resnet(record, monkeypatch):
    """Residual adds, max pooling (padded with -inf), a strided 1x1 shortcut convolution. In
    float64, so that rounding cannot hide a wrong region: the two passes agree to 1e-10."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10).eval().double()
    x = torch.rand(2, 3, 96, 96, dtype=torch.float64)
    assert PatchedForward(net, x[:1]).usable
    fast, plain = _both_ways(net, x, torch.tensor([3, 7]), monkeypatch, window=16, stride=8)
    assert (
        record("occlusion incremental vs plain, ResNet-18 96 px, float64", relative_error(fast, plain))
        < 1e-10
    )


def test_incremental_equals_plain_on_the_demo(demo, coffee_x, record, monkeypatch):
    fast, plain = _both_ways(demo.network, coffee_x, torch.tensor([967]), monkeypatch, window=24, stride=20)
    assert record("occlusion incremental vs plain, demo", relative_error(fast, plain)) < EXACT


class Mixed(nn.Module):
    """Operations the incremental pass does not crop (a 2x2 average-pool ceil mode, a spatially
    varying constant) and a function call on a tensor method: it must make the copies whole there."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 8, 3, padding=1, dilation=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding="same", dilation=2)
        self.pool = nn.AvgPool2d(2, ceil_mode=True)
        self.register_buffer("position", torch.rand(1, 8, 32, 32))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        h = self.conv2(h).sigmoid() + h
        return self.fc(self.pool(h * self.position).mean((2, 3)))


def test_unknown_operations_run_on_whole_copies(monkeypatch):
    net = Mixed().eval().double()
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    assert PatchedForward(net, x).usable
    fast, plain = _both_ways(net, x, torch.tensor([2]), monkeypatch, window=6, stride=4)
    assert relative_error(fast, plain) < 1e-10


def test_incremental_is_not_used_where_it_cannot_see_the_layers(demo, chelsea_x):
    scripted = torch.jit.script(torchvision.models.resnet18(weights=None, num_classes=4).eval())
    assert not PatchedForward(scripted, torch.rand(1, 3, 64, 64)).usable
    handle = demo.network[1]._conv_stem.register_forward_hook(lambda *a: None)
    try:
        assert not PatchedForward(demo.network, chelsea_x).usable  # hooks see the layers as written
    finally:
        handle.remove()


def test_bad_parameters(demo, chelsea_path):
    for params, words in [
        ({"window": 300}, "window"),
        ({"window": 0}, "window"),
        ({"window": 16, "stride": 17}, "stride"),
        ({"stride": 2.5}, "stride"),
        ({"fill": "pink"}, "fill"),
    ]:
        with pytest.raises(ValueError, match=words):
            sc.explain(demo, chelsea_path, method="occlusion", **params)


class Wrong(PatchedForward):
    def __call__(self, *args):
        return super().__call__(*args) + 1.0  # a broken incremental pass


def test_a_wrong_incremental_pass_is_caught_and_replaced(monkeypatch):
    torch.manual_seed(0)
    net = Mixed().eval().double()
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    with _fast.switched(incremental=False):
        plain = sc.METHODS["occlusion"].attribute(net, x, torch.tensor([1]), window=6, stride=4)
    monkeypatch.setattr(occlusion_module, "PatchedForward", Wrong)
    caught = sc.METHODS["occlusion"].attribute(net, x, torch.tensor([1]), window=6, stride=4, chunk_size=8)
    assert relative_error(caught, plain) < 1e-12
