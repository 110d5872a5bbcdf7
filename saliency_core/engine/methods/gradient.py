"""Vanilla gradient (Simonyan et al. 2014) and gradient x input (Shrikumar et al. 2016)."""

from __future__ import annotations

import torch
from torch import nn

from ._autograd import input_gradient
from ._registry import register


@register(
    "gradient",
    "Gradient",
    "Pixels where a small change moves the class score most (Simonyan et al. 2014).",
    reference="Simonyan, Vedaldi, Zisserman 2014, Deep Inside Convolutional Networks",
)
def gradient(network: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d score / d input, (B, C, H, W)."""
    return input_gradient(network, x, target)


@register(
    "gradient_x_input",
    "Gradient x input",
    "Gradient times the pixel values: change in score if a pixel were turned black.",
    reduction="sum",
    signed=True,
    reference="Shrikumar et al. 2016, Not Just a Black Box",
)
def gradient_x_input(network: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """x * d score / d x, (B, C, H, W)."""
    return x.detach() * input_gradient(network, x, target)
