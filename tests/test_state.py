"""Methods leave no trace: the network object is shared by every session of the
app, so after any call, including one that raises midway, it must have no hook, no changed
flag, no swapped module, and the caller's input must be untouched."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.modules.module as module_globals
from torch import nn

import saliency_core as sc

_MODULE_HOOKS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks_always_called",
)
_GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
    "_global_forward_hooks_with_kwargs",
    "_global_forward_hooks_always_called",
)


def snapshot(network: nn.Module) -> dict:
    """Everything a method could leave behind on a network or in torch's global state."""
    return {
        "modules": [
            (name, id(m), type(m), m.training, m.__dict__.get("inplace"))
            for name, m in network.named_modules()
        ],
        "hooks": {
            name: {h: len(getattr(m, h, {}) or {}) for h in _MODULE_HOOKS}
            for name, m in network.named_modules()
        },
        "global_hooks": {h: len(getattr(module_globals, h, {}) or {}) for h in _GLOBAL_HOOKS},
        "parameters": [
            (name, id(p), p.requires_grad, p.grad is None, p._version, p.detach().clone())
            for name, p in network.named_parameters()
        ],
        "buffers": [(name, b._version, b.detach().clone()) for name, b in network.named_buffers()],
        "grad_enabled": torch.is_grad_enabled(),
        "function_modes": len(torch.overrides._get_current_function_mode_stack()),
        "torch_function_stack": torch._C._len_torch_function_stack(),
    }


def assert_unchanged(before: dict, network: nn.Module):
    after = snapshot(network)
    assert after["modules"] == before["modules"], "a module was swapped or its training/inplace flag changed"
    assert after["hooks"] == before["hooks"], "a hook was left on a module"
    assert after["global_hooks"] == before["global_hooks"], "a global module hook was left"
    assert all(v == 0 for v in after["global_hooks"].values())
    assert after["function_modes"] == 0 and after["torch_function_stack"] == 0, (
        "a TorchFunctionMode is still active"
    )
    assert after["grad_enabled"] == before["grad_enabled"]
    for (name, *meta, value), (_, *meta_after, value_after) in zip(before["parameters"], after["parameters"]):
        assert meta == meta_after, f"parameter {name}: identity, requires_grad, .grad or version changed"
        assert torch.equal(value, value_after), f"parameter {name} changed"
    for (name, version, value), (_, version_after, value_after) in zip(before["buffers"], after["buffers"]):
        assert version == version_after and torch.equal(value, value_after), f"buffer {name} changed"


class Caller:
    """The caller's input: values, flags and version recorded before the call."""

    def __init__(self, x: torch.Tensor):
        self.x, self.copy, self.version = x, x.clone(), x._version
        self.requires_grad = x.requires_grad

    def assert_unchanged(self):
        assert torch.equal(self.x, self.copy), "the caller's input was modified"
        assert self.x._version == self.version, "the caller's input was written in place"
        assert self.x.requires_grad == self.requires_grad and self.x.grad is None


class Boom(Exception):
    pass


class Explode(nn.Module):
    """Raises in forward when armed, or in backward (through an autograd function) when set so."""

    def __init__(self):
        super().__init__()
        self.when = None  # None, "forward" or "backward"

    def forward(self, h):
        if self.when == "forward":
            raise Boom("forward")
        if self.when == "backward":
            return _RaiseInBackward.apply(h)
        return h


class _RaiseInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h):
        return h.clone()

    @staticmethod
    def backward(ctx, grad):
        raise Boom("backward")


def tiny_network(training: bool = False) -> nn.Sequential:
    """ReLU conv net; some parameters trainable and some frozen, to see that neither flips."""
    torch.manual_seed(0)
    net = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 4, 3, padding=1),
            relu1=nn.ReLU(inplace=True),
            conv2=nn.Conv2d(4, 6, 3, stride=2),
            relu2=nn.ReLU6(),
            explode=Explode(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(6, 5),
        )
    )
    net.conv1.requires_grad_(False)
    net.train(training)
    net.fc.eval()  # mixed flags
    return net


def tiny_model(training: bool = False) -> sc.Classifier:
    return sc.Classifier(
        name="tiny",
        network=tiny_network(training),
        labels=[f"c{i}" for i in range(5)],
        fingerprint="0" * 64,
        input_size=16,
        resize=16,
        gradcam_layer="relu2",
    )


FAST = {"samples": 2, "steps": 2, "noise": 0.1, "seed": 1, "window": 16, "stride": 16, "masks": 8, "cell": 8}


def fast_params(name: str) -> dict:
    """Small sample/step counts for the parameters the method takes."""
    return {k: v for k, v in FAST.items() if k in sc.METHODS[name].defaults}


