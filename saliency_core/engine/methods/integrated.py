"""Integrated Gradients (Sundararajan et al. 2017) with black, blurred or noise baselines."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from ..convergence import Readout
from ._autograd import as_targets, count, default_chunk_size, input_gradient, target_scores
from ._registry import SEED, Cost, Setting, register, whole

BASELINES = ("black", "blurred", "uniform")
RULES = ("gausslegendre", "riemann_trapezoid")
BLUR_SIGMA = 10.0  # pixels, for the blurred baseline


def make_baseline(x: torch.Tensor, baseline: str, seed: int = 0) -> torch.Tensor:
    """Reference input x' (B, C, H, W): ``black`` zeros, ``blurred`` Gaussian blur (sigma 10 px),
    ``uniform`` noise in [0, 1) from ``seed``, the same for every image of the batch."""
    if baseline == "black":
        return torch.zeros_like(x)
    if baseline == "blurred":
        # kernel of +-3 sigma, no wider than reflect padding allows on small inputs
        k = min(int(2 * round(3 * BLUR_SIGMA) + 1), 2 * (min(x.shape[-2:]) - 1) + 1)
        return gaussian_blur(x, [k, k], [BLUR_SIGMA, BLUR_SIGMA])
    if baseline == "uniform":
        g = torch.Generator(device="cpu")  # CPU draws: the same baseline on any device
        g.manual_seed(seed)
        # one image's shape only, so an image's baseline does not depend on the rest of the batch
        noise = torch.rand(x.shape[1:], generator=g, dtype=torch.float32)
        return noise.to(device=x.device, dtype=x.dtype).expand_as(x).clone()
    raise ValueError(
        f"Integrated Gradients baseline must be one of {', '.join(BASELINES)}; got {baseline!r}."
    )


def path_points(steps: int, rule: str) -> tuple[list[float], list[float]]:
    """Positions alpha in [0, 1] and weights of the quadrature of the path integral (Eq. 3)."""
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return list((nodes + 1) / 2), list(weights / 2)
    if rule == "riemann_trapezoid":
        if steps < 2:
            raise ValueError("The trapezoid rule needs at least 2 steps.")
        alphas = np.linspace(0, 1, steps)
        w = np.full(steps, 1 / (steps - 1))
        w[[0, -1]] /= 2
        return list(alphas), list(w)
    raise ValueError(f"Integration rule must be one of {', '.join(RULES)}; got {rule!r}.")


def cell_weights(alphas: list[float]) -> list[float]:
    """Weights of a Riemann sum on sorted points in [0, 1]: each point's share of the path,
    from the midpoint to its left neighbour to the midpoint to its right one (0 and 1 at the ends)."""
    edges = [0.0] + [(a + b) / 2 for a, b in zip(alphas, alphas[1:])] + [1.0]
    return [right - left for left, right in zip(edges, edges[1:])]


def _subset_rules(alphas: list[float]) -> list[dict[int, float]]:
    """Coarser rules on subsets of the path points, for the convergence readout: the four
    quarters (every 4th point, ordered so that quarters 1+2 and 3+4 are compared) and the two
    halves (every other point), each point weighted by its share of the path (``cell_weights``)."""
    subsets = [
        range(0, len(alphas), 4),
        range(2, len(alphas), 4),
        range(1, len(alphas), 4),
        range(3, len(alphas), 4),
        range(0, len(alphas), 2),
        range(1, len(alphas), 2),
    ]
    return [dict(zip(s, cell_weights([alphas[j] for j in s]))) for s in subsets]


def integrated_gradients(
    network: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    steps: int = 50,
    baseline: str = "black",
    rule: str = "gausslegendre",
    seed: int = 0,
    chunk_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    readout: Readout | None = None,
) -> torch.Tensor:
    """(x - x') * integral_0^1 d score(x' + a (x - x')) / dx da (Eq. 1, Sundararajan et al.).

    Args:
        steps: quadrature points on the path (paper: 20-300).
        baseline: ``"black"``, ``"blurred"`` or ``"uniform"`` (noise from ``seed``).
        rule: ``"gausslegendre"`` (default; converges fastest) or ``"riemann_trapezoid"``.
        readout: a ``convergence.Readout`` to fill: the maps from every 4th and every other
            path point (Riemann sums, no extra passes) compared and extrapolated to ``steps``;
            it estimates how much a rule on other path points would change the map, and
            over- rather than under-states that for the more accurate Gauss-Legendre rule.
    Returns:
        Tensor (B, C, H, W); its sum per image approximates score(x) - score(x').
    """
    steps = count("Integrated Gradients steps", steps, 1, 10_000)
    x = x.detach()
    batch = x.shape[0]
    target = as_targets(target, batch, x.device)
    ref = make_baseline(x, baseline, seed)
    alphas, weights = path_points(int(steps), rule)
    per_chunk = max(1, (chunk_size or default_chunk_size(x)) // batch)
    total = torch.zeros_like(x)
    rules = _subset_rules(alphas) if readout is not None and len(alphas) >= 4 else []
    partial = [torch.zeros_like(x) for _ in rules]
    for start in range(0, len(alphas), per_chunk):
        a = torch.tensor(alphas[start : start + per_chunk], dtype=x.dtype, device=x.device)
        w = torch.tensor(weights[start : start + per_chunk], dtype=x.dtype, device=x.device)
        n = a.numel()
        points = ref.unsqueeze(0) + a.view(n, 1, 1, 1, 1) * (x - ref).unsqueeze(0)
        grads = input_gradient(network, points.reshape(n * batch, *x.shape[1:]), target.repeat(n))
        grads = grads.reshape(n, batch, *x.shape[1:])
        total += (grads * w.view(n, 1, 1, 1, 1)).sum(0)
        for acc, subset in zip(partial, rules):
            for i in range(n):
                if start + i in subset:
                    acc += subset[start + i] * grads[i]
        if progress is not None:
            progress(start + n, len(alphas))
    if readout is not None:
        if rules:
            maps = [(x - ref) * acc for acc in partial]
            readout.check(maps[:4], maps[4:], len(alphas), what="steps")
        else:
            readout.unavailable(batch, len(alphas), "needs at least 4 path steps to compare.", what="steps")
    return (x - ref) * total


def completeness(
    network: nn.Module, x: torch.Tensor, target: torch.Tensor, attribution: torch.Tensor, params: dict
) -> dict:
    """Convergence check (Prop. 1, Sundararajan et al.): sum of attributions vs score(x) - score(x')."""
    ref = make_baseline(x.detach(), params.get("baseline", "black"), params.get("seed", 0))
    t = as_targets(target, x.shape[0], x.device)
    with torch.no_grad():
        delta = (target_scores(network, x.detach(), t) - target_scores(network, ref, t)).double()
    total = attribution.double().flatten(1).sum(1)
    gap = (total - delta).abs()
    return {
        "score_difference": delta.tolist(),
        "attribution_sum": total.tolist(),
        "completeness_gap": gap.tolist(),
        "completeness_gap_relative": (gap / delta.abs().clamp(min=1e-12)).tolist(),
    }


def integrated_cost(params: dict, size: tuple[int, int]) -> Cost:
    """One gradient per path step, and two forward passes for the completeness check (the
    scores of the image and of the baseline)."""
    return Cost(forward=2, backward=whole(params["steps"]), batched=True)


register(
    "integrated_gradients",
    "Integrated Gradients",
    "Sums gradients along a path from a plain reference image to this one; "
    "the contributions add up to the score difference.",
    defaults={"steps": 50, "baseline": "black", "rule": "gausslegendre", "seed": 0},
    reduction="sum",
    signed=True,
    check=completeness,
    passes=integrated_cost,
    settings={
        "seed": SEED,
        "steps": Setting("Integrated Gradients steps", low=8, high=300, step=1),
        "baseline": Setting(
            "Integrated Gradients baseline",
            "The reference image the path starts from.",
            widget="select",
            choices=BASELINES,
        ),
    },
    smoothable=False,
    reference="Sundararajan, Taly, Yan 2017, Axiomatic Attribution for Deep Networks",
)(integrated_gradients)
