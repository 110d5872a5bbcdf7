"""Speed paths for input gradients; each shows its gain in bench/run.py's ablation rows.

The rule: a speed path that changes the function computed (BatchNorm folding, TF32, lower
precision) is used only inside an averaging method (the SmoothGrad family, marked by
``averaging()``), where it is measured to move the map by at most a tenth of what changing the
noise seed does. Single-pass methods (gradient, gradient x input, guided backprop, Integrated
Gradients, Grad-CAM) always run the network as written, in fp32: they equal Captum on the
same network. ``function_changes_allowed()`` states the rule in one place.

- BatchNorm folding (averaging methods only): an eval-mode BatchNorm2d fed only by a convolution
  is merged into that convolution's weights, so forward and backward skip its elementwise passes. The same
  function up to float rounding; a ReLU gate within rounding of its threshold can flip, so
  maps agree with the plain network within the tolerance tests/engine/test_fast_paths.py states.
- CUDA graphs: on a GPU, a repeated (network, shape) forward+backward is captured once and
  replayed, removing per-kernel launch cost.
- Precision on a GPU: single-pass methods (gradient, Integrated Gradients, guided backprop)
  run their convolutions in full fp32; the SmoothGrad family allows TF32 (2.7x faster on
  ResNet-50 on an H200). Tolerance: a precision choice is used only where it moves the map
  less than 0.1x what changing the noise seed moves it and keeps Spearman >= 0.99 against
  fp32. TF32 on SmoothGrad-50, H200: 0.06x / 0.9917 (demo), 0.09x / 0.9983 (ResNet-50); on a
  single gradient it moves the map 9-11 %, so those stay fp32. bf16 autocast fails the
  tolerance (Spearman 0.85 on the demo model) and is not used. bench/run.py prints all of it.
- Incremental occlusion (saliency_core/engine/_incremental.py): each hidden copy's early layers are
  recomputed only around its square. The same operations on the same values, so not a change of
  function: occlusion equals Captum's to 1e-5 (tests/engine/test_occlusion.py); bench/occlusion_rise.py
  shows the gain.
"""

from __future__ import annotations

import contextvars
import copy
import os
import threading
import weakref
from collections import Counter
from contextlib import contextmanager

import torch
from torch import fx, nn

from .tracing import ConvLeafTracer

# switches for the benchmark's ablation rows and for users who need the plain path
OPTIONS = {
    "fold": os.environ.get("SALIENCY_FOLD", "1") != "0",
    "cuda_graphs": os.environ.get("SALIENCY_CUDA_GRAPHS", "1") != "0",
    # occlusion: recompute each hidden copy's layers only around its square (_incremental.py)
    "incremental": os.environ.get("SALIENCY_INCREMENTAL", "1") != "0",
    # None: TF32 for averaging methods only (see above); True / False: always / never
    "tf32": {"1": True, "0": False}.get(os.environ.get("SALIENCY_TF32", "")),
}
# set while an activation-rewriting TorchFunctionMode (guided backprop) is active: its
# gradients must come from the network as written and never from a graph captured without it
plain_network = contextvars.ContextVar("plain_network", default=False)
# set by averaging methods (SmoothGrad family): their maps tolerate TF32 convolutions
averaged = contextvars.ContextVar("averaged", default=False)


@contextmanager
def _set(flag: contextvars.ContextVar):
    token = flag.set(True)
    try:
        yield
    finally:
        flag.reset(token)


def as_written():
    """Gradients inside use the network as written: no folded copy, no captured graph."""
    return _set(plain_network)


def averaging():
    """Marks the gradients computed inside as terms of an average (SmoothGrad family)."""
    return _set(averaged)


@contextmanager
def switched(**values):
    """OPTIONS changed for the calls inside, restored after (benchmark ablations, tests)."""
    saved = dict(OPTIONS)
    OPTIONS.update(values)
    try:
        yield
    finally:
        OPTIONS.clear()
        OPTIONS.update(saved)


