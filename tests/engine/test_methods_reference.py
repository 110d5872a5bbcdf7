"""Each method against an independent implementation (Captum, pytorch-grad-cam) on real models.

Pass criterion: relative error ||ours - reference|| / ||reference|| < 1e-4. Measured values
are printed in the "measured errors" section of the pytest summary. Step and sample counts are
small: the comparison is of the same computation, not of converged maps.

Single-pass methods run the network as written by default (saliency_core/engine/_fast.py), so they
are compared as the engine runs them; the last tests do so through ``sc.explain``, as a user
calls it, on every bundled photo, to 1e-5. The SmoothGrad comparison switches BatchNorm folding
off, so both sides evaluate the same network operation by operation (folding inside averaging
methods has its own tolerance, tests/engine/test_fast_paths.py).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
from captum.attr import (
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Saliency,
)
from captum.attr._utils.approximation_methods import approximation_parameters
from conftest import relative_error
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import saliency_core as sc
from saliency_core.engine import _fast
from saliency_core.engine.methods._autograd import default_chunk_size
from saliency_core.engine.methods.integrated import make_baseline
from saliency_core.engine.methods.smoothgrad import sample_noise
from saliency_core.engine.samples import sample_images

# Captum's notices that it set requires_grad on its own input copies and hooked ReLUs
pytestmark = pytest.mark.filterwarnings(
    "ignore:Input Tensor 0 did not already require gradients",
    "ignore:Setting backward hooks on ReLU activations",
)

TOL = 1e-4


@pytest.fixture
def unfolded(monkeypatch):
    monkeypatch.setitem(_fast.OPTIONS, "fold", False)


CAT, ESPRESSO = 282, 967  # ImageNet "tiger cat", "espresso"


def method(name):
    return sc.METHODS[name].attribute


@pytest.fixture(scope="module")
def pair(chelsea_x, coffee_x):
    """Two photos in one batch with a different target each."""
    return torch.cat([chelsea_x, coffee_x]), torch.tensor([CAT, ESPRESSO])


# ---------------------------------------------------------------- gradient


def test_gradient_matches_captum_saliency(demo, pair, record):
    x, target = pair
    ours = method("gradient")(demo.network, x, target)
    reference = Saliency(demo.network).attribute(x.clone(), target=target, abs=False)
    err = record("gradient vs captum Saliency(abs=False)", relative_error(ours, reference))
    assert err < TOL


# ---------------------------------------------------------------- Integrated Gradients

STEPS = 4


@pytest.mark.parametrize("baseline", ["black", "blurred", "uniform"])
def test_integrated_gradients_gausslegendre_matches_captum(demo, chelsea_x, baseline, record):
    ours = method("integrated_gradients")(
        demo.network,
        chelsea_x,
        torch.tensor([CAT]),
        steps=STEPS,
        baseline=baseline,
        rule="gausslegendre",
        seed=4,
    )
    reference = IntegratedGradients(demo.network).attribute(
        chelsea_x.clone(),
        baselines=make_baseline(chelsea_x, baseline, seed=4),
        target=CAT,
        n_steps=STEPS,
        method="gausslegendre",
    )
    err = record(f"integrated_gradients gausslegendre {baseline} vs captum", relative_error(ours, reference))
    assert err < TOL


# 5 points: alphas k/4 are exact in float32, so Captum's torch.linspace and our np.linspace
# give the same path points (with 1/7 etc. they differ in the last bit, and the ReLU6 gates
# of the demo model turn that into ~1e-4 differences)
TRAPEZOID_STEPS = 5


def test_captum_trapezoid_weights_sum_to_less_than_one():
    # Captum 0.9's "riemann_trapezoid" uses step 1/n on linspace(0, 1, n) with halved ends, so
    # its weights sum to (n-1)/n; the textbook trapezoid rule (ours) uses 1/(n-1) and sums to 1.
    # If Captum changes this, the rescaling in the next test must go.
    step_sizes, alphas = approximation_parameters("riemann_trapezoid")
    assert sum(step_sizes(TRAPEZOID_STEPS)) == pytest.approx((TRAPEZOID_STEPS - 1) / TRAPEZOID_STEPS)
    assert alphas(TRAPEZOID_STEPS) == pytest.approx(np.linspace(0, 1, TRAPEZOID_STEPS).tolist())


@pytest.mark.parametrize("baseline", ["black", "blurred"])
def test_integrated_gradients_trapezoid_matches_captum(demo, chelsea_x, baseline, record):
    n = TRAPEZOID_STEPS
    ours = method("integrated_gradients")(
        demo.network, chelsea_x, torch.tensor([CAT]), steps=n, baseline=baseline, rule="riemann_trapezoid"
    )
    reference = IntegratedGradients(demo.network).attribute(
        chelsea_x.clone(),
        baselines=make_baseline(chelsea_x, baseline),
        target=CAT,
        n_steps=n,
        method="riemann_trapezoid",
    )
    # same path points; Captum's weights are ours times (n-1)/n (test above)
    reference = reference * n / (n - 1)
    err = record(
        f"integrated_gradients riemann_trapezoid {baseline} vs captum x n/(n-1)",
        relative_error(ours, reference),
    )
    assert err < TOL


# ---------------------------------------------------------------- SmoothGrad

SAMPLES, NOISE, SEED = 4, 0.15, 3


@pytest.mark.parametrize(
    "name, nt_type",
    [("smoothgrad", "smoothgrad"), ("smoothgrad_squared", "smoothgrad_sq"), ("vargrad", "vargrad")],
)
def test_smoothgrad_matches_captum_noise_tunnel(
    demo, chelsea_x, monkeypatch, unfolded, name, nt_type, record
):
    """Identical noise: Captum's NoiseTunnel draws all its noise with one call
    ``torch.normal(0, stdev_expanded)``, stdev_expanded of shape (batch * n, C, H, W), rows
    ordered image-major (``repeat_interleave``), and adds it to the repeated input. With one
    image and one noise batch, we replace ``torch.normal`` for the duration of the test by a
    function returning ``stdev_expanded * eps``, eps[i] = sample_noise(x, seed, i), the
    standard normal noise our method uses for sample i. Captum then evaluates Saliency at
    x + sigma * eps[i], the same points ours does iff our sigma is noise * (max - min)."""
    x = chelsea_x
    sigma = NOISE * float(x.max() - x.min())  # Smilkov et al. 2017, Sec. 3
    eps = torch.stack([sample_noise(x, SEED, i) for i in range(SAMPLES)])
    calls = []

    def normal(mean, std, *args, **kwargs):
        assert mean == 0 and not args and not kwargs
        assert std.shape == eps.shape and torch.all(std == sigma)
        calls.append(std.shape)
        return std * eps

    ours = method(name)(
        demo.network, x, torch.tensor([CAT]), samples=SAMPLES, noise=NOISE, seed=SEED, chunk_size=3
    )  # chunks of 3 + 1
    monkeypatch.setattr(torch, "normal", normal)
    reference = NoiseTunnel(Saliency(demo.network)).attribute(
        x.clone(), nt_type=nt_type, nt_samples=SAMPLES, stdevs=sigma, target=CAT, abs=False
    )
    monkeypatch.undo()
    assert len(calls) == 1, "Captum drew its noise differently than this test assumes"
    err = record(f"{name} vs captum NoiseTunnel({nt_type}), identical noise", relative_error(ours, reference))
    assert err < TOL


# ---------------------------------------------------------------- Grad-CAM


def test_gradcam_matches_captum_layer_gradcam(demo, pair, record):
    x, target = pair
    layer = demo.network.get_submodule(demo.gradcam_layer)
    ours = method("gradcam")(demo.network, x, target, layer=demo.gradcam_layer)
    cam = LayerGradCam(demo.network, layer).attribute(x.clone(), target=target, relu_attributions=True)
    reference = LayerAttribution.interpolate(cam, x.shape[-2:], "bilinear")
    err = record("gradcam vs captum LayerGradCam(relu) + bilinear", relative_error(ours, reference))
    assert err < TOL


def _min_max(a: np.ndarray) -> np.ndarray:
    return (a - a.min()) / (a.max() - a.min())


def test_gradcam_matches_pytorch_grad_cam(demo, pair, record):
    """pytorch-grad-cam returns min(x)->0, max->1 per map: it rescales the 7x7 map (with a
    1e-7 guard), resizes it with cv2 INTER_LINEAR (half-pixel centres, like
    align_corners=False), and rescales again. Bilinear weights sum to 1, so resizing commutes
    with an affine rescaling: min-max rescaling our map gives the same map up to that 1e-7 and
    float rounding. pytorch-grad-cam needs weight gradients on, so it gets a deep copy."""
    x, target = pair
    ours = method("gradcam")(demo.network, x, target, layer=demo.gradcam_layer)[:, 0].numpy()
    network = copy.deepcopy(demo.network)
    for p in network.parameters():
        p.requires_grad_(True)
    with GradCAM(model=network, target_layers=[network.get_submodule(demo.gradcam_layer)]) as cam:
        reference = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(t)) for t in target])
    assert reference.shape == ours.shape
    for i in range(len(x)):
        a, b = _min_max(ours[i]), reference[i]
        err = record(
            f"gradcam vs pytorch_grad_cam.GradCAM, both min-max scaled (image {i})",
            relative_error(torch.from_numpy(a), torch.from_numpy(b)),
        )
        assert err < TOL
        assert np.abs(a - b).max() < 1e-4


# ---------------------------------------------------------------- guided backprop


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    network = torchvision.models.resnet18(weights=None).eval()  # in-place nn.ReLU, reused per block
    for p in network.parameters():
        p.requires_grad_(False)
    not_inplace = copy.deepcopy(network)
    for m in not_inplace.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 64, 64, generator=g)
    return network, not_inplace, x, torch.tensor([3, 7])


def test_guided_backprop_matches_captum_on_resnet18(resnet, record):
    """Captum hooks nn.ReLU modules; it gets a copy with inplace=False, ours the original."""
    network, not_inplace, x, target = resnet
    ours = method("guided_backprop")(network, x, target)
    reference = GuidedBackprop(not_inplace).attribute(x.clone(), target=target)
    err = record(
        "guided_backprop (in-place resnet18) vs captum GuidedBackprop", relative_error(ours, reference)
    )
    assert err < TOL
    gradient = method("gradient")(network, x, target)
    assert relative_error(gradient, reference) > 0.1  # the comparison can tell the two apart


def test_guided_gradcam_matches_captum_on_resnet18(resnet, record):
    network, not_inplace, x, target = resnet
    ours = method("guided_gradcam")(network, x, target, layer="layer4")
    reference = GuidedGradCam(not_inplace, not_inplace.layer4).attribute(
        x.clone(), target=target, interpolate_mode="bilinear"
    )
    err = record(
        "guided_gradcam (resnet18, layer4) vs captum GuidedGradCam(bilinear)", relative_error(ours, reference)
    )
    assert err < TOL


class _GuidedReLU6(torch.autograd.Function):
    """min(max(y, 0), 6); backward relu(grad) where 0 < y < 6 (Springenberg et al. 2015)."""

    @staticmethod
    def forward(ctx, y):
        ctx.save_for_backward(y)
        return y.clamp(0, 6)

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad.clamp(min=0) * ((y > 0) & (y < 6)).to(grad.dtype)


class _GuidedReLU6Module(nn.Module):
    def forward(self, y):
        return _GuidedReLU6.apply(y)


def _swap_relu6(module: nn.Module) -> int:
    swapped = 0
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU6):
            setattr(module, name, _GuidedReLU6Module())
            swapped += 1
        else:
            swapped += _swap_relu6(child)
    return swapped


@pytest.fixture(scope="module")
def demo_guided_reference(demo, pair):
    """Guided backprop by construction: the plain gradient of a copy whose ReLU6 modules
    are replaced by a guided ReLU6 autograd function."""
    x, target = pair
    network = copy.deepcopy(demo.network)
    assert _swap_relu6(network) > 10
    with torch.no_grad():
        assert torch.allclose(network(x), demo.network(x), atol=1e-5)  # same forward
    xg = x.clone().requires_grad_(True)
    network(xg).gather(1, target.view(-1, 1)).sum().backward()
    return xg.grad


def test_guided_backprop_on_demo_relu6_matches_construction(demo, pair, demo_guided_reference, record):
    x, target = pair
    ours = method("guided_backprop")(demo.network, x, target)
    err = record(
        "guided_backprop (demo, ReLU6) vs guided-ReLU6 construction",
        relative_error(ours, demo_guided_reference),
    )
    assert err < TOL
    gradient = method("gradient")(demo.network, x, target)
    distance = record(
        "guided_backprop vs plain gradient on demo (must be large)", relative_error(gradient, ours)
    )
    assert distance > 0.5


def test_guided_gradcam_is_gradcam_times_guided_backprop(demo, pair, demo_guided_reference, record):
    x, target = pair
    ours = method("guided_gradcam")(demo.network, x, target, layer=demo.gradcam_layer)
    assert torch.equal(
        ours,
        method("gradcam")(demo.network, x, target, layer=demo.gradcam_layer)
        * method("guided_backprop")(demo.network, x, target),
    )
    layer = demo.network.get_submodule(demo.gradcam_layer)
    cam = LayerAttribution.interpolate(
        LayerGradCam(demo.network, layer).attribute(x.clone(), target=target, relu_attributions=True),
        x.shape[-2:],
        "bilinear",
    )
    err = record(
        "guided_gradcam (demo) vs captum Grad-CAM x guided-ReLU6 construction",
        relative_error(ours, cam * demo_guided_reference),
    )
    assert err < TOL


EXACT = 1e-5


def _captum_reference(demo, name: str, x: torch.Tensor, target: int) -> torch.Tensor:
    """Captum on the same network, with the settings ``sc.explain`` uses by default."""
    if name == "gradient":
        return Saliency(demo.network).attribute(x.clone(), target=target, abs=False)
    if name == "gradient_x_input":
        return InputXGradient(demo.network).attribute(x.clone(), target=target)
    if name == "integrated_gradients":
        defaults = sc.METHODS[name].defaults
        # the same batches of path points: convolutions of a batch of 5 round differently from a
        # batch of 50, and the ReLU6 gates turn that into ~4e-4 (Captum against itself)
        return IntegratedGradients(demo.network).attribute(
            x.clone(),
            baselines=torch.zeros_like(x),
            target=target,
            n_steps=defaults["steps"],
            method="gausslegendre",
            internal_batch_size=default_chunk_size(x),
        )
    layer = demo.network.get_submodule(demo.gradcam_layer)
    cam = LayerGradCam(demo.network, layer).attribute(x.clone(), target=target, relu_attributions=True)
    return LayerAttribution.interpolate(cam, x.shape[-2:], "bilinear")


@pytest.mark.parametrize("name", ["gradient", "gradient_x_input", "integrated_gradients", "gradcam"])
def test_explain_as_users_call_it_equals_captum(demo, name, record):
    """``sc.explain(model, photo, method)`` with no switches and no parameters, on every bundled
    photo, against Captum on the same network: the engine's defaults change no single-pass map."""
    assert _fast.OPTIONS["fold"] and not _fast.function_changes_allowed()  # the default engine
    worst = 0.0
    for label, path in sample_images().items():
        exp = sc.explain(demo, path, method=name)
        x = demo.preprocess(path)
        reference = _captum_reference(demo, name, x, exp.target)[0]
        err = relative_error(torch.from_numpy(exp.attribution), reference)
        worst = max(worst, err)
        assert err < EXACT, f"{label}: {err:.3g}"
    record(f"{name}: sc.explain vs captum, worst of {len(sample_images())} photos", worst)
    other = _captum_reference(demo, name, x, (exp.target + 1) % 1000)[0]
    assert relative_error(torch.from_numpy(exp.attribution), other) > 1e-2  # the check can fail