# methods that need a transformer's attention layers (attention rollout) are checked on one in
# tests/engine/test_models_kinds.py; every other method runs on the tiny convolutional network
ALL = sorted(n for n, m in sc.METHODS.items() if "attention" not in m.needs)


def test_every_method_is_covered():
    assert {"gradient", "guided_backprop", "smoothgrad", "integrated_gradients", "gradcam"} <= set(ALL)


# ---------------------------------------------------------------- successful calls


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train-flags"])
@pytest.mark.parametrize("name", ALL)
def test_direct_and_attribute_calls_leave_no_trace(name, training):
    model = tiny_model(training)
    before = snapshot(model.network)
    x = torch.rand(2, 3, 16, 16)
    caller = Caller(x)
    target = torch.tensor([1, 3])
    direct = sc.METHODS[name].attribute(model.network, x, target, **fast_params(name))
    assert_unchanged(before, model.network)
    caller.assert_unchanged()
    via, _, _ = sc.attribute(model, x, target, name, **fast_params(name))
    assert_unchanged(before, model.network)
    caller.assert_unchanged()
    assert direct.shape[0] == 2 and direct.shape[-2:] == x.shape[-2:]
    assert not direct.requires_grad and not via.requires_grad  # no graph kept alive
    assert torch.allclose(direct, via)


@pytest.mark.parametrize("name", ALL)
def test_input_that_requires_grad_gets_no_grad(name):
    model = tiny_model()
    x = torch.rand(1, 3, 16, 16).requires_grad_(True)
    caller = Caller(x)
    sc.METHODS[name].attribute(model.network, x, torch.tensor([2]), **fast_params(name))
    caller.assert_unchanged()


@pytest.mark.parametrize("name", ALL)
def test_methods_work_inside_no_grad(name):
    """A caller under torch.no_grad() (e.g. a page) gets the same map and keeps no_grad."""
    model = tiny_model()
    x, target = torch.rand(1, 3, 16, 16), torch.tensor([0])
    expected = sc.METHODS[name].attribute(model.network, x, target, **fast_params(name))
    with torch.no_grad():
        got = sc.METHODS[name].attribute(model.network, x, target, **fast_params(name))
        assert not torch.is_grad_enabled()
    assert torch.allclose(got, expected)


@pytest.mark.parametrize("name", ALL)
def test_explain_on_demo_leaves_no_trace(demo, chelsea_path, chelsea_x, name):
    before = snapshot(demo.network)
    caller = Caller(chelsea_x)
    exp = sc.explain(demo, chelsea_path, method=name, **fast_params(name))
    assert exp.saliency.shape == (224, 224)
    sc.attribute(demo, chelsea_x, torch.tensor([exp.target]), name, **fast_params(name))
    assert_unchanged(before, demo.network)
    caller.assert_unchanged()
    assert not demo.network.training


# ---------------------------------------------------------------- calls that raise


@pytest.mark.parametrize("when", ["forward", "backward"])
@pytest.mark.parametrize("name", ALL)
def test_network_raising_midway_leaves_no_trace(name, when):
    model = tiny_model()
    x = torch.rand(2, 3, 16, 16)
    caller = Caller(x)
    before = snapshot(model.network)
    model.network.explode.when = when
    params = fast_params(name)
    if "layer" in sc.METHODS[name].defaults:
        params["layer"] = "relu2"  # hooked before the failing module
    if when == "backward" and "gradient" not in sc.METHODS[name].needs:
        # forward passes only (occlusion, RISE): no backward runs, so nothing raises
        sc.METHODS[name].attribute(model.network, x, torch.tensor([0, 1]), **params)
        model.network.explode.when = None
        assert_unchanged(before, model.network)
        caller.assert_unchanged()
        return
    with pytest.raises(Boom):
        sc.METHODS[name].attribute(model.network, x, torch.tensor([0, 1]), **params)
    if "layer" in params and when == "forward":
        with pytest.raises(Boom):  # and with the layer search, which runs its own forward pass
            sc.METHODS[name].attribute(model.network, x, torch.tensor([0, 1]), **{**params, "layer": None})
    with pytest.raises(Boom):
        sc.attribute(model, x, torch.tensor([0, 1]), name, **fast_params(name))
    model.network.explode.when = None
    assert_unchanged(before, model.network)
    caller.assert_unchanged()
    # and the network still works normally afterwards
    sc.METHODS[name].attribute(model.network, x, torch.tensor([0, 1]), **params)
    assert_unchanged(before, model.network)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("target", [5, -1, 1000], ids=["5", "-1", "1000"])
