"""How settled an averaged map is: the split-quarter convergence readout.

An averaging method (the SmoothGrad family, Integrated Gradients' path points) builds its map
from many terms. The readout splits the terms into four independent quarters, each a smaller
version of the same estimate, and asks: how much would this map agree with a re-run that used
other random draws? That *re-run agreement* is measured on the displayed saliency (H, W) with the
two measures the rest of the package uses (metrics/similarity.py): Spearman rank correlation and
the overlap of the strongest 10 % of pixels.

Estimate (stated; checked analytically in tests/engine/test_convergence.py and against seed-to-seed
maps of the demo model in bench/convergence.py):

1. ``a_q``: agreement of quarter 1 with quarter 2 and of quarter 3 with quarter 4 (mean of the
   two), each quarter holding n/4 terms; ``a_h``: agreement of half 1 (quarters 1+2) with half 2
   (quarters 3+4), n/2 terms each.
2. On the scale ``u = 1/a - 1`` (noise-to-signal: for additive noise and Pearson correlation
   ``u`` is proportional to 1/terms, which gives Spearman-Brown ``a_n = 2 a_h / (1 + a_h)``),
   fit ``u(n) ~ n^-beta`` through the quarter and half points and extrapolate to n terms:
   ``a_n = 1 / (1 + u_h * 2^-beta)``. ``beta`` is kept in [0, 1]: 1 is Spearman-Brown, the
   fastest gain averaging can give; saliency maps are heavy-tailed and taken in absolute value,
   so they gain more slowly (beta 0.7-0.9 on the demo model), and plain Spearman-Brown would
   call them settled too early.
3. Top-10 % overlap: the same, on the overlap above chance, ``(o - 0.1) / (1 - 0.1)``.

Stated tolerance: within 0.05 (Spearman) and 0.08 (top-10 % overlap, which rests on fewer
pixels) of the true re-run agreement on a 64 x 64 model with a known gradient distribution
(tests/engine/test_convergence.py); bench/convergence.py prints it next to measured re-runs of the
demo model and ResNet-50. Agreement with the
many-sample limit itself is higher than the re-run agreement (for additive noise it is its
square root), so the readout errs on the side of "still changing".

A map is **settled** when both estimates reach ``SETTLED`` (0.9): a re-run with another seed
would rank the pixels almost the same way and keep 9 in 10 of the strongest pixels.

Example:
    >>> exp = sc.explain(model, "chelsea.png", method="smoothgrad", samples=50)
    >>> exp.diagnostics["convergence"]["verdict"], exp.diagnostics["convergence"]["rerun_spearman"]
    ('still changing', 0.41)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

SETTLED = 0.9  # re-run agreement (Spearman and top-10 % overlap) of a settled map
TOP_FRACTION = 0.1  # "strongest pixels": the top 10 %, as metrics.similarity.top_k_overlap
QUARTERS = 4
_DIGITS = 4  # rounding of recorded numbers


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each pair of maps, ties sharing their average rank.

    Args:
        a, b: (B, H, W) or (B, P) maps on any device.
    Returns:
        float64 (B,). Both maps constant: 1.0; one constant: 0.0 (as metrics.similarity.spearman,
        which this matches; computed on the maps' device in one batch).
    """
    ra, rb = _ranks(a.flatten(1)), _ranks(b.flatten(1))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    na, nb = ra.norm(dim=1), rb.norm(dim=1)
    rho = (ra * rb).sum(1) / (na * nb).clamp(min=1e-300)
    rho = torch.where((na == 0) | (nb == 0), torch.zeros_like(rho), rho.clamp(-1, 1))
    return torch.where((na == 0) & (nb == 0), torch.ones_like(rho), rho)


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """1-based ranks along dim 1, ties sharing their average rank (float64)."""
    v = v.double()
    ordered, order = torch.sort(v, dim=1)
    n = v.shape[1]
    index = torch.arange(n, device=v.device).expand_as(v)
    ranks = torch.empty_like(v)
    if not bool((ordered[:, 1:] == ordered[:, :-1]).any()):  # no ties: the usual case, one sort
        return ranks.scatter_(1, order, index.double() + 1)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    first = torch.cummax(torch.where(starts, index, torch.zeros_like(index)), dim=1).values
    last = torch.cummin(torch.where(ends, index, torch.full_like(index, n)).flip(1), dim=1).values.flip(1)
    return ranks.scatter_(1, order, (first + last).double() / 2 + 1)


def top_overlap(a: torch.Tensor, b: torch.Tensor, fraction: float = TOP_FRACTION) -> torch.Tensor:
    """Share of the ``fraction`` strongest pixels (by |value|) of each map in ``a`` that are also
    among the strongest of the matching map in ``b``; ties broken by pixel position, as
    metrics.similarity.top_k_overlap. (B, ...) -> float64 (B,)."""
    va, vb = a.flatten(1).abs(), b.flatten(1).abs()
    k = max(1, int(round(fraction * va.shape[1])))
    mask_a, mask_b = _strongest(va, k), _strongest(vb, k)
    return (mask_a & mask_b).sum(1).double() / k


