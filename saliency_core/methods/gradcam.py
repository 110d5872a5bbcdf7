"""Grad-CAM (Selvaraju et al. 2017) on the last convolutional feature map."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

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

    def record(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-2:].numel() > 1:
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
        raise ValueError("Grad-CAM needs a convolutional layer with a spatial feature map; "
                         "this model has none that can be hooked.")
    return finished[-1]


def _module(network: nn.Module, name: str) -> nn.Module:
    try:
        return network.get_submodule(name)
    except AttributeError:
        raise ValueError(f"Grad-CAM layer {name!r} does not exist in this model.") from None


@register("gradcam", "Grad-CAM",
          "Coarse region the last convolutional layer used for this class (Selvaraju et al. 2017).",
          reduction="sum", needs=("gradient", "conv",), defaults={"layer": None},
          meaning="the last convolutional layer's features here support {score} most "
                  "(coarse, 32-pixel cells, smoothed)",
          reference="Selvaraju et al. 2017, Grad-CAM")
def gradcam(network: nn.Module, x: torch.Tensor, target: torch.Tensor,
            layer: str | None = None) -> torch.Tensor:
    """Grad-CAM map (B, 1, H, W): ReLU(sum_k w_k A_k), w_k = spatial mean of d score / d A_k
    (Eq. 1-2, Selvaraju et al. 2017), upsampled bilinearly to the input size.

    Args:
        layer: module name (``network.get_submodule``); None finds the last conv feature map.
    """
    name = layer or find_gradcam_layer(network, x)
    module = _module(network, name)
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, i, out: captured.append(out))
    try:
        with torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)
            scores = target_scores(network, x, as_targets(target, x.shape[0], x.device))
            if not captured:
                raise ValueError(f"Grad-CAM layer {name!r} was not used by the forward pass.")
            activation = captured[-1]
            (grad,) = torch.autograd.grad(scores.sum(), activation)
    finally:
        handle.remove()
    weights = grad.mean(dim=(2, 3), keepdim=True)                      # Eq. 1
    cam = F.relu((weights * activation.detach()).sum(dim=1, keepdim=True))  # Eq. 2
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
