"""EfficientNet-Lite0 (Tan & Le 2019, "lite" variant: no squeeze-excitation, ReLU6,
fixed stem and head), with parameter names matching the ``efficientnet-lite0-*.pth``
state dict (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``).

Convolutions use TensorFlow "same" padding, computed from the input size at run time so
inputs other than 224 px still line up with the weights' training.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_BN_EPS = 1e-3  # TensorFlow EfficientNet's BatchNorm epsilon
# (repeats, kernel, stride, expand ratio, in, out) per stage, EfficientNet-B0 / Lite0
_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding (extra pixel at the bottom/right)."""

    def pads(self, shape) -> list[int]:
        """(left, right, top, bottom) zero padding, F.pad order, for an input of ``shape`` (..., H, W)."""
        pads = []
        for size, k, s in zip(reversed(shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = self.pads(x.shape)
        if pads[0] == pads[1] and pads[2] == pads[3]:
            # symmetric: let the convolution pad (no padded copy of the activation)
            return F.conv2d(
                x, self.weight, self.bias, self.stride, (pads[2], pads[0]), self.dilation, self.groups
            )
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project, identity skip."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(c_in, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=_BN_EPS)
            self._act0 = nn.ReLU6()
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=_BN_EPS)
        self._act1 = nn.ReLU6()
        self._project_conv = SameConv2d(hidden, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=_BN_EPS)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.has_expand:
            h = self._act0(self._bn0(self._expand_conv(h)))
        h = self._act1(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier; input normalised as (x*255 - 127) / 128, output logits."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        self._act_stem = nn.ReLU6()
        blocks = []
        for repeats, kernel, stride, expand, c_in, c_out in _STAGES:
            for i in range(repeats):
                blocks.append(
                    MBConv(c_in if i == 0 else c_out, c_out, kernel, stride if i == 0 else 1, expand)
                )
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
        self._act_head = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._act_stem(self._bn0(self._conv_stem(x)))
        x = self._blocks(x)
        x = self._act_head(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(self._avg_pooling(x), 1))