def test_bad_target_raises_value_error_and_leaves_no_trace(name, target):
    model = tiny_model()
    x = torch.rand(1, 3, 16, 16)
    caller = Caller(x)
    before = snapshot(model.network)
    with pytest.raises(ValueError, match="Target class"):
        sc.METHODS[name].attribute(model.network, x, torch.tensor([target]), **fast_params(name))
    with pytest.raises(ValueError, match="Target class"):
        sc.attribute(model, x, torch.tensor([target]), name, **fast_params(name))
    assert_unchanged(before, model.network)
    caller.assert_unchanged()


@pytest.mark.parametrize("name", [n for n in ALL if "layer" in sc.METHODS[n].defaults])
def test_bad_gradcam_layer_leaves_no_trace(name):
    model = tiny_model()
    x = torch.rand(1, 3, 16, 16)
    before = snapshot(model.network)
    for layer in ("no_such_layer", "conv1.weight_typo"):
        with pytest.raises(ValueError, match="does not exist"):
            sc.METHODS[name].attribute(model.network, x, torch.tensor([0]), layer=layer)
    assert_unchanged(before, model.network)


def test_progress_callback_raising_midway_leaves_no_trace(demo, chelsea_x):
    """E.g. the page stops a long SmoothGrad run from its progress callback."""
    before = snapshot(demo.network)
    caller = Caller(chelsea_x)
    calls = []

    def stop(done, total):
        calls.append(done)
        raise Boom("stopped")

    with pytest.raises(Boom):
        sc.attribute(
            demo, chelsea_x, torch.tensor([282]), "smoothgrad", samples=4, chunk_size=1, progress=stop
        )
    with pytest.raises(Boom):
        sc.attribute(
            demo, chelsea_x, torch.tensor([282]), "integrated_gradients", steps=4, chunk_size=1, progress=stop
        )
    assert calls == [1, 1]
    assert_unchanged(before, demo.network)
    caller.assert_unchanged()


def test_explain_rejects_bad_input_without_trace(demo, chelsea_path):
    before = snapshot(demo.network)
    with pytest.raises(ValueError, match="Target class"):
        sc.explain(demo, chelsea_path, method="gradient", target=1000)
    with pytest.raises(ValueError, match="Unknown method"):
        sc.explain(demo, chelsea_path, method="no_such_method")
    with pytest.raises(ValueError, match="unknown"):
        sc.explain(demo, chelsea_path, method="gradient", stepz=3)
    with pytest.raises(ValueError, match="does not exist"):
        sc.explain(demo, chelsea_path, method="gradcam", layer="_blocks.99")
    assert_unchanged(before, demo.network)


class _PassThrough(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def test_snapshot_detects_what_it_should():
    """The checks above can fail: a hook, a flag, a swapped module or a mode are all seen."""
    net = tiny_network()
    before = snapshot(net)
    handle = net.conv2.register_forward_hook(lambda *a: None)
    with pytest.raises(AssertionError, match="hook"):
        assert_unchanged(before, net)
    handle.remove()
    net.fc.weight.requires_grad_(False)
    with pytest.raises(AssertionError, match="requires_grad"):
        assert_unchanged(before, net)
    net.fc.weight.requires_grad_(True)
    net.train()
    with pytest.raises(AssertionError, match="training"):
        assert_unchanged(before, net)
    net.eval()
    net.fc.train(False)
    net.relu1.inplace = False
    with pytest.raises(AssertionError, match="swapped"):
        assert_unchanged(before, net)
    net.relu1.inplace = True
    with _PassThrough():
        with pytest.raises(AssertionError, match="TorchFunctionMode"):
            assert_unchanged(before, net)
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *a: None)
    try:
        with pytest.raises(AssertionError, match="global"):
            assert_unchanged(before, net)
    finally:
        handle.remove()
    assert_unchanged(before, net)


def test_gradcam_ignores_forward_passes_of_other_threads(demo, chelsea_path, coffee_x, monkeypatch):
    """Sessions (and the Review page's prefetch) share one network: another thread's forward pass
    during a Grad-CAM call must not become its activation."""
    import threading

    from saliency_core.engine.methods import gradcam as gc

    alone = sc.explain(demo, chelsea_path, method="gradcam").saliency
    original = gc.target_scores

    def with_a_pass_from_another_thread(network, x, targets):
        scores = original(network, x, targets)
        other = threading.Thread(target=lambda: network(coffee_x.detach()))
        other.start()
        other.join()  # its activation reaches the hook after ours
        return scores

    monkeypatch.setattr(gc, "target_scores", with_a_pass_from_another_thread)
    shared = sc.explain(demo, chelsea_path, method="gradcam").saliency
    assert torch.equal(torch.as_tensor(shared), torch.as_tensor(alone))
