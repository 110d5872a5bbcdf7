"""Saliency methods, registered by name.

A method is a function ``attribute(network, x, target, **params) -> Tensor (B, C, H, W)``
(C may be 1, e.g. Grad-CAM, occlusion, RISE): ``network`` maps pixels in [0, 1] to logits, ``x``
is a batch (B, C, H, W) (C = 3, or 1 for a greyscale model), ``target`` is a LongTensor (B,) of
class indices. Methods never modify the network or ``x``.
Pages and the CLI list ``METHODS``; they never hard-code method names.
"""

# importing the modules fills the registry
from . import gradcam, gradient, guided, integrated, occlusion, rise, rollout, smoothgrad  # noqa: F401
from ._registry import METHODS, Cost, Method, Setting, page_settings, reduce_channels, register

__all__ = ["METHODS", "Cost", "Method", "Setting", "page_settings", "reduce_channels", "register"]