def function_changes_allowed() -> bool:
    """Whether a speed path that changes the computed function may be used now: only inside an
    averaging method and outside guided backprop (see the module docstring)."""
    return averaged.get() and not plain_network.get()


def _tf32() -> bool:
    return function_changes_allowed() if OPTIONS["tf32"] is None else bool(OPTIONS["tf32"])


def fold_batchnorm(network: nn.Module) -> nn.Module | None:
    """A copy of ``network`` with each foldable BatchNorm2d merged into its convolution,
    or None when the network cannot be traced or has nothing to fold."""
    if isinstance(network, torch.jit.ScriptModule):
        return None
    try:
        net = copy.deepcopy(network)
        graph = ConvLeafTracer().trace(net)
    except Exception:  # data-dependent control flow, unsupported ops: keep the plain path
        return None
    modules = dict(net.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    folded = 0
    for node in list(graph.nodes):
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, nn.BatchNorm2d) or bn.training or bn.running_mean is None:
            continue
        source = node.args[0]
        conv = (
            modules.get(source.target) if isinstance(source, fx.Node) and source.op == "call_module" else None
        )
        if (
            not isinstance(conv, nn.Conv2d)
            or calls[source.target] != 1
            or len(source.users) != 1
            or len(node.args) != 1
            or node.kwargs
        ):  # a shared convolution must stay as it is
            continue
        with torch.no_grad():
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight
            shift = -bn.running_mean * scale
            if bn.bias is not None:
                shift = shift + bn.bias
            if conv.bias is not None:
                shift = shift + conv.bias * scale
            conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))).to(conv.weight.dtype))
            conv.bias = nn.Parameter(shift.to(conv.weight.dtype), requires_grad=False)
        node.replace_all_uses_with(source)
        graph.erase_node(node)
        folded += 1
    if not folded:
        return None
    result = fx.GraphModule(net, graph)
    result.eval()
    return result


_FOLDED: weakref.WeakKeyDictionary[nn.Module, tuple] = weakref.WeakKeyDictionary()
_LOCK = threading.RLock()


