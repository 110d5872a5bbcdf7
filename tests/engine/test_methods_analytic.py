"""Methods on tiny models whose attributions are known in closed form (PAIR saliency's and
zennit's style of test). Float64 wherever the comparison should be exact."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import saliency_core as sc
from saliency_core.engine.methods.integrated import BASELINES, RULES, completeness, make_baseline
from saliency_core.engine.methods.smoothgrad import sample_noise

D = torch.float64


def method(name):
    return sc.METHODS[name].attribute


def classifier(network: nn.Module, classes: int) -> sc.Classifier:
    return sc.Classifier(
        name="tiny", network=network, labels=[f"class {i}" for i in range(classes)], fingerprint="0" * 64
    )


# ---------------------------------------------------------------- tiny models


class Pair(nn.Module):
    """x = (a, b) in a (B, 1, 1, 2) image; class 0: 5a + b^2, class 1: a * b."""

    def forward(self, x):
        a, b = x[:, 0, 0, 0], x[:, 0, 0, 1]
        return torch.stack([5 * a + b**2, a * b], dim=1)


class LinearQuadratic(nn.Module):
    """score_k = sum(W_k * x) + c_k * sum(x^2): gradient W_k + 2 c_k x."""

    def __init__(self, shape, classes=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(classes, *shape, generator=g, dtype=D), requires_grad=False)
        self.c = nn.Parameter(torch.tensor([0.5, -1.0, 2.0][:classes], dtype=D), requires_grad=False)

    def forward(self, x):
        linear = (x.unsqueeze(1) * self.w).flatten(2).sum(2)
        return linear + self.c * x.square().flatten(1).sum(1, keepdim=True)


class HalfSquare(nn.Module):
    """Every class scores sum(x^2) / 2, so the input gradient is x itself."""

    def __init__(self, classes=2):
        super().__init__()
        self.classes = classes

    def forward(self, x):
        return (x.square().flatten(1).sum(1, keepdim=True) / 2).expand(-1, self.classes)


def smooth_convnet(seed=0) -> nn.Module:
    """Small conv net with smooth non-linearities (fast quadrature convergence), float64."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Softplus(),
        nn.Conv2d(4, 6, 3, stride=2),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(6 * 15 * 15, 5),
    )  # for 32 x 32 inputs
    with torch.no_grad():  # scores that differ clearly between an image and its baselines
        net[0].weight.mul_(3)
        net[-1].weight.mul_(10)
    return net.to(D).eval().requires_grad_(False)


def relu_convnet(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 4, 3, padding=1),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(4, 6, 3, stride=2),
            relu2=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(6, 5),
        )
    )
    return net.to(D).eval().requires_grad_(False)


def images(batch, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g, dtype=D)


# ---------------------------------------------------------------- gradient, gradient x input


def test_gradient_of_5a_plus_b_squared():
    x = torch.tensor([[[[1.5, -2.0]]], [[[0.25, 3.0]]]], dtype=D)
    g0 = method("gradient")(Pair(), x, torch.tensor([0, 0]))
    assert torch.equal(g0[:, 0, 0], torch.tensor([[5.0, -4.0], [5.0, 6.0]], dtype=D))
    g1 = method("gradient")(Pair(), x, torch.tensor([1, 1]))
    assert torch.equal(g1[:, 0, 0], torch.tensor([[-2.0, 1.5], [3.0, 0.25]], dtype=D))
    mixed = method("gradient")(Pair(), x, torch.tensor([0, 1]))  # one target per image
    assert torch.equal(mixed[:, 0, 0], torch.tensor([[5.0, -4.0], [3.0, 0.25]], dtype=D))
    gxi = method("gradient_x_input")(Pair(), x, torch.tensor([0, 1]))
    assert torch.equal(gxi[:, 0, 0], torch.tensor([[7.5, 8.0], [0.75, 0.75]], dtype=D))


