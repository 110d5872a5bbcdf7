"""Grad-CAM (Selvaraju et al. 2017) on the last convolutional feature map, or on a token layer
of a vision transformer reshaped to a grid.

A transformer layer gives tokens, not a feature map. ``to_grid`` turns its output into
(B, K, h, w) the way pytorch-grad-cam's documented ``reshape_transform`` does: ViT's
(B, 1 + h*w, K) drops the class token and lays the rest out row by row; torchvision's Swin
gives (B, h, w, K), which is permuted. The same reshape is applied to the gradient, so
Eq. 1-2 run unchanged on the grid.
"""

from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F
from torch import nn

from ._autograd import as_targets, target_scores
from ._registry import register


def find_gradcam_layer(network: nn.Module, x: torch.Tensor) -> str:
    """Name of the module whose output is the last spatial feature map (B, K, h, w), h*w > 1,
    in forward order: the last convolutional stage. One forward pass with temporary hooks.

    Raises:
        ValueError: no module produces a spatial feature map.
    """
    finished: list[str] = []
    hooks = []
    me = threading.get_ident()  # the network is shared: forward passes of other threads are not ours

    def record(name):
        def hook(module, inputs, output):
            if (
                threading.get_ident() == me
                and isinstance(output, torch.Tensor)
                and output.dim() == 4
                and output.shape[-2:].numel() > 1
            ):
                finished.append(name)

        return hook

    try:
        for name, module in network.named_modules():
            if name:
                hooks.append(module.register_forward_hook(record(name)))
        with torch.no_grad():
            network(x[:1])
    finally:
        for h in hooks:
            h.remove()
    if not finished:
        raise ValueError(
            "Grad-CAM needs a convolutional layer with a spatial feature map; "
            "this model has none that can be hooked."
        )
    return finished[-1]


RESHAPES = ("none", "channels_last", "tokens", "class_token")


def token_grid(shape: tuple[int, ...] | torch.Size, reshape: str | None) -> tuple[int, int, int]:
    """(channels, height, width) of the grid ``to_grid`` makes from a layer output of ``shape``.

    Raises:
        ValueError: the output does not have the rank the reshape expects, or its tokens do
            not form a square grid (both shapes stated).
    """
    shape = tuple(int(n) for n in shape)
    reshape = reshape or "none"
    if reshape not in RESHAPES:
        raise ValueError(f"Unknown Grad-CAM reshape {reshape!r}; use one of {', '.join(RESHAPES)}.")
    if reshape in ("none", "channels_last"):
        if len(shape) != 4:
            what = (
                "(batch, channels, height, width)"
                if reshape == "none"
                else "(batch, height, width, channels)"
            )
            hint = (
                " A token layer (batch, tokens, channels) needs reshape 'tokens' or 'class_token'."
                if len(shape) == 3
                else ""
            )
            raise ValueError(
                f"Grad-CAM reshape '{reshape}' expects the layer to give {what}; it gives shape "
                f"{shape}.{hint}"
            )
        return (shape[1], shape[2], shape[3]) if reshape == "none" else (shape[3], shape[1], shape[2])
    if len(shape) != 3:
        raise ValueError(
            f"Grad-CAM reshape '{reshape}' expects the layer to give tokens (batch, tokens, channels); "
            f"it gives shape {shape}."
        )
    skip = 1 if reshape == "class_token" else 0
    grid = shape[1] - skip
    side = math.isqrt(max(grid, 0))
    if grid < 1 or side * side != grid:
        dropped = f" after dropping the class token, {grid} remain, which" if skip else ", which"
        close = [
            r
            for r, s in (("tokens", 0), ("class_token", 1))
            if shape[1] - s >= 1 and math.isqrt(shape[1] - s) ** 2 == shape[1] - s
        ]
        hint = f" Reshape '{close[0]}' would give a square grid." if close else ""
        raise ValueError(
            f"Grad-CAM reshape '{reshape}': the layer gives {shape[1]} tokens (shape {shape}){dropped} "
            f"do not form a square grid (side x side).{hint}"
        )
    return shape[2], side, side


def to_grid(tokens: torch.Tensor, reshape: str | None) -> torch.Tensor:
    """A layer output as a feature map (B, K, h, w); see ``token_grid`` for the shapes.

    ``none``: as it is; ``channels_last``: (B, h, w, K) permuted; ``tokens``: (B, h*w, K) laid out
    row by row; ``class_token``: the first token dropped, then as ``tokens``
    (pytorch-grad-cam's ``vit_reshape_transform`` / ``swinT_reshape_transform``).
    """
    channels, h, w = token_grid(tokens.shape, reshape)
    if reshape in (None, "none"):
        return tokens
    if reshape == "channels_last":
        return tokens.permute(0, 3, 1, 2)
    skip = 1 if reshape == "class_token" else 0
    return tokens[:, skip:, :].reshape(tokens.shape[0], h, w, channels).permute(0, 3, 1, 2)


def _module(network: nn.Module, name: str) -> nn.Module:
    try:
        return network.get_submodule(name)
    except AttributeError:
        raise ValueError(f"Grad-CAM layer {name!r} does not exist in this model.") from None


@register(
    "gradcam",
    "Grad-CAM",
    "Coarse region the last convolutional layer (or a transformer's last tokens) used for this class "
    "(Selvaraju et al. 2017).",
    reduction="sum",
    needs=("gradient", "conv"),
    defaults={"layer": None, "reshape": None},
    meaning="the last feature layer's cells here support {score} most "
    "(coarse cells of 16-32 pixels, smoothed)",
    reference="Selvaraju et al. 2017, Grad-CAM",
)
def gradcam(
    network: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    layer: str | None = None,
    reshape: str | None = None,
) -> torch.Tensor:
    """Grad-CAM map (B, 1, H, W): ReLU(sum_k w_k A_k), w_k = spatial mean of d score / d A_k
    (Eq. 1-2, Selvaraju et al. 2017), upsampled bilinearly to the input size.

    Args:
        layer: module name (``network.get_submodule``); None finds the last conv feature map.
        reshape: how the layer's output becomes a grid (``to_grid``): None or ``"none"`` for a
            feature map (B, K, h, w), ``"channels_last"``, ``"tokens"`` or ``"class_token"``.
    """
    name = layer or find_gradcam_layer(network, x)
    module = _module(network, name)
    captured: list[torch.Tensor] = []
    me = threading.get_ident()  # the network is shared between sessions' threads: only our own pass
    handle = module.register_forward_hook(
        lambda m, i, out: captured.append(out) if threading.get_ident() == me else None
    )
    try:
        with torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)
            scores = target_scores(network, x, as_targets(target, x.shape[0], x.device))
            if not captured:
                raise ValueError(f"Grad-CAM layer {name!r} was not used by the forward pass.")
            activation = captured[-1]
            if not isinstance(activation, torch.Tensor):
                raise ValueError(f"Grad-CAM layer {name!r} does not return a tensor.")
            token_grid(activation.shape, reshape)  # a wrong shape fails before the backward pass
            (grad,) = torch.autograd.grad(scores.sum(), activation)
    finally:
        handle.remove()
    activation, grad = to_grid(activation.detach(), reshape), to_grid(grad, reshape)
    weights = grad.mean(dim=(2, 3), keepdim=True)  # Eq. 1
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True))  # Eq. 2
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
