"""SmoothGrad (Smilkov et al. 2017) as a wrapper around any gradient method, with the
squared (SmoothGrad^2) and VarGrad (Adebayo et al. 2018) variants.

Noise sigma = noise x (max - min) of each image (Sec. 3, Smilkov et al.). Sample i's noise
comes from its own generator seeded by (seed, i), so the map does not depend on how samples
are chunked or which other images share the batch.
"""
from __future__ import annotations

import hashlib
from functools import partial
from typing import Callable

import torch
from torch import nn

from .._fast import averaging
from ._autograd import as_targets, count, default_chunk_size
from ._registry import METHODS, register

VARIANTS = ("mean", "squared", "vargrad")
MAX_SAMPLES = 10_000


def sample_seed(seed: int, index: int) -> int:
    """A 63-bit seed for noise sample ``index`` of a run with ``seed``."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def sample_noise(like: torch.Tensor, seed: int, index: int) -> torch.Tensor:
    """Standard normal noise shaped like one image ``like[0]`` (C, H, W) for sample ``index``.

    Drawn in float32 by a CPU generator and then moved to ``like``'s device and dtype: a CUDA
    generator gives other numbers for the same seed, so a seed is one map on any device."""
    g = torch.Generator(device="cpu")
    g.manual_seed(sample_seed(seed, index))
    noise = torch.randn(like.shape[1:], generator=g, dtype=torch.float32)
    return noise.to(device=like.device, dtype=like.dtype)


def smoothgrad(network: nn.Module, x: torch.Tensor, target: torch.Tensor, samples: int = 50,
               noise: float = 0.15, seed: int = 0, variant: str = "mean", base: str = "gradient",
               chunk_size: int | None = None,
               progress: Callable[[int, int], None] | None = None,
               preview: Callable[[int, int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Average of ``base`` attributions over ``samples`` noisy copies of each image.

    Args:
        samples: n in Eq. 3; the paper sees little change past 50.
        noise: sigma as a fraction of each image's value range (paper: 10-20%).
        seed: same seed, same map.
        variant: ``"mean"`` (Eq. 3), ``"squared"`` (mean of squares) or ``"vargrad"`` (variance).
        base: registry name of the gradient method to smooth (``"gradient"``, ``"guided_backprop"``...).
        chunk_size: noisy images per pass (default by device); never changes the result.
        progress: called as ``progress(done, samples)`` after each chunk.
        preview: called as ``preview(done, samples, running)`` after each chunk with the
            result over the samples done so far (anytime SmoothGrad); costs one small reduction.
    Returns:
        Tensor (B, C, H, W) like ``base``.
    """
    samples = count("SmoothGrad samples", samples, 1, MAX_SAMPLES)
    if not 0 <= float(noise) <= 1:
        raise ValueError(f"SmoothGrad noise is a fraction of the image range, between 0 and 1; got {noise}.")
    if variant not in VARIANTS:
        raise ValueError(f"SmoothGrad variant must be one of {', '.join(VARIANTS)}; got {variant!r}.")
    if base not in METHODS or base.startswith(("smoothgrad", "vargrad")) or base == "integrated_gradients":
        raise ValueError(f"SmoothGrad cannot wrap {base!r}; use a gradient method such as 'gradient'.")
    attribute = METHODS[base].attribute
    x = x.detach()
    batch = x.shape[0]
    target = as_targets(target, batch, x.device)
    flat = x.reshape(batch, -1)
    sigma = (noise * (flat.max(1).values - flat.min(1).values)).view(batch, 1, 1, 1)
    per_chunk = max(1, (chunk_size or default_chunk_size(x)) // batch)
    total = square = None
    with averaging():  # on a GPU: TF32 convolutions, within the tolerance _fast.py states
        for start in range(0, samples, per_chunk):
            n = min(per_chunk, samples - start)
            eps = torch.stack([sample_noise(x, seed, start + i) for i in range(n)])  # (n, C, H, W)
            noisy = (x.unsqueeze(0) + eps.unsqueeze(1) * sigma.unsqueeze(0)).reshape(n * batch, *x.shape[1:])
            grads = attribute(network, noisy, target.repeat(n)).reshape(n, batch, *x.shape[1:])
            chunk_sum, chunk_sq = grads.sum(0, dtype=torch.float64), grads.double().square().sum(0)
            total = chunk_sum if total is None else total + chunk_sum
            square = chunk_sq if square is None else square + chunk_sq
            if progress is not None:
                progress(start + n, samples)
            if preview is not None and start + n < samples:
                preview(start + n, samples, _combine(total, square, start + n, variant).to(x.dtype))
    return _combine(total, square, samples, variant).to(x.dtype)


def _combine(total: torch.Tensor, square: torch.Tensor, n: int, variant: str) -> torch.Tensor:
    """Sums over n samples -> mean (Eq. 3), mean of squares, or variance (VarGrad)."""
    if variant == "mean":
        return total / n
    if variant == "squared":
        return square / n
    return (square / n - (total / n).square()).clamp(min=0)  # E[g^2] - E[g]^2


_PARAMS = {"samples": 50, "noise": 0.15, "seed": 0, "base": "gradient"}
register("smoothgrad", "SmoothGrad",
         "Gradient averaged over noisy copies of the image: less speckle, same meaning.",
         defaults=dict(_PARAMS, variant="mean"), averaging=True,
         reference="Smilkov et al. 2017, SmoothGrad: removing noise by adding noise")(smoothgrad)
# partial: a direct call of METHODS[name].attribute computes that variant, not the mean
register("smoothgrad_squared", "SmoothGrad squared",
         "Mean of squared noisy gradients: emphasises consistently strong pixels.",
         defaults=dict(_PARAMS, variant="squared"), averaging=True,
         reference="Hooker et al. 2019, A Benchmark for Interpretability Methods")(
    partial(smoothgrad, variant="squared"))
register("vargrad", "VarGrad",
         "Variance of noisy gradients: where the model's sensitivity changes most.",
         defaults=dict(_PARAMS, variant="vargrad"), averaging=True,
         meaning="the gradient of {score} varies most under small noise here",
         reference="Adebayo et al. 2018, Local explanation methods ... via noise")(
    partial(smoothgrad, variant="vargrad"))
