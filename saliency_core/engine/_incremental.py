"""Scores of many copies of one image, each changed only inside one box (occlusion), where each
copy's layers are recomputed only where the change can reach.

Incremental inference (Nakandala, Kumar, Papakonstantinou 2019, "Incremental and Approximate
Inference for Faster Occlusion-based Deep CNN Explanations", Sec. 3): a convolution's output
changes only inside the box grown by its kernel, so the early, high-resolution layers, which cost
most on a CPU, are recomputed on small crops and read the unchanged image's activations around
them. Once the changed region covers most of a layer (or at an operation this module does not
know), the copies are made whole and the rest of the network runs as written on the batch.

Every value is computed by the network's own layers from the same inputs, so scores equal the
plain batched forward pass up to float rounding (convolutions of another size may sum in another
order; activations are continuous, so rounding stays rounding). ``PatchedForward`` checks its
own pass against the network as written and ``usable`` is False when they differ: callers then
run the plain batched forward. Used by occlusion only (saliency_core/engine/methods/occlusion.py).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from .tracing import ConvLeafTracer

FULL_SHARE = 0.5  # a changed region covering this share of a layer: make the copies whole


@dataclass
class _Dirty:
    """Per-copy values of a (1, C, H, W) activation inside a box of fixed size (h, w) at rows
    ``ys`` and columns ``xs`` (N,), always inside the activation; outside it they equal the
    unchanged image's values."""

    crop: torch.Tensor
    ys: torch.Tensor
    xs: torch.Tensor

    @property
    def size(self) -> tuple[int, int]:
        return self.crop.shape[-2], self.crop.shape[-1]


# element-wise operations: (copies of) a box in, the same box out
_POINTWISE_MODULES = {
    nn.ReLU: lambda m, x: F.relu(x),
    nn.ReLU6: lambda m, x: F.hardtanh(x, 0.0, 6.0),
    nn.Hardtanh: lambda m, x: F.hardtanh(x, m.min_val, m.max_val),
    nn.LeakyReLU: lambda m, x: F.leaky_relu(x, m.negative_slope),
    nn.SiLU: lambda m, x: F.silu(x),
    nn.Hardswish: lambda m, x: F.hardswish(x),
    nn.Hardsigmoid: lambda m, x: F.hardsigmoid(x),
    nn.Sigmoid: lambda m, x: torch.sigmoid(x),
    nn.Tanh: lambda m, x: torch.tanh(x),
    nn.GELU: lambda m, x: F.gelu(x, approximate=m.approximate),
    nn.Identity: lambda m, x: x,
}
_INPLACE = {
    operator.iadd: operator.add,
    operator.isub: operator.sub,
    operator.imul: operator.mul,
    operator.itruediv: operator.truediv,
    torch.relu_: torch.relu,
}
_POINTWISE_FUNCTIONS = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    F.relu,
    F.relu6,
    F.hardtanh,
    F.silu,
    F.hardswish,
    F.hardsigmoid,
    F.leaky_relu,
    F.gelu,
}
_POINTWISE_METHODS = {"add", "sub", "mul", "div", "relu", "sigmoid", "tanh", "contiguous"}


def _pointwise_module(m: nn.Module):
    if isinstance(m, nn.BatchNorm2d):
        return (lambda m_, x: m_(x)) if not m.training and m.running_mean is not None else None
    if isinstance(m, (nn.Dropout, nn.Dropout2d)):
        return (lambda m_, x: x) if not m.training else None
    return _POINTWISE_MODULES.get(type(m))


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _window_geometry(m: nn.Module, shape) -> tuple | None:
    """(kernel, stride, dilation, padding before, pad value, op) per spatial dim for a module that
    reads a window of its input, or None when it is not one this module can crop."""
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            return None
        k, s, d = _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation)
        if hasattr(m, "pads") and type(m).forward is not nn.Conv2d.forward:
            left, _, top, _ = m.pads(shape)  # "same" padding computed from the input size
            before = (top, left)
        elif type(m).forward is nn.Conv2d.forward:
            if m.padding == "valid":
                before = (0, 0)
            elif m.padding == "same":
                before = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d))
            else:
                before = _pair(m.padding)
        else:
            return None

        def op(x):
            return F.conv2d(x, m.weight, m.bias, s, 0, d, m.groups)

        return k, s, d, before, 0.0, op
    if isinstance(m, nn.MaxPool2d) and not m.ceil_mode and not m.return_indices:
        k, d = _pair(m.kernel_size), _pair(m.dilation)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
        return k, s, d, _pair(m.padding), float("-inf"), lambda x: F.max_pool2d(x, k, s, 0, d)
    if isinstance(m, nn.AvgPool2d) and not m.ceil_mode and m.count_include_pad and m.divisor_override is None:
        k = _pair(m.kernel_size)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
        return k, s, (1, 1), _pair(m.padding), 0.0, lambda x: F.avg_pool2d(x, k, s, 0)
    return None


