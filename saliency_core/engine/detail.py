"""Detail levels: the saliency smoothed by a Gaussian of a stated width, for display and comparison.

The ladder of detail levels is 0, 1, 2, 4, 8 and 16 px (Gaussian standard deviation) on a 224 px
input, scaled with the input's size for other models (a 448 px model uses 0, 2, 4, ... px). Level
0 is the raw map. The kernel is a normalised separable Gaussian truncated at 3 standard deviations,
with reflected borders, so a constant map stays constant and the map's total is kept.

An averaged map's *reproducible detail* is the finest level at which its convergence readout says
a re-run with other random draws would agree (``diagnostics["convergence"]["reproducible_px"]``);
exact (deterministic) maps have none and are shown at full detail.

Example:
    >>> smooth(np.random.rand(224, 224).astype("float32"), 4.0).shape
    (224, 224)
"""

from __future__ import annotations

import math

import numpy as np
import torch

LADDER_PX = (0, 1, 2, 4, 8, 16)  # Gaussian standard deviation in px on a 224 px input
REFERENCE_SIZE = 224
TRUNCATE = 3.0  # kernel radius in standard deviations


def ladder(size: int) -> list[float]:
    """The detail levels (Gaussian sigma in px) for a map of ``size`` px (its shorter side)."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"map size must be a positive number of pixels, got {size!r}")
    scale = size / REFERENCE_SIZE
    return [round(level * scale, 3) for level in LADDER_PX]


def _kernel(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    radius = max(1, int(math.ceil(TRUNCATE * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def smooth_tensor(maps: torch.Tensor, sigma: float, stride: int = 1) -> torch.Tensor:
    """Gaussian blur of (B, H, W) or (H, W) maps by ``sigma`` px (0: returned unchanged).

    ``stride`` > 1 returns every ``stride``-th row and column of the blurred maps (the same
    values as ``smooth_tensor(maps, sigma)[..., ::stride, ::stride]``, computed only there)."""
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"detail level must be a finite number of pixels >= 0, got {sigma!r}")
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a whole number >= 1, got {stride!r}")
    if sigma == 0:
        return maps[..., ::stride, ::stride] if stride > 1 else maps
    squeeze = maps.dim() == 2
    x = (maps[None] if squeeze else maps)[:, None]  # (B, 1, H, W)
    work = x.double() if x.dtype == torch.float64 else x.float()
    k = _kernel(sigma, work.dtype, work.device)
    r = (k.numel() - 1) // 2
    for dim in (2, 3):
        size = work.shape[dim]
        pad = min(r, size - 1)
        kk = k[r - pad : r + pad + 1] if pad < r else k
        kk = kk / kk.sum()
        if dim == 2:
            work = torch.nn.functional.pad(work, (0, 0, pad, pad), mode="reflect") if pad else work
            work = torch.nn.functional.conv2d(work, kk.view(1, 1, -1, 1), stride=(stride, 1))
        else:
            work = torch.nn.functional.pad(work, (pad, pad, 0, 0), mode="reflect") if pad else work
            work = torch.nn.functional.conv2d(work, kk.view(1, 1, 1, -1), stride=(1, stride))
    out = work[:, 0].to(maps.dtype)
    return out[0] if squeeze else out


def smooth(saliency: np.ndarray, sigma: float) -> np.ndarray:
    """A (H, W) NumPy map blurred by ``sigma`` px, float32; ``sigma`` 0 returns a float32 copy."""
    array = np.asarray(saliency, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"expected a saliency map (H, W), got shape {array.shape}")
    return smooth_tensor(torch.from_numpy(array.copy()), float(sigma)).numpy()


def reproducible_px(diagnostics: dict | None) -> float | None:
    """The reproducible detail (sigma in px) recorded for a map, None where none is recorded
    (an exact map, or an averaged one not settled even at the coarsest level)."""
    readout = (diagnostics or {}).get("convergence")
    if isinstance(readout, list):  # per-image readouts of a batch: the first image's
        readout = readout[0] if readout else None
    if not isinstance(readout, dict):
        return None
    value = readout.get("reproducible_px")
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        return None
    return float(value)


def stated_detail(*diagnostics: dict | None, size: int) -> float:
    """The detail at which maps are compared: the coarsest of their reproducible details (an
    exact map: 0; an averaged map not settled at any level: the ladder's coarsest), in px of a
    ``size`` px map."""
    levels = ladder(size)
    out = 0.0
    for d in diagnostics:
        readout = (d or {}).get("convergence")
        if readout is None:
            continue
        px = reproducible_px(d)
        out = max(out, levels[-1] if px is None else px)
    return out
