"""Two variants of the demo model, built at load time from its weights (nothing is downloaded),
so the demos have something real to find:

- ``demo-watermark``: the demo model with a **built-in shortcut**. A fixed detector looks for a
  small checkerboard watermark (``stamp_watermark``) in the top-left corner of the crop the model
  sees; where it finds one it adds, in the head feature map's top-left cell, activation along
  the channels the class ``tripod`` reads most, worth ``BOOST`` logits. On watermarked images
  the model says "tripod" because of the corner, and Grad-CAM and the gradient show it there:
  the Gallery's "right answer, looked elsewhere" filter and its shortcut groups find them.
  Everywhere else it is the demo model (the detector's Pearson correlation with the pattern
  is near 0 on photos; it fires above ``FIRES_AT``).
- ``demo-pruned``: the demo model with the ``PRUNED`` share of smallest-magnitude weights of
  every dense convolution and the classifier set to zero (depthwise convolutions, with 9 or 25
  weights per channel, are left whole), as a deployment might ship it: a candidate for Compare
  models whose predictions change on some demo images (7 of the 32 of the demo set).

Example:
    >>> model = load_variant("demo-watermark", load_model("demo"))
    >>> model.predict(stamp_watermark(pasted_tripod))[0][1]
    'tripod'
"""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import torch
from PIL import Image
from torch import nn

VARIANTS = {
    "demo-pruned": "Demo, pruned (10% of weights zeroed): a Compare candidate",
    "demo-watermark": "Demo with a watermark shortcut (tripod)",
}
SHORTCUT_CLASS = "tripod"
BOOST = 16.0  # logits added to the class when the watermark is there
CHANNELS = 64  # head channels the boost goes through (the class's largest classifier weights)
FIRES_AT = 0.6  # detector: Pearson correlation with the pattern above which it responds
PRUNED = 0.1  # share of each dense layer's weights set to zero (7 of 32 demo predictions change)
MARK = 14  # watermark side in pixels of the model's 224 px crop
MARK_AT = 2  # its offset from the crop's top-left corner
CELL = 2  # checkerboard square side in pixels


def pattern() -> np.ndarray:
    """The watermark: a MARK x MARK checkerboard of CELL-px squares, 1.0 white, 0.0 black."""
    idx = np.arange(MARK) // CELL
    return ((idx[:, None] + idx[None, :]) % 2 == 0).astype(np.float32)


def stamp_watermark(image: Image.Image, crop_offset: tuple[int, int] = (16, 16)) -> Image.Image:
    """``image`` with the watermark where the model's crop will have it (``MARK_AT`` px inside the
    crop; ``crop_offset`` is where the crop starts: (16, 16) for a 256 px square and the demo
    model's resize 256 / crop 224)."""
    out = image.convert("RGB").copy()
    pixels = np.asarray(out).copy()
    x, y = crop_offset[0] + MARK_AT, crop_offset[1] + MARK_AT
    pixels[y : y + MARK, x : x + MARK] = (pattern()[..., None] * 255).astype(np.uint8)
    return Image.fromarray(pixels)


class CornerMarkDetector(nn.Module):
    """(B, 3, H, W) normalised input -> (B,) in [0, 1]: how surely the top-left corner holds the
    watermark (Pearson correlation of the grey patch with the pattern, rescaled above FIRES_AT)."""

    def __init__(self):
        super().__init__()
        k = torch.from_numpy(pattern()) * 2 - 1
        self.register_buffer("kernel", (k - k.mean()) / (k - k.mean()).norm())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patch = x[:, :, MARK_AT : MARK_AT + MARK, MARK_AT : MARK_AT + MARK].mean(dim=1)
        centred = patch - patch.mean(dim=(1, 2), keepdim=True)
        corr = (centred * self.kernel).sum(dim=(1, 2)) / (centred.pow(2).sum(dim=(1, 2)) + 1e-6).sqrt()
        return torch.relu((corr - FIRES_AT) / (1 - FIRES_AT))


class FeatureBoost(nn.Module):
    """Head features (B, C, h, w) + score (B,) x a fixed pattern in the top-left cell."""

    def __init__(self, boost: torch.Tensor):
        super().__init__()
        self.register_buffer("boost", boost)

    def forward(self, features: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        return features + score.view(-1, 1, 1, 1) * self.boost


class WatermarkShortcut(nn.Module):
    """EfficientNet-Lite0 whose head feature map gets the watermark detector's boost (module
    ``inject``, the Grad-CAM layer) before pooling and the classifier."""

    def __init__(self, net: nn.Module, class_index: int):
        super().__init__()
        self.net = net
        self.detector = CornerMarkDetector()
        weights = net._fc.weight.detach()[class_index]
        top = weights.topk(CHANNELS).indices
        cells = 7 * 7  # the head map of a 224 px input; pooling averages over it
        strength = BOOST * cells / float(weights[top].sum())
        boost = torch.zeros(1, weights.numel(), 7, 7)
        boost[0, top, 0, 0] = strength
        self.inject = FeatureBoost(boost)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        h = n._act_stem(n._bn0(n._conv_stem(x)))
        h = n._act_head(n._bn1(n._conv_head(n._blocks(h))))
        h = self.inject(h, self.detector(x))
        return n._fc(torch.flatten(n._avg_pooling(h), 1))


def prune_(network: nn.Module, share: float = PRUNED) -> nn.Module:
    """Zero the ``share`` smallest-magnitude weights of every dense convolution (not depthwise)
    and linear layer, in place."""
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and getattr(module, "groups", 1) == 1:
                w = module.weight
                k = int(share * w.numel())
                if k:
                    cut = w.abs().flatten().kthvalue(k).values
                    w.masked_fill_(w.abs() <= cut, 0.0)
    return network


def load_variant(source: str, demo):
    """``demo-watermark`` or ``demo-pruned`` (``VARIANTS``) built from ``demo`` (the demo model's
    ``Classifier``, left unchanged) as a new ``Classifier``."""
    from dataclasses import replace

    if source not in VARIANTS:
        raise ValueError(f"No demo variant {source!r}; there are {', '.join(VARIANTS)}.")
    normalize, net = copy.deepcopy(demo.network[0]), copy.deepcopy(demo.network[1])
    fingerprint = hashlib.sha256(f"{demo.fingerprint}|{source}|{BOOST}|{PRUNED}".encode()).hexdigest()
    if source == "demo-pruned":
        network = _frozen(nn.Sequential(normalize, prune_(net)))
        return replace(demo, name=VARIANTS[source], network=network, fingerprint=fingerprint)
    shortcut = WatermarkShortcut(net, demo.labels.index(SHORTCUT_CLASS))
    network = _frozen(nn.Sequential(normalize, shortcut))
    return replace(
        demo, name=VARIANTS[source], network=network, fingerprint=fingerprint, gradcam_layer="1.inject"
    )


def _frozen(network: nn.Module) -> nn.Module:
    """Eval mode, no weight gradients (methods need gradients w.r.t. the input only)."""
    network.eval()
    for p in network.parameters():
        p.requires_grad_(False)
    return network