def _stamp(network: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or modified in place."""
    return tuple((t.data_ptr(), t._version) for t in (*network.parameters(), *network.buffers()))


def _has_hooks(network: nn.Module) -> bool:
    """Hooks see the modules as written; a folded copy would call them differently."""
    return any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
        for m in network.modules()
    )


def _same_function(folded: nn.Module, network: nn.Module, probe: torch.Tensor) -> bool:
    """Whether the folded copy gives the network's scores on ``probe`` (to 1e-4 relative)."""
    try:
        with torch.no_grad():
            a, b = folded(probe), network(probe)
        return a.shape == b.shape and bool((a - b).norm() <= 1e-4 * b.norm() + 1e-6)
    except Exception:  # anything unexpected: the plain path
        return False


def gradient_network(network: nn.Module, probe: torch.Tensor | None = None) -> nn.Module:
    """The network input gradients are computed on: inside an averaging method, its
    BatchNorm-folded copy when it has one that gives the same scores on ``probe`` (cached while
    its weights stay the same); else ``network`` itself."""
    if not OPTIONS["fold"] or not function_changes_allowed() or _has_hooks(network):
        return network
    with _LOCK:  # dashboard sessions are threads sharing one model
        return _folded(network, probe)


def _folded(network: nn.Module, probe: torch.Tensor | None) -> nn.Module:
    stamp = _stamp(network)
    cached = _FOLDED.get(network)
    if cached is None or cached[0] != stamp:
        folded = fold_batchnorm(network)  # a deep copy: keeps the weights' memory layout
        if folded is not None and probe is not None and not _same_function(folded, network, probe):
            folded = None
        cached = (stamp, folded)
        _FOLDED[network] = cached
    return cached[1] if cached[1] is not None else network


class _Graphed:
    """One captured forward+backward of ``network`` for a fixed input shape on a GPU."""

    def __init__(self, network: nn.Module, x: torch.Tensor, target: torch.Tensor):
        with torch.no_grad():
            self.classes = network(x[:1]).shape[1]
        check_target(target, self.classes)  # before any graph work sees the indices
        self.x = x.detach().clone().requires_grad_(True)
        self.target = target.clone()
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):  # warm-up outside the capture (cuDNN algorithm choice)
            for _ in range(2):
                _step(network, self.x, self.target)
        torch.cuda.current_stream(x.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.grad = _step(network, self.x, self.target)

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_target(target, self.classes)
        with torch.no_grad():
            self.x.copy_(x)
            self.target.copy_(target)
        self.graph.replay()
        return self.grad.clone()


def check_target(target: torch.Tensor, classes: int) -> None:
    """ValueError unless every index is a class: on a GPU a bad index is a device-side assert."""
    if target.numel() and not (0 <= int(target.min()) and int(target.max()) < classes):
        raise ValueError(f"Target class must be between 0 and {classes - 1}; got {target.tolist()}.")


_GRAPHS: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()
_MAX_GRAPHS = 2  # per network: each holds its activations' memory


def _step(network: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d sum(score[target]) / dx with no host synchronisation (capturable)."""
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(network(x).gather(1, target.view(-1, 1)).sum(), x)
    return grad


def graphed_gradient(network: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """Input gradient through a CUDA graph, or None where graphs do not apply:
    not a GPU, switched off, inside guided backprop, or a shape seen for the first time
    (captured on its second use, so one-off shapes never pay for a capture)."""
    if (
        x.device.type != "cuda"
        or not OPTIONS["cuda_graphs"]
        or plain_network.get()
        or isinstance(network, torch.jit.ScriptModule)
    ):
        return None
    with _LOCK:  # one replay at a time: a graph's input and output buffers are shared
        return _replay(network, x, target)


def _replay(network: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    autocast = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None
    key = (tuple(x.shape), x.dtype, x.device, autocast, _tf32(), _stamp(network))
    graphs = _GRAPHS.setdefault(network, {})
    entry = graphs.get(key)
    if entry is None:  # first sight: count it, run eagerly
        for old in [k for k in graphs if k[-1] != key[-1]]:  # weights changed: captures are stale
            del graphs[old]
        while len(graphs) >= _MAX_GRAPHS:
            del graphs[next(iter(graphs))]
        graphs[key] = 1
        return None
    if entry == 0:
        return None
    if entry == 1:
        try:
            graphs[key] = entry = _Graphed(network, x, target)
        except ValueError:  # a bad target index: the caller's error, not a capture problem
            raise
        except Exception:  # an op that cannot be captured (host sync, CPU tensors): stay eager
            graphs[key] = 0
            return None
    return entry(x, target)


@contextmanager
def gpu_settings(device: torch.device):
    """cuDNN picks its fastest algorithms; TF32 only where allowed (above). No-op off the GPU.
    The flags are process-wide, so GPU gradient work of concurrent sessions takes turns."""
    if device.type != "cuda":
        yield
        return
    b = torch.backends.cudnn
    with _LOCK, b.flags(enabled=b.enabled, benchmark=True, deterministic=b.deterministic, allow_tf32=_tf32()):
        yield


def _ranks(a: torch.Tensor) -> torch.Tensor:
    return a.detach().abs().amax(1).flatten().double().argsort().argsort().double()


def precision_tolerated(candidate: torch.Tensor, reference: torch.Tensor, other_seed: torch.Tensor) -> bool:
    """The stated tolerance for a reduced-precision SmoothGrad map: ``candidate`` (reduced
    precision) is at most 0.1x as far from ``reference`` (fp32) as ``other_seed`` (fp32, another
    noise seed) is, and the drawn maps' Spearman rank correlation with it is >= 0.99."""

    def rel(a):
        return float((a.detach().double() - reference.double()).norm() / reference.double().norm())

    rho = float(torch.corrcoef(torch.stack([_ranks(candidate), _ranks(reference)]))[0, 1])
    return rel(candidate) <= 0.1 * rel(other_seed) and rho >= 0.99