def _strongest(v: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k largest values per row, ties broken by position (lower first)."""
    if k < v.shape[1]:
        values, index = torch.topk(v, k + 1, dim=1)
        if bool((values[:, k - 1] > values[:, k]).all()):  # no tie at the edge: topk's set is the set
            return torch.zeros_like(v, dtype=torch.bool).scatter_(1, index[:, :k], True)
    index = torch.argsort(-v, dim=1, stable=True)[:, :k]
    return torch.zeros_like(v, dtype=torch.bool).scatter_(1, index, True)


def extrapolate(quarter: float, half: float, chance: float = 0.0) -> tuple[float, float]:
    """(agreement at the full count, exponent beta) from the quarter and half agreements.

    Works on the agreement above ``chance`` (0 for Spearman, the top fraction for top-k
    overlap): u = 1/a - 1 is fitted as u ~ n^-beta between n/4 and n/2 (beta in [0, 1]) and
    extrapolated to n. Without a usable quarter point (agreement at or below chance, or exactly
    1), beta = 1 (Spearman-Brown). Example: ``extrapolate(0.5, 0.5)`` is (0.5, 0.0): no gain
    from quarters to halves, none assumed to the full count.
    """
    q = (quarter - chance) / (1 - chance)
    h = (half - chance) / (1 - chance)
    if h >= 1:
        return 1.0, 1.0
    if h <= 0:
        # noise only (or worse): Spearman-Brown 2h / (1 + h) keeps it at or below chance
        full = 2 * h / (1 + h) if h > -1 else -1.0
        return chance + (1 - chance) * full, 1.0
    u_half = 1 / h - 1
    beta = 1.0
    if 0 < q < 1:
        beta = min(1.0, max(0.0, math.log2((1 / q - 1) / u_half)))
    full = 1 / (1 + u_half * 2**-beta)
    return chance + (1 - chance) * full, beta


def quarter_of(unit: int) -> int:
    """Which quarter term ``unit`` (a sample, an antithetic pair, a path point) belongs to."""
    return unit % QUARTERS


class Readout:
    """The convergence readout of one averaging run, fed by the method at its checkpoints.

    The method passes its four quarter results (each the method's own estimate from a quarter
    of the terms, (B, C, H, W), on any device) and their combinations; ``reduce`` turns an
    attribution (B, C, H, W) into the displayed saliency (B, H, W). ``last`` keeps the latest
    per-image readout (a list of dicts), which ``explain`` records in ``diagnostics``.

    Args:
        reduce: the method's channel reduction; default max of |.| over channels.
        threshold: re-run agreement of a settled map (``SETTLED``).
    """

    def __init__(
        self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None, threshold: float = SETTLED
    ):
        self.reduce = reduce or (lambda a: a.abs().amax(dim=1))
        self.threshold = float(threshold)
        self.last: list[dict] | None = None

    def check(
        self, quarters: list[torch.Tensor], halves: list[torch.Tensor], terms: int, what: str = "samples"
    ) -> list[dict]:
        """Per-image readout from 4 quarter and 2 half attributions, each (B, C, H, W)."""
        q = [self.reduce(a) for a in quarters]
        h = [self.reduce(a) for a in halves]
        sp_q = ((spearman(q[0], q[1]) + spearman(q[2], q[3])) / 2).tolist()
        sp_h = spearman(h[0], h[1]).tolist()
        top_q = ((top_overlap(q[0], q[1]) + top_overlap(q[2], q[3])) / 2).tolist()
        top_h = top_overlap(h[0], h[1]).tolist()
        out = []
        for i in range(len(sp_h)):
            sp, beta_sp = extrapolate(sp_q[i], sp_h[i])
            top, beta_top = extrapolate(top_q[i], top_h[i], chance=TOP_FRACTION)
            settled = sp >= self.threshold and top >= self.threshold
            out.append(
                {
                    "verdict": "settled" if settled else "still changing",
                    "rerun_spearman": round(sp, _DIGITS),
                    "rerun_top10": round(top, _DIGITS),
                    "threshold": self.threshold,
                    what: int(terms),
                    "split_half_spearman": round(sp_h[i], _DIGITS),
                    "split_half_top10": round(top_h[i], _DIGITS),
                    "quarter_spearman": round(sp_q[i], _DIGITS),
                    "quarter_top10": round(top_q[i], _DIGITS),
                    "exponent_spearman": round(beta_sp, 3),
                    "exponent_top10": round(beta_top, 3),
                    "estimate": "split-quarter agreement of the displayed saliency, extrapolated to the full "
                    "count (saliency_core/engine/convergence.py)",
                }
            )
        self.last = out
        return out

    def unavailable(self, batch: int, terms: int, reason: str, what: str = "samples") -> list[dict]:
        """Readout for a run too short to split: verdict "unknown" with the reason."""
        self.last = [{"verdict": "unknown", "reason": reason, what: int(terms)} for _ in range(batch)]
        return self.last


def all_settled(readout: list[dict]) -> bool:
    return all(r.get("verdict") == "settled" for r in readout)


def describe(readout: dict) -> tuple[str, str]:
    """(plain words, details with the numbers) for a page or report; ("", "") without a readout."""
    if not readout:
        return "", ""
    verdict = readout.get("verdict")
    if verdict == "unknown":
        return "Convergence unknown: " + str(readout.get("reason", "")), ""
    terms = readout.get("samples") or readout.get("steps")
    unit = "samples" if "samples" in readout else "steps"
    if verdict == "settled":
        words = "Settled: a re-run with other random noise would show the same map."
        if unit == "steps":
            words = "Settled: more path steps would not change this map."
    else:
        words = (
            "Still changing: a re-run with other random noise would look noticeably different; "
            "more samples would sharpen it."
        )
        if unit == "steps":
            words = "Still changing: more path steps would change this map; raise the step count."
    details = (
        f"Estimated agreement with a re-run at {terms} {unit}: Spearman "
        f"{readout.get('rerun_spearman', float('nan')):.2f}, strongest 10 % of pixels "
        f"{readout.get('rerun_top10', float('nan')):.0%} shared "
        f"(settled from {readout.get('threshold', SETTLED):.2f} on both)."
    )
    if "stopped" in readout:
        details += f" Stopped {readout['stopped']} after {terms} {unit}."
    return words, details