@pytest.mark.parametrize("target", [0, 1, 2])
def test_gradient_and_gradient_x_input_closed_form(target):
    net = LinearQuadratic((3, 5, 4))
    x = torch.randn(2, 3, 5, 4, dtype=D, generator=torch.Generator().manual_seed(1))
    expected = net.w[target] + 2 * net.c[target] * x
    assert torch.allclose(
        method("gradient")(net, x, torch.tensor([target])), expected, rtol=1e-12, atol=1e-12
    )
    assert torch.allclose(
        method("gradient_x_input")(net, x, torch.tensor([target])), x * expected, rtol=1e-12, atol=1e-12
    )


# ---------------------------------------------------------------- Integrated Gradients


def _scores(net, x, target):
    with torch.no_grad():
        return net(x)[torch.arange(len(x)), target]


@pytest.mark.parametrize(
    "rule, steps, tolerance", [("gausslegendre", 32, 1e-9), ("riemann_trapezoid", 256, 1e-5)]
)
@pytest.mark.parametrize("baseline", BASELINES)
def test_integrated_gradients_completeness(baseline, rule, steps, tolerance):
    """Prop. 1, Sundararajan et al. 2017: attributions sum to F(x) - F(x')."""
    net, x, target = smooth_convnet(), images(2), torch.tensor([1, 3])
    attribution = method("integrated_gradients")(
        net, x, target, steps=steps, baseline=baseline, rule=rule, seed=7, chunk_size=64
    )
    reference = make_baseline(x, baseline, seed=7)
    if baseline == "black":
        assert torch.equal(reference, torch.zeros_like(x))
    delta = _scores(net, x, target) - _scores(net, reference, target)
    assert delta.abs().min() > 0.1  # a non-trivial difference to explain
    total = attribution.flatten(1).sum(1)
    assert torch.allclose(total, delta, rtol=tolerance, atol=tolerance * delta.abs().max())

    # the method's own check reports the same numbers
    report = completeness(net, x, target, attribution, {"baseline": baseline, "seed": 7})
    assert report["score_difference"] == pytest.approx(delta.tolist(), rel=1e-12)
    assert report["attribution_sum"] == pytest.approx(total.tolist(), rel=1e-12)
    assert report["completeness_gap"] == pytest.approx((total - delta).abs().tolist(), rel=1e-6, abs=1e-15)
    assert max(report["completeness_gap_relative"]) < tolerance


def test_integrated_gradients_gap_shrinks_with_steps():
    net, x, target = smooth_convnet(), images(1), torch.tensor([2])
    gaps = []
    for steps in (2, 8, 32):
        a = method("integrated_gradients")(net, x, target, steps=steps, rule="riemann_trapezoid")
        gaps.append(completeness(net, x, target, a, {"baseline": "black"})["completeness_gap"][0])
    assert gaps[0] > gaps[1] > gaps[2]
    # trapezoid error is O(1/n^2): 4x the steps, ~16x smaller gap (allow some slack)
    assert gaps[1] / gaps[2] > 8


def test_attribute_reports_completeness_gap():
    """sc.attribute runs the method's check; the gap is |sum(attribution) - (F(x) - F(x'))|."""
    net, x, target = smooth_convnet(), images(1), torch.tensor([4])
    attribution, used, diagnostics = sc.attribute(
        classifier(net, 5), x, target, "integrated_gradients", steps=16, baseline="blurred"
    )
    assert used == {"steps": 16, "baseline": "blurred", "rule": "gausslegendre", "seed": 0}
    delta = _scores(net, x, target) - _scores(net, make_baseline(x, "blurred"), target)
    gap = float((attribution.sum() - delta).abs())
    assert diagnostics["completeness_gap"][0] == pytest.approx(gap, rel=1e-6, abs=1e-14)
    assert diagnostics["completeness_gap"][0] < 1e-8


