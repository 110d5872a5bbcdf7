"""The engine's speed choices (channels-last weights, native padding, chunking) change no map
beyond the stated tolerances, measured against a plain copy of the demo network.

Tolerances: gradient, Grad-CAM and Integrated Gradients on a photo agree to 1e-5 relative
error. SmoothGrad agrees to 1e-2 with Spearman >= 0.999: the network is piecewise linear, and a
last-bit difference can flip one ReLU6 gate on a noisy copy (seen on sample 2 of seed 0), which
moves that sample's gradient by ~0.5 %."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

import saliency_core as sc
from saliency_core._efficientnet import SameConv2d


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def paths(demo, chelsea_path):
    assert demo.network[1]._conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    plain = copy.deepcopy(demo.network).to(memory_format=torch.contiguous_format)
    assert plain[1]._conv_stem.weight.is_contiguous()
    x = demo.preprocess(chelsea_path)
    return demo.network, plain, x, torch.tensor([demo.predict(x, 1)[0][0]])


@pytest.mark.parametrize("method,params,tol", [
    ("gradient", {}, 1e-5), ("gradcam", {"layer": "1._act_head"}, 1e-5),
    ("integrated_gradients", {"steps": 8}, 1e-5)])
def test_exact_methods_match_plain_network(paths, method, params, tol):
    fast, plain, x, t = paths
    attribute = sc.METHODS[method].attribute
    assert _rel(attribute(fast, x, t, **params), attribute(plain, x, t, **params)) < tol


def test_smoothgrad_matches_plain_network(paths):
    fast, plain, x, t = paths
    a = sc.METHODS["smoothgrad"].attribute(fast, x, t, samples=8)
    b = sc.METHODS["smoothgrad"].attribute(plain, x, t, samples=8, chunk_size=8)
    assert _rel(a, b) < 1e-2
    rho = spearmanr(a.abs().amax(1).flatten().numpy(), b.abs().amax(1).flatten().numpy())[0]
    assert rho >= 0.999


@pytest.mark.parametrize("size", [7, 8, 15, 224])
@pytest.mark.parametrize("kernel,stride", [(3, 1), (5, 1), (3, 2), (5, 2), (1, 1)])
def test_same_padding_matches_explicit_pad(size, kernel, stride):
    torch.manual_seed(0)
    conv = SameConv2d(4, 4, kernel, stride=stride, groups=4, bias=False)
    x = torch.randn(2, 4, size, size + 1)
    pads = []
    for n in (size + 1, size):  # width, then height: F.pad order
        total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    expected = F.conv2d(F.pad(x, pads), conv.weight, None, stride, 0, 1, 4)
    out = conv(x)
    assert out.shape == expected.shape == (2, 4, -(-size // stride), -(-(size + 1) // stride))
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-6)
