"""Guided backpropagation (Springenberg et al. 2015) and guided Grad-CAM (Selvaraju et al. 2017).

At every ReLU-type activation the backward pass keeps only positive gradients where the
forward input was in the activation's linear range. The activation's own backward applies the
forward gate (for ReLU6: 0 < input < 6); we add the "positive gradients only" rule by routing
each activation's output through a function whose backward is ``clamp(min=0)``.

Activations are intercepted with a ``TorchFunctionMode`` that lives for one call, so
``nn.ReLU``, ``nn.ReLU6``, in-place ReLUs and functional ``F.relu`` are all covered and no
hook or module swap is ever left on the network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .._fast import as_written
from ._autograd import input_gradient
from ._registry import Cost, register
from .gradcam import gradcam

_RELUS = {F.relu, F.relu_, F.relu6, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
_CAUTION = (
    "Fails the model-randomisation sanity check (Adebayo et al. 2018): it shows image "
    "edges more than the model's reasoning."
)


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward passes only positive gradients (Eq. 5, Springenberg et al.)."""

    @staticmethod
    def forward(ctx, y: torch.Tensor) -> torch.Tensor:
        return y.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)


class _PositiveGradientInplace(torch.autograd.Function):
    """As ``_PositiveGradient``, applied in place to the input of an in-place ReLU, so code
    that ignores the return value (``h.relu_()``) is guided too. The clamp then acts before
    the activation's gate; both are element-wise, so the product is the same."""

    @staticmethod
    def forward(ctx, y: torch.Tensor) -> torch.Tensor:
        ctx.mark_dirty(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)


def _is_relu_like(func, args, kwargs) -> bool:
    if func in _RELUS:
        return True
    if func in (F.hardtanh, F.hardtanh_, torch.nn.functional.hardtanh):
        low = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
        return low == 0
    return False


def _is_inplace(func, args, kwargs) -> bool:
    if getattr(func, "__name__", "").endswith("_"):  # relu_, hardtanh_, Tensor.relu_
        return True
    position = 3 if func is F.hardtanh else 1  # hardtanh(x, min, max, inplace), relu(x, inplace)
    return bool(kwargs.get("inplace", args[position] if len(args) > position else False))


class guided_relus(TorchFunctionMode):
    """Context manager: while active, every ReLU-type call passes back positive gradients only.

    ``count`` says how many activations were guided, so a model without any can be reported.
    """

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        x = args[0] if args else kwargs.get("input")
        if not (isinstance(x, torch.Tensor) and x.requires_grad and _is_relu_like(func, args, kwargs)):
            return func(*args, **kwargs)
        self.count += 1
        if _is_inplace(func, args, kwargs):
            # the caller may keep using its own reference, so guide that tensor itself
            _PositiveGradientInplace.apply(x)
            return func(*args, **kwargs)
        return _PositiveGradient.apply(func(*args, **kwargs))


@register(
    "guided_backprop",
    "Guided backprop",
    "Gradient passed back through positive paths only: sharp, edge-like detail.",
    caution=_CAUTION,
    needs=(
        "gradient",
        "relu",
    ),
    reference="Springenberg et al. 2015, Striving for Simplicity",
)
def guided_backprop(network: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Guided backpropagation attribution (B, C, H, W).

    Raises:
        ValueError: the network has no ReLU-type activation that can be intercepted (for
            example a TorchScript model, or one using other activations).
    """
    mode = guided_relus()
    with as_written(), mode:  # the mode must see the network's own activations
        grad = input_gradient(network, x, target)
    if mode.count == 0:
        raise ValueError(
            "Guided backprop needs ReLU or ReLU6 activations that can be intercepted; "
            "this model has none (it may use other activations or be compiled)."
        )
    return grad


@register(
    "guided_gradcam",
    "Guided Grad-CAM",
    "Guided backprop detail inside the Grad-CAM region (Selvaraju et al. 2017).",
    caution=_CAUTION,
    needs=("gradient", "relu", "conv"),
    defaults={"layer": None, "reshape": None},
    passes=lambda params, size: Cost(backward=2),  # a Grad-CAM and a guided backprop gradient
    reference="Selvaraju et al. 2017, Grad-CAM",
)
def guided_gradcam(
    network: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    layer: str | None = None,
    reshape: str | None = None,
) -> torch.Tensor:
    """Element-wise product of Grad-CAM (upsampled) and guided backprop, (B, C, H, W)."""
    return gradcam(network, x, target, layer=layer, reshape=reshape) * guided_backprop(network, x, target)