def test_explain_reports_correct_completeness_gap(demo, chelsea_path, chelsea_x):
    exp = sc.explain(demo, chelsea_path, method="integrated_gradients", steps=4)
    with torch.no_grad():
        scores = demo.network(torch.cat([chelsea_x, torch.zeros_like(chelsea_x)]))[:, exp.target]
    delta = float(scores[0] - scores[1])
    total = float(exp.attribution.astype("float64").sum())
    assert exp.diagnostics["score_difference"] == pytest.approx(delta, rel=1e-5)
    assert exp.diagnostics["attribution_sum"] == pytest.approx(total, rel=1e-5, abs=1e-5)
    assert exp.diagnostics["completeness_gap"] == pytest.approx(abs(total - delta), rel=1e-4, abs=1e-4)
    assert exp.params["steps"] == 4


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("baseline", BASELINES)
def test_integrated_gradients_linear_model_is_exact(baseline, rule):
    """F linear: the gradient is W_t everywhere, so IG = (x - x') * W_t for any quadrature."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4)).to(D).requires_grad_(False)
    x, target = images(2), torch.tensor([0, 3])
    attribution = method("integrated_gradients")(
        net, x, target, steps=3, baseline=baseline, rule=rule, seed=2
    )
    weights = net[1].weight[target].view_as(x)
    expected = (x - make_baseline(x, baseline, seed=2)) * weights
    assert torch.allclose(attribution, expected, rtol=1e-12, atol=1e-14)


def test_baselines():
    x = images(2)
    assert torch.equal(make_baseline(x, "black"), torch.zeros_like(x))
    blurred = make_baseline(x, "blurred")
    assert blurred.shape == x.shape and blurred.std() < x.std() / 3  # much smoother
    assert torch.allclose(blurred.mean((2, 3)), x.mean((2, 3)), atol=0.05)  # same mean colour
    u = make_baseline(x, "uniform", seed=1)
    assert 0 <= u.min() and u.max() < 1 and torch.equal(u, make_baseline(x, "uniform", seed=1))
    assert not torch.equal(u, make_baseline(x, "uniform", seed=2))
    with pytest.raises(ValueError, match="baseline"):
        make_baseline(x, "grey")


# ---------------------------------------------------------------- SmoothGrad


@pytest.mark.parametrize("net", [smooth_convnet(), relu_convnet()], ids=["smooth", "relu"])
def test_smoothgrad_one_sample_no_noise_is_the_gradient(net):
    x, target = images(2), torch.tensor([0, 4])
    smooth = method("smoothgrad")(net, x, target, samples=1, noise=0.0, seed=5)
    assert torch.equal(smooth, method("gradient")(net, x, target))
    squared = method("smoothgrad_squared")(net, x, target, samples=1, noise=0.0, variant="squared")
    assert torch.allclose(squared, method("gradient")(net, x, target).square(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("variant", ["mean", "squared", "vargrad"])
@pytest.mark.parametrize("batch", [1, 2])
def test_smoothgrad_chunked_equals_unchunked(variant, batch):
    net, x = relu_convnet(), images(batch, size=16)
    target = torch.tensor([1, 2][:batch])
    whole = method("smoothgrad")(
        net, x, target, samples=10, noise=0.2, seed=3, variant=variant, chunk_size=1000
    )
    for chunk_size in (1, 3, 7):
        part = method("smoothgrad")(
            net, x, target, samples=10, noise=0.2, seed=3, variant=variant, chunk_size=chunk_size
        )
        assert torch.allclose(part, whole, rtol=1e-10, atol=1e-13), chunk_size


def test_chunk_size_through_attribute_and_integrated_gradients():
    net, x, target = relu_convnet(), images(1, size=16), torch.tensor([2])
    model = classifier(net, 5)
    done = []
    whole, _, _ = sc.attribute(model, x, target, "smoothgrad", samples=7, seed=1, chunk_size=100)
    part, _, _ = sc.attribute(
        model,
        x,
        target,
        "smoothgrad",
        samples=7,
        seed=1,
        chunk_size=3,
        progress=lambda d, n: done.append((d, n)),
    )
    assert torch.allclose(part, whole, rtol=1e-10, atol=1e-13)
    assert done == [(3, 7), (6, 7), (7, 7)]
    whole = method("integrated_gradients")(net, x, target, steps=9, chunk_size=100)
    for chunk_size in (1, 4):
        part = method("integrated_gradients")(net, x, target, steps=9, chunk_size=chunk_size)
        assert torch.allclose(part, whole, rtol=1e-10, atol=1e-13)


def test_smoothgrad_seed():
    net, x, target = relu_convnet(), images(1, size=16), torch.tensor([0])
    a = method("smoothgrad")(net, x, target, samples=4, noise=0.15, seed=11)
    assert torch.equal(a, method("smoothgrad")(net, x, target, samples=4, noise=0.15, seed=11))
    b = method("smoothgrad")(net, x, target, samples=4, noise=0.15, seed=12)
    assert (a - b).norm() > 1e-3 * a.norm()


def test_explain_same_seed_same_map(demo, chelsea_path):
    a = sc.explain(demo, chelsea_path, method="smoothgrad", samples=2, seed=1)
    b = sc.explain(demo, chelsea_path, method="smoothgrad", samples=2, seed=1)
    c = sc.explain(demo, chelsea_path, method="smoothgrad", samples=2, seed=2)
    assert (a.saliency == b.saliency).all() and a.params["seed"] == 1
    assert not (a.saliency == c.saliency).all()


def _two_ranges():
    """Two images with different value ranges: [0, 1] and [0.3, 0.5]."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 4, 4, generator=g, dtype=D)
    x[0].view(-1)[:2] = torch.tensor([0.0, 1.0], dtype=D)
    x[1] = 0.3 + 0.2 * x[1]
    x[1].view(-1)[:2] = torch.tensor([0.3, 0.5], dtype=D)
    return x, torch.tensor([0.2 * 1.0, 0.2 * 0.2], dtype=D)  # sigma = noise 0.2 x (max - min)


