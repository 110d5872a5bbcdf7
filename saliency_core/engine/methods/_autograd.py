"""Shared pieces: target scores and input gradients without touching the caller's state."""

from __future__ import annotations

import torch
from torch import nn

from .. import plan_runtime as plans
from .._fast import check_target, gpu_settings, gradient_network, graphed_gradient


def as_targets(target: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
    """Class indices as a LongTensor (batch,)."""
    t = torch.as_tensor(target, dtype=torch.long, device=device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise ValueError(f"Expected one target per image ({batch}), got {t.numel()}.")
    return t


def target_scores(network: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pre-softmax score of each image's target class, shape (B,)."""
    logits = network(x)
    if logits.dim() != 2:
        raise ValueError(
            f"Expected the model to return one score per class, shape (batch, classes); "
            f"got shape {tuple(logits.shape)}."
        )
    check_target(target, logits.shape[1])
    return logits.gather(1, target.view(-1, 1)).squeeze(1)


def input_gradient(network: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d score[target] / d x for each image of the batch (B, C, H, W).

    Works on a detached copy of ``x``; images of a batch are independent, so the gradient of
    the summed scores is each image's own gradient. Runs on the network's fast form
    (saliency_core/engine/_fast.py): BatchNorm folded, and on a GPU a replayed CUDA graph; inside
    an averaging method, in the execution plan explain() chose (saliency_core/engine/plans.py).
    """
    target = as_targets(target, x.shape[0], x.device)
    network = gradient_network(network, probe=x[:1].detach())
    with gpu_settings(x.device), plans.applied(network, x) as (network, x):
        grad = graphed_gradient(network, x, target)
        if grad is None:
            grad = _gradient(network, x.detach().clone().requires_grad_(True), target)
    return grad


def _gradient(network: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(target_scores(network, x, target).sum(), x)
    return grad


def count(name: str, value, low: int, high: int) -> int:
    """``value`` as an int in [low, high], or ValueError naming the parameter."""
    try:
        n = int(value)
        ok = n == value and low <= n <= high
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a whole number between {low} and {high}; got {value!r}.")
    return n


def default_chunk_size(x: torch.Tensor) -> int:
    """Images per forward/backward pass. CPU: 5 (bench/run.py, demo model: SmoothGrad-200
    peaks at 1.14 GB resident; bigger chunks are no faster). GPU: 64, one pass for 50 samples."""
    return 64 if x.device.type == "cuda" else 5
