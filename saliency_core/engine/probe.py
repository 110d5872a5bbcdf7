"""Checks of a loaded network with a test image: one score per class, batch behaviour, finite
outputs, and the layer Grad-CAM uses (with the token-to-grid reshape of vision transformers)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .model_files import listed_names
from .untrusted import cut, quote, short

# ---- checks with a test image ------------------------------------------------------------------


class OneAtATime(nn.Module):
    """Runs a model that only takes one image per call (e.g. exported with a fixed batch of 1)
    over a batch, image by image. Grad-CAM on such a model is exact for single images."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.net(x[i : i + 1]) for i in range(x.shape[0])])


def _describe_output(out) -> str:
    if isinstance(out, torch.Tensor):
        return f"a tensor of shape {tuple(out.shape)}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)} items"
    return f"a {type(out).__name__}"


def checked_logits(out, batch: int, where: str) -> torch.Tensor:
    if not (
        isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[0] == batch and out.is_floating_point()
    ):
        raise ValueError(
            f"{where}: the model must return one score per class, a float tensor of shape "
            f"(batch, classes); for {batch} image(s) it returned {_describe_output(out)}."
        )
    return out


def probe_batch(size: int, n: int, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, channels, size, size, generator=g)


def _hook_outputs(net: nn.Module, found: list[tuple[str, tuple[int, ...]]]) -> list:
    """Forward hooks on every module of ``net`` that note (name, output shape) of each tensor
    output, in the order the modules finish. None for a model whose modules cannot be hooked
    (TorchScript)."""
    hooks = []

    def record(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                found.append((name, tuple(output.shape)))

        return hook

    try:
        for name, module in net.named_modules():
            if name:
                hooks.append(module.register_forward_hook(record(name)))
    except (RuntimeError, TypeError, AttributeError):
        for h in hooks:
            h.remove()
        return []
    return hooks


def probe_network(
    network: nn.Module, net: nn.Module, size: int, where: str, channels: int = 3, output: str = "softmax"
) -> tuple[int, bool, list[tuple[str, tuple[int, ...]]]]:
    """Run ``network`` (normalisation + ``net``) on test images: one score per class, an input
    gradient, batches of several images, and the output shape of each layer of ``net``.

    Returns:
        (number of classes, whether batches of several images work, (layer, output shape) of
        ``net``'s modules in the order they finish; a module used several times counts where it
        last finished).
    """
    x = probe_batch(size, 3, channels)
    one_x = x[:1].clone().requires_grad_(True)
    outputs: list[tuple[str, tuple[int, ...]]] = []
    hooks = _hook_outputs(net, outputs)
    try:
        with torch.enable_grad():
            one = network(one_x)
    except Exception as err:
        grey = ", channels 1: greyscale" if channels == 1 else ""
        raise ValueError(
            f"{where}: the model fails on a test image of {channels} x {size} x {size} pixels "
            f"(input_size {size}{grey}): {short(err)}. Check 'input_size' and 'channels' in the "
            "card."
        ) from None
    finally:
        for h in hooks:
            h.remove()
    classes = checked_logits(one, 1, where).shape[1]
    if classes < 2 and output != "sigmoid":
        raise ValueError(
            f"{where}: the model gives {classes} score per image; saliency needs one score "
            "per class, at least 2 (for a one-logit binary model, set 'output: sigmoid' in the "
            "card, or output [-z, z])."
        )
    if not torch.isfinite(one).all():
        raise ValueError(
            f"{where}: the model's scores on a test image are not numbers (NaN) or are infinite; "
            "a model must give finite scores to be explained."
        )
    try:
        (grad,) = torch.autograd.grad(one[0].max(), one_x)
    except Exception as err:
        raise ValueError(
            f"{where}: the model's scores cannot be differentiated with respect to the "
            f"input ({short(err)}); every saliency method needs that."
        ) from None
    if not torch.isfinite(grad).all():
        raise ValueError(f"{where}: the model's input gradient is not finite on a test image.")
    try:
        with torch.no_grad():
            three = checked_logits(network(x), 3, where)
    except Exception:  # a fixed batch size: run image by image
        three = None
    if three is not None and not torch.isfinite(three).all():
        raise ValueError(
            f"{where}: the model's scores on a batch of test images are not numbers (NaN) or are "
            "infinite; a model must give finite scores to be explained."
        )
    batched = three is not None and bool(torch.allclose(three[:1], one.detach(), rtol=1e-3, atol=1e-4))
    last = {name: shape for name, shape in outputs}
    order = list(reversed(dict.fromkeys(name for name, _ in reversed(outputs))))
    return classes, batched, [(name, last[name]) for name in order]


def _is_feature_map(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[-2] * shape[-1] > 1


def _is_token_grid(shape: tuple[int, ...]) -> bool:
    """(B, N, C) whose N (or N - 1, with a class token) tokens form a square grid of 2 x 2 or more."""
    return len(shape) == 3 and any(n >= 4 and math.isqrt(n) ** 2 == n for n in (shape[1], shape[1] - 1))


def _known_token_layer(net: nn.Module) -> tuple[str, str] | None:
    """(layer, reshape) for torchvision's vision transformers: for ViT the last encoder block's
    ``ln_1`` (its class-token output depends on the patch tokens only through that block's
    attention: the block's own output tokens never reach the classifier; pytorch-grad-cam's
    documented choice, ``blocks[-1].norm1``); for Swin the output of the last stage, ``features``
    (B, h, w, C), before the final norm and pooling, as a CNN's last stage."""
    from torchvision.models import SwinTransformer, VisionTransformer

    if isinstance(net, VisionTransformer):
        last = list(dict(net.encoder.layers.named_children()))[-1]
        return f"encoder.layers.{last}.ln_1", "class_token"
    if isinstance(net, SwinTransformer):
        return "features", "channels_last"
    return None


def _default_reshape(net: nn.Module, shape: tuple[int, ...]) -> str | None:
    """The reshape a stated Grad-CAM layer needs, from its output's shape: tokens (B, N, C) with
    or without a class token; torchvision Swin's (B, h, w, C) maps. None: a feature map as it is."""
    from torchvision.models import SwinTransformer

    if len(shape) == 3:
        n = shape[1]
        if n >= 2 and math.isqrt(n - 1) ** 2 == n - 1:
            return "class_token"
        if math.isqrt(n) ** 2 == n:
            return "tokens"
    if len(shape) == 4 and isinstance(net, SwinTransformer) and shape[1] == shape[2] != shape[3]:
        return "channels_last"
    return None


def _found_gradcam_layer(
    net: nn.Module, outputs: list[tuple[str, tuple[int, ...]]], spatial: list[str]
) -> tuple[str | None, str | None, str | None]:
    """No layer named: a known transformer's token layer, else the last feature map, unless the
    image becomes tokens after it (a vision transformer's patch embedding: then why not)."""
    shapes = dict(outputs)
    known = _known_token_layer(net)
    if known is not None and known[0] in shapes:
        return known[0], known[1], None
    if not spatial:
        return None, None, None
    last = spatial[-1]
    later = [
        name for name, shape in outputs[outputs.index((last, shapes[last])) + 1 :] if _is_token_grid(shape)
    ]
    if later:
        return (
            None,
            None,
            (
                f"needs a feature map, and this model turns the image into tokens after its last "
                f"convolution ({cut(last)}, likely a vision transformer's patch embedding), which is "
                "not the layer Grad-CAM means; the card can name a token layer ('gradcam_layer', "
                "with 'gradcam_reshape')"
            ),
        )
    return last, None, None


def choose_gradcam_layer(
    net: nn.Module,
    requested: str | None,
    reshape: str | None,
    kind: str,
    outputs: list[tuple[str, tuple[int, ...]]],
    where: str,
) -> tuple[str | None, str | None, str | None]:
    """The layer Grad-CAM reads (relative to ``net``), the reshape of its output to a grid, and,
    when there is no layer, why (None where the format says it, e.g. TorchScript).

    ``outputs``: (layer, output shape) of the modules a test image went through, in order.
    """
    from .methods.gradcam import token_grid

    if kind == "torchscript":
        if requested or reshape:
            field_name = "gradcam_layer" if requested else "gradcam_reshape"
            raise ValueError(
                f"{where}: '{field_name}' cannot be used with a TorchScript model: its "
                "layers run compiled and cannot be hooked. Remove the field (Grad-CAM is then "
                "unavailable) or provide a state dict or .pt2 instead."
            )
        return None, None, None
    shapes = dict(outputs)
    spatial = [name for name, shape in outputs if _is_feature_map(shape)]
    if not requested:
        if reshape:
            raise ValueError(
                f"{where}: 'gradcam_reshape' {reshape} needs the layer it applies to: name it "
                "with 'gradcam_layer'."
            )
        return _found_gradcam_layer(net, outputs, spatial)
    try:
        net.get_submodule(requested)
    except AttributeError:
        raise ValueError(
            f"{where}: 'gradcam_layer' {quote(requested)} is not a layer of this model; layers "
            f"with a spatial feature map: {listed_names(spatial[::-1], 8) or 'none'}."
        ) from None
    if requested not in shapes:
        raise ValueError(
            f"{where}: 'gradcam_layer' {quote(requested)} gives no tensor on a test image (it is "
            f"not used, or returns several values); layers with a spatial feature map: "
            f"{listed_names(spatial[::-1], 8) or 'none'}."
        )
    shape = shapes[requested]
    if reshape is None:
        known = _known_token_layer(net)
        reshape = known[1] if known is not None and known[0] == requested else _default_reshape(net, shape)
    layers = f"{listed_names(spatial[::-1], 8) or 'none'}"
    if reshape is None and not _is_feature_map(shape):
        tokens = (
            " It gives tokens: state 'gradcam_reshape' (tokens or class_token) if they form a square grid."
            if len(shape) == 3
            else ""
        )
        raise ValueError(
            f"{where}: 'gradcam_layer' {quote(requested)} does not give a spatial feature map "
            f"(batch, channels, height, width) on a test image (it gives shape {shape}); layers "
            f"that do: {layers}.{tokens}"
        )
    try:
        token_grid(shape, reshape)
    except ValueError as err:
        raise ValueError(
            f"{where}: 'gradcam_layer' {quote(requested)} with 'gradcam_reshape' {reshape}: {err} "
            f"Layers with a spatial feature map: {layers}."
        ) from None
    return requested, (None if reshape == "none" else reshape), None