def _spatial_const(v) -> bool:
    """A constant operand that is the same at every pixel (scalar or (.., C, 1, 1))."""
    return not isinstance(v, torch.Tensor) or v.dim() < 2 or v.shape[-2:].numel() == 1


class PatchedForward:
    """Scores of copies of one image ``x`` (1, C, H, W), copy i changed inside its own box.

    Example:
        >>> run = PatchedForward(network, x)
        >>> if run.usable:
        ...     logits = run(ys, xs, patches)   # patches (N, C, h, w) replace x at rows ys, columns xs
    """

    def __init__(self, network: nn.Module, x: torch.Tensor):
        self.network, self.usable = network, False
        if (
            x.dim() != 4
            or x.shape[0] != 1
            or isinstance(network, torch.jit.ScriptModule)
            or any(
                m._forward_hooks or m._forward_pre_hooks or not getattr(m, "gives_gradients", True)
                for m in network.modules()
            )
        ):  # hooks see the modules as written; ONNX: opaque
            return
        try:
            self.graph = ConvLeafTracer().trace(network)
        except Exception:  # data-dependent control flow, opaque calls: the plain path
            return
        self.modules = dict(network.named_modules())
        self._padded: dict = {}  # node's unchanged activation with a border, by border
        self.nodes = list(self.graph.nodes)
        self.depends: set[fx.Node] = set()
        for node in self.nodes:
            if node.op == "placeholder" or any(a in self.depends for a in node.all_input_nodes):
                self.depends.add(node)
        if sum(n.op == "placeholder" for n in self.nodes) != 1:
            return
        try:
            with torch.no_grad():
                self.base = self._run_plain({}, x)
                reference = network(x)
        except Exception:
            return
        out = self.base.get("output")
        self.usable = (
            isinstance(out, torch.Tensor)
            and isinstance(reference, torch.Tensor)
            and out.shape == reference.shape
            and out.dim() == 2
            and bool((out - reference).norm() <= 1e-5 * reference.norm() + 1e-12)
        )

    # ---- one node, on whole tensors ---------------------------------------------------------

    def _call(self, node: fx.Node, args, kwargs):
        if node.op == "call_module":
            m = self.modules[node.target]
            pointwise = _pointwise_module(m)
            return (
                pointwise(m, *args)
                if pointwise is not None and len(args) == 1 and not kwargs
                else m(*args, **kwargs)
            )
        if node.op == "call_function":
            fn = _INPLACE.get(node.target, node.target)
            if kwargs.get("inplace"):
                kwargs = {**kwargs, "inplace": False}
            return fn(*args, **kwargs)
        if node.op == "call_method":
            name = node.target
            if name.endswith("_") and name[:-1] in _POINTWISE_METHODS:
                name = name[:-1]
            return getattr(args[0], name)(*args[1:], **kwargs)
        if node.op == "get_attr":
            obj = self.network
            for part in node.target.split("."):
                obj = getattr(obj, part)
            return obj
        raise ValueError(f"unexpected graph node {node.op}")

    def _run_plain(self, values: dict, x: torch.Tensor) -> dict:
        """The unchanged image through the graph; keeps every node's value (one image: small)."""
        for node in self.nodes:
            if node.op == "placeholder":
                values[node] = x
            elif node.op == "output":
                values["output"] = fx.node.map_arg(node.args[0], lambda n: values[n])
            else:
                args = fx.node.map_arg(node.args, lambda n: values[n])
                kwargs = fx.node.map_arg(node.kwargs, lambda n: values[n])
                values[node] = self._call(node, args, kwargs)
        return values

    # ---- the copies ---------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(self, ys: torch.Tensor, xs: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes) of the image with ``patches`` (N, C, h, w) written at rows ``ys``
        and columns ``xs`` (LongTensors (N,)); every box lies inside the image."""
        values: dict = {}
        remaining = {n: len(n.users) for n in self.nodes}
        n_copies = patches.shape[0]
        for node in self.nodes:
            if node.op == "placeholder":
                values[node] = _Dirty(patches, ys, xs)
                continue
            if node.op == "output":
                out = fx.node.map_arg(node.args[0], lambda n: self._whole(values, n, n_copies))
                return out
            if node not in self.depends:
                values[node] = self.base[node]
            else:
                values[node] = self._step(node, values, n_copies)
            for arg in node.all_input_nodes:  # drop what no later node reads
                remaining[arg] -= 1
                if remaining[arg] == 0 and arg in values and arg in self.depends:
                    del values[arg]
        raise ValueError("the traced network has no output")

    def _whole(self, values: dict, node: fx.Node, n: int):
        """``node``'s value for every copy as a whole (N, ...) tensor."""
        v = values[node]
        if not isinstance(v, _Dirty):
            return v
        base = self.base[node]
        full = base.expand(n, *base.shape[1:]).clone(memory_format=_layout(base))  # never a view of base
        h, w = v.size
        rows = (v.ys[:, None] + torch.arange(h, device=base.device))[:, :, None]
        cols = (v.xs[:, None] + torch.arange(w, device=base.device))[:, None, :]
        full.permute(0, 2, 3, 1)[torch.arange(n, device=base.device)[:, None, None], rows, cols] = (
            v.crop.permute(0, 2, 3, 1).to(full.dtype)
        )
        values[node] = full  # later readers get the whole copies too
        return full

    def _step(self, node: fx.Node, values: dict, n: int):
        inputs = [a for a in node.all_input_nodes if a in self.depends]
        dirty = [a for a in inputs if isinstance(values[a], _Dirty)]
        if len(dirty) == len(inputs):
            result = self._cropped(node, values)
            if result is not None:
                return result

        def whole(a):
            return self._whole(values, a, n) if a in self.depends else values[a]

        return self._call(node, fx.node.map_arg(node.args, whole), fx.node.map_arg(node.kwargs, whole))

    def _cropped(self, node: fx.Node, values: dict) -> _Dirty | None:
        """``node`` computed on boxes only, or None when it cannot be (or should not be)."""
        out_shape = self.base[node].shape if isinstance(self.base[node], torch.Tensor) else None
        if out_shape is None or len(out_shape) != 4:
            return None
        if node.op == "call_module":
            m = self.modules[node.target]
            if len(node.args) != 1 or node.kwargs:
                return None
            src = node.args[0]
            pointwise = _pointwise_module(m)
            if pointwise is not None:
                if self.base[src].shape != out_shape:
                    return None
                v = values[src]
                return _Dirty(pointwise(m, v.crop), v.ys, v.xs)
            geometry = _window_geometry(m, self.base[src].shape)
            if geometry is not None:
                return self._windowed(src, values[src], out_shape, geometry)
            return None
        if (
            node.op == "call_function"
            and _INPLACE.get(node.target, node.target) in _POINTWISE_FUNCTIONS
            or node.op == "call_method"
            and node.target.rstrip("_") in _POINTWISE_METHODS
        ):
            return self._pointwise(node, values, out_shape)
        return None

    def _pointwise(self, node: fx.Node, values: dict, out_shape) -> _Dirty | None:
        sources = [a for a in node.all_input_nodes if a in self.depends]
        consts = [values[a] for a in node.all_input_nodes if a not in self.depends]
        consts += [v for v in (*node.args, *node.kwargs.values()) if not isinstance(v, fx.Node)]
        if not all(self.base[a].shape == out_shape for a in sources) or not all(map(_spatial_const, consts)):
            return None
        boxes = [values[a] for a in sources]
        first = boxes[0]
        if all(b.ys is first.ys and b.xs is first.xs and b.size == first.size for b in boxes):
            ys, xs, (h, w) = first.ys, first.xs, first.size
        else:  # one box holding all: their bounding box, of one size for every copy
            y0 = torch.stack([b.ys for b in boxes]).amin(0)
            x0 = torch.stack([b.xs for b in boxes]).amin(0)
            h = int((torch.stack([b.ys + b.size[0] for b in boxes]).amax(0) - y0).max())
            w = int((torch.stack([b.xs + b.size[1] for b in boxes]).amax(0) - x0).max())
            ys, h = _fit(y0, h, out_shape[-2])
            xs, w = _fit(x0, w, out_shape[-1])
        crops = {a: self._region(a, values[a], ys, h, xs, w, 0.0) for a in sources}
        args = fx.node.map_arg(node.args, lambda a: crops[a] if a in crops else values[a])
        kwargs = fx.node.map_arg(node.kwargs, lambda a: crops[a] if a in crops else values[a])
        return _Dirty(self._call(node, args, kwargs), ys, xs)

    def _windowed(self, src: fx.Node, v: _Dirty, out_shape, geometry) -> _Dirty | None:
        k, s, d, before, pad_value, op = geometry
        starts, sizes, windows = [], [], []
        for dim, (a, h) in enumerate(((v.ys, v.size[0]), (v.xs, v.size[1]))):
            reach = (k[dim] - 1) * d[dim]
            o0 = torch.div(a + before[dim] - reach + s[dim] - 1, s[dim], rounding_mode="floor").clamp(min=0)
            o1 = torch.div(a + h - 1 + before[dim], s[dim], rounding_mode="floor")
            o1 = o1.clamp(max=out_shape[2 + dim] - 1)
            start, size = _fit(o0, max(1, int((o1 - o0 + 1).max())), out_shape[2 + dim])
            starts.append(start)
            sizes.append(size)
            windows.append((start * s[dim] - before[dim], (size - 1) * s[dim] + reach + 1))
        if sizes[0] * sizes[1] >= FULL_SHARE * out_shape[-2] * out_shape[-1]:
            return None  # most of the layer changes: cheaper on whole copies
        (r0, rh), (c0, cw) = windows
        crop = op(self._region(src, v, r0, rh, c0, cw, pad_value))
        return _Dirty(crop, starts[0], starts[1])

    def _region(
        self, node: fx.Node, v: _Dirty, r0: torch.Tensor, rh: int, c0: torch.Tensor, cw: int, pad_value: float
    ) -> torch.Tensor:
        """Each copy's values of ``node`` at rows r0..r0+rh, columns c0..c0+cw (N, C, rh, cw): its
        box where it lies, the unchanged image elsewhere, ``pad_value`` outside the activation."""
        h, w = v.size
        if rh == h and cw == w and torch.equal(r0, v.ys) and torch.equal(c0, v.xs):
            return v.crop
        base = self.base[node]
        H, W = base.shape[-2:]
        rows, cols, ys, xs = r0.tolist(), c0.tolist(), v.ys.tolist(), v.xs.tolist()
        top, left = max(0, -min(rows)), max(0, -min(cols))
        bottom, right = max(0, max(rows) + rh - H), max(0, max(cols) + cw - W)
        key = (node, top, bottom, left, right, pad_value)
        padded = self._padded.get(key)
        if padded is None:
            padded = (
                F.pad(base, (left, right, top, bottom), value=pad_value)
                if top + bottom + left + right
                else base
            )
            self._padded[key] = padded
        out = torch.cat(
            [padded[:, :, r + top : r + top + rh, c + left : c + left + cw] for r, c in zip(rows, cols)]
        )
        out = out.contiguous(memory_format=torch.channels_last)
        for n, (r, c, y, x) in enumerate(zip(rows, cols, ys, xs)):  # the copy's own box, where it overlaps
            y0, y1, x0, x1 = max(y, r), min(y + h, r + rh), max(x, c), min(x + w, c + cw)
            if y0 < y1 and x0 < x1:
                out[n, :, y0 - r : y1 - r, x0 - c : x1 - c] = v.crop[n, :, y0 - y : y1 - y, x0 - x : x1 - x]
        return out


def _layout(t: torch.Tensor) -> torch.memory_format:
    return (
        torch.channels_last
        if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
        else torch.contiguous_format
    )


def _fit(start: torch.Tensor, size: int, limit: int) -> tuple[torch.Tensor, int]:
    """Boxes of ``size`` moved to lie inside [0, limit), or the whole range when they cannot."""
    size = min(size, limit)
    return start.clamp(0, limit - size), size