def test_smoothgrad_sigma_is_noise_times_range_exact():
    """With gradient(x) = x, sample i's gradient is x + sigma * eps_i, eps_i = sample_noise(x, seed, i)."""
    x, sigma = _two_ranges()
    n, target = 5, torch.tensor([0, 1])
    eps = torch.stack([sample_noise(x, 9, i) for i in range(n)])  # (n, C, H, W)
    grads = x.unsqueeze(0) + sigma.view(1, 2, 1, 1, 1) * eps.unsqueeze(1)  # (n, B, C, H, W)

    # registered methods called directly, without naming the variant
    def run(name):
        return method(name)(HalfSquare(), x, target, samples=n, noise=0.2, seed=9)

    mean = grads.mean(0)
    assert torch.allclose(run("smoothgrad"), mean, rtol=1e-12, atol=1e-14)  # Eq. 3, Smilkov et al.
    assert torch.allclose(run("smoothgrad_squared"), grads.square().mean(0), rtol=1e-12, atol=1e-14)
    variance = grads.var(0, unbiased=False)  # population variance over samples
    assert torch.allclose(run("vargrad"), variance, rtol=1e-9, atol=1e-14)
    assert torch.allclose(variance, sigma.view(2, 1, 1, 1) ** 2 * eps.var(0, unbiased=False), rtol=1e-9)


def test_smoothgrad_sigma_statistically():
    """Without looking at the noise: VarGrad of gradient(x) = x is sigma^2 per pixel on average,
    and the SmoothGrad mean is x within the noise's standard error."""
    x, sigma = _two_ranges()
    n, target = 400, torch.tensor([0, 1])
    vargrad = method("vargrad")(
        HalfSquare(), x, target, samples=n, noise=0.2, seed=0, variant="vargrad", chunk_size=400
    )
    ratio = vargrad.flatten(1).mean(1) / sigma**2
    assert torch.allclose(ratio, torch.ones(2, dtype=D), atol=0.1), ratio  # ~0.01 standard error
    mean = method("smoothgrad")(HalfSquare(), x, target, samples=n, noise=0.2, seed=0, chunk_size=400)
    standard_error = sigma.view(2, 1, 1, 1) / n**0.5
    assert ((mean - x).abs() < 5 * standard_error).all()
    # smoothgrad_squared = vargrad + mean^2 (E[g^2] = Var g + (E g)^2)
    squared = method("smoothgrad_squared")(
        HalfSquare(), x, target, samples=n, noise=0.2, seed=0, variant="squared", chunk_size=400
    )
    assert torch.allclose(squared, vargrad + mean.square(), rtol=1e-9, atol=1e-14)


def test_smoothgrad_rejects_bad_parameters():
    net, x, t = relu_convnet(), images(1, size=16), torch.tensor([0])
    for kwargs in (
        {"samples": 0},
        {"noise": -0.1},
        {"noise": 2.0},
        {"variant": "median"},
        {"base": "integrated_gradients"},
        {"base": "smoothgrad"},
        {"base": "nope"},
    ):
        with pytest.raises(ValueError):
            method("smoothgrad")(net, x, t, **kwargs)


# ---------------------------------------------------------------- batch independence


def _all_calls():
    return [
        ("gradient", {}),
        ("gradient_x_input", {}),
        ("guided_backprop", {}),
        ("gradcam", {"layer": "conv2"}),
        ("guided_gradcam", {"layer": "relu2"}),
        ("smoothgrad", {"samples": 3, "variant": "mean"}),
        ("smoothgrad_squared", {"samples": 3, "variant": "squared"}),
        ("vargrad", {"samples": 3, "variant": "vargrad"}),
    ] + [("integrated_gradients", {"steps": 4, "baseline": b, "seed": 3}) for b in BASELINES]


@pytest.mark.parametrize(
    "name, params",
    _all_calls(),
    ids=lambda v: v if isinstance(v, str) else "-".join(str(p) for p in v.values()),
)
def test_one_image_does_not_depend_on_the_batch(name, params):
    net, x = relu_convnet(), images(3)
    x[2] = x[2] * 0.5  # a different value range too
    target = torch.tensor([1, 4, 2])
    together = method(name)(net, x, target, **params)
    for i in range(3):
        alone = method(name)(net, x[i : i + 1], target[i : i + 1], **params)
        assert torch.allclose(together[i : i + 1], alone, rtol=1e-10, atol=1e-14), (name, i)


# ---------------------------------------------------------------- Grad-CAM

# bilinear 2 -> 4 upsampling, align_corners=False: output pixel i samples the input at
# (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to [0, 1]
UPSAMPLE_2_TO_4 = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]], dtype=D)


def gradcam_net():
    """features: 2x2 stride-2 convolution averaging each channel's 2x2 blocks, A (3, 2, 2);
    score_k = sum_c W_kc mean(A_c) + b_k, so d score / d A_c = W_kc / 4 everywhere and the
    Grad-CAM weights (Eq. 1) are w_c = W_kc / 4."""
    net = nn.Sequential(
        OrderedDict(
            features=nn.Conv2d(3, 3, 2, stride=2, bias=False),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(3, 2),
        )
    )
    with torch.no_grad():
        net.features.weight.zero_()
        for c in range(3):
            net.features.weight[c, c] = 0.25
        net.fc.weight.copy_(torch.tensor([[2.0, -1.0, 0.5], [-4.0, 0.0, 1.0]]))
        net.fc.bias.copy_(torch.tensor([0.3, -0.3]))
    return net.to(D).requires_grad_(False)


@pytest.mark.parametrize("layer", ["features", None])
def test_gradcam_by_hand(layer):
    x = torch.zeros(1, 3, 4, 4, dtype=D)
    # 2x2 blocks -> A: channel 0 = [[1, 0], [2, 1]], channel 1 = [[0, 3], [1, 0]],
    #                 channel 2 = [[4, 0], [0, 0]]
    for c, block in enumerate(([[1, 0], [2, 1]], [[0, 3], [1, 0]], [[4, 0], [0, 0]])):
        x[0, c] = torch.tensor(block, dtype=D).repeat_interleave(2, 0).repeat_interleave(2, 1)
    # class 0: cam = relu((2 A0 - A1 + 0.5 A2) / 4) = relu([[4, -3], [3, 2]] / 4) = [[1, 0], [0.75, 0.5]]
    cam0 = torch.tensor([[1.0, 0.0], [0.75, 0.5]], dtype=D)
    # class 1: cam = relu((-4 A0 + A2) / 4) = relu([[0, 0], [-8, -4]] / 4) = 0
    out = method("gradcam")(gradcam_net(), x, torch.tensor([0]), layer=layer)
    assert out.shape == (1, 1, 4, 4)
    assert torch.allclose(out[0, 0], UPSAMPLE_2_TO_4 @ cam0 @ UPSAMPLE_2_TO_4.T, rtol=1e-12, atol=1e-14)
    assert torch.equal(
        method("gradcam")(gradcam_net(), x, torch.tensor([1]), layer=layer), torch.zeros_like(out)
    )


def test_gradcam_bad_layer():
    x = torch.rand(1, 3, 4, 4, dtype=D)
    with pytest.raises(ValueError, match="does not exist"):
        method("gradcam")(gradcam_net(), x, torch.tensor([0]), layer="conv99")

    class WithSpare(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.spare = gradcam_net(), nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.body(x)

    with pytest.raises(ValueError, match="not used"):
        method("gradcam")(WithSpare(), x, torch.tensor([0]), layer="spare")


# ---------------------------------------------------------------- guided backprop


class TwoLayer(nn.Module):
    """score = V relu(W2 relu(W1 x + b1) + b2) with a selectable activation implementation."""

    def __init__(self, activation: str, W1, b1, W2, b2, V):
        super().__init__()
        self.activation = activation
        self.fc1, self.fc2 = nn.Linear(4, 5, dtype=D), nn.Linear(5, 3, dtype=D)
        self.out = nn.Linear(3, 2, bias=False, dtype=D)
        with torch.no_grad():
            for layer, w, b in ((self.fc1, W1, b1), (self.fc2, W2, b2), (self.out, V, None)):
                layer.weight.copy_(w)
                if b is not None:
                    layer.bias.copy_(b)
        self.relu_module = {
            "ReLU": nn.ReLU(),
            "ReLU_inplace": nn.ReLU(inplace=True),
            "ReLU6": nn.ReLU6(),
            "ReLU6_inplace": nn.ReLU6(inplace=True),
        }.get(activation)
        self.requires_grad_(False)

    def act(self, h):
        a = self.activation
        if self.relu_module is not None:
            return self.relu_module(h)
        if a == "F.relu":
            return F.relu(h)
        if a == "F.relu_keyword":
            return F.relu(input=h)
        if a == "F.relu_inplace_no_return":
            F.relu(h, inplace=True)
            return h
        if a == "torch.relu":
            return torch.relu(h)
        if a == "Tensor.relu":
            return h.relu()
        if a == "Tensor.relu__no_return":
            h.relu_()
            return h
        if a == "F.relu6":
            return F.relu6(h)
        if a == "F.hardtanh_0_6":
            return F.hardtanh(h, 0.0, 6.0)
        raise AssertionError(a)

    def forward(self, x):
        return self.out(self.act(self.fc2(self.act(self.fc1(x.flatten(1))))))


def _weights():
    # first layer: one unit per pixel (z = pixel) plus a mixing unit
    W1 = torch.tensor(
        [[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0.5, -0.5, 0.5, -0.5]], dtype=D
    )
    b1 = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.5], dtype=D)
    W2 = torch.tensor(
        [[1.0, -2.0, 0.5, 1.0, -1.0], [-1.0, 1.0, 0.5, -0.5, 0.5], [0.5, 0.5, -0.2, 1.0, 1.0]], dtype=D
    )
    b2 = torch.tensor([0.5, 0.5, 3.0], dtype=D)  # third unit above 6 for both images
    V = torch.tensor([[1.0, -1.0, 2.0], [-1.0, 2.0, 1.0]], dtype=D)
    return W1, b1, W2, b2, V


def _guided_by_hand(x, target, upper=None):
    """Backward by hand: at each activation grad_in = relu(grad_out) * (0 < z [< upper])."""
    W1, b1, W2, b2, V = _weights()
    gate = (lambda z: z > 0) if upper is None else (lambda z: (z > 0) & (z < upper))
    act = (lambda z: z.clamp(min=0)) if upper is None else (lambda z: z.clamp(0, upper))
    x = x.flatten(1)
    z1 = x @ W1.T + b1
    z2 = act(z1) @ W2.T + b2
    g2 = V[target].clamp(min=0) * gate(z2)
    g1 = (g2 @ W2).clamp(min=0) * gate(z1)
    return (g1 @ W1).view(-1, 1, 2, 2), z1, z2


def _x():
    # the first four pre-activations are the pixels: negative, in (0, 6) and above 6
    return torch.tensor([[[[1.0, -2.0], [7.0, 0.5]]], [[[-1.0, 3.0], [0.2, 9.0]]]], dtype=D)


@pytest.mark.parametrize(
    "activation",
    [
        "ReLU",
        "ReLU_inplace",
        "F.relu",
        "F.relu_keyword",
        "F.relu_inplace_no_return",
        "torch.relu",
        "Tensor.relu",
        "Tensor.relu__no_return",
    ],
)
def test_guided_backprop_relu_by_hand(activation):
    x, target = _x(), torch.tensor([1, 0])
    net = TwoLayer(activation, *_weights())
    expected, _, _ = _guided_by_hand(x, target)
    ours = method("guided_backprop")(net, x, target)
    assert torch.allclose(ours, expected, rtol=1e-12, atol=1e-14)
    assert (ours != 0).sum() >= 4
    plain = method("gradient")(net, x, target)
    assert not torch.allclose(plain, ours)
    if activation != "ReLU":
        assert torch.equal(ours, method("guided_backprop")(TwoLayer("ReLU", *_weights()), x, target))


@pytest.mark.parametrize("activation", ["ReLU6", "ReLU6_inplace", "F.relu6", "F.hardtanh_0_6"])
def test_guided_backprop_relu6_by_hand(activation):
    x, target = _x(), torch.tensor([1, 0])
    net = TwoLayer(activation, *_weights())
    expected, z1, z2 = _guided_by_hand(x, target, upper=6.0)
    assert (z1 > 6).any() and (z2 > 6).any()  # the upper gate matters in both layers
    ours = method("guided_backprop")(net, x, target)
    assert torch.allclose(ours, expected, rtol=1e-12, atol=1e-14)
    assert (ours[0] != 0).any() and (ours[1] != 0).any()
    # image 1's pixel 9.0 reaches the score only through its own unit, which is above 6 (the
    # mixing unit is off): no gradient, where guided ReLU passes one
    relu_result, _, _ = _guided_by_hand(x, target)
    assert ours[1, 0, 1, 1] == 0 and relu_result[1, 0, 1, 1] > 0
    if activation != "ReLU6":
        assert torch.equal(ours, method("guided_backprop")(TwoLayer("ReLU6", *_weights()), x, target))


def test_guided_backprop_sign_pattern():
    """With non-negative first-layer weights every guided gradient is >= 0 (only positive
    gradients reach the input), while the plain gradient has both signs."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
    )
    with torch.no_grad():
        net[1].weight.abs_()
    net = net.to(D).requires_grad_(False)
    x = torch.randn(8, 3, 2, 2, dtype=D)
    target = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    ours = method("guided_backprop")(net, x, target)
    plain = method("gradient")(net, x, target)
    assert (ours >= 0).all() and (ours > 0).any()
    assert (plain < 0).any()


def test_guided_backprop_needs_relus():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.Tanh(), nn.Linear(4, 2)).to(D)
    with pytest.raises(ValueError, match="ReLU"):
        method("guided_backprop")(net, torch.rand(1, 3, 2, 2, dtype=D), torch.tensor([0]))
