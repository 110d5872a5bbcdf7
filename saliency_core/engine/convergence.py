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

Reproducible detail. The same estimate is taken on the quarter and half maps smoothed at each
level of ``detail.ladder`` (Gaussian sigma 0, 1, 2, 4, 8, 16 px on a 224 px input; the kernel is
stated in engine/detail.py), in one batch, with no extra network pass; a level blurred by sigma
px is read at every (sigma / 2)-th pixel, as it holds no finer detail. The map's
``reproducible_px`` is the finest level that is settled; the verdict is "settled" when that is at
or finer than the run's ``settled_at`` detail. At the raw pixels both estimates must reach
``SETTLED``; at a blurred level the Spearman estimate decides alone: the strongest 10 % of a
blurred map is a few blobs whose edge pixels trade places between re-runs, so its overlap stays
near 0.85-0.9 however many samples are drawn (SmoothGrad-50, chelsea.png, 8 px, two seeds: 0.85;
200 samples: 0.88), and the split-quarter extrapolation is unreliable there (estimated 0.68
for that 0.85; motorcycle_left.png at 16 samples, 16 px: 0.80 for a measured 0.59). The
per-level top-10 % estimate is recorded all the same.
bench/reproducible_detail.py prints estimated against measured agreement per level.

Example:
    >>> exp = sc.explain(model, "chelsea.png", method="smoothgrad", samples=50)
    >>> readout = exp.diagnostics["convergence"]
    >>> readout["verdict"], readout["rerun_spearman"], readout["reproducible_px"]
    ('settled', 0.24, 4.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from . import detail

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
    return _rank_correlation(_ranks(a.flatten(1)), _ranks(b.flatten(1)))


def _rank_correlation(ra: torch.Tensor, rb: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of rows of ranks (B, P), with spearman's rules for constant maps."""
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    na, nb = ra.norm(dim=1), rb.norm(dim=1)
    rho = (ra * rb).sum(1) / (na * nb).clamp(min=1e-300)
    rho = torch.where((na == 0) | (nb == 0), torch.zeros_like(rho), rho.clamp(-1, 1))
    return torch.where((na == 0) & (nb == 0), torch.ones_like(rho), rho)


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """1-based ranks along dim 1, ties sharing their average rank (float64)."""
    ordered, order = torch.sort(v, dim=1)  # in the maps' own precision: the same order
    n = v.shape[1]
    index = torch.arange(n, device=v.device).expand_as(v)
    ranks = torch.empty(v.shape, dtype=torch.float64, device=v.device)
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
    return _mask_overlap(_strongest(va, k), _strongest(vb, k), k)


def _mask_overlap(mask_a: torch.Tensor, mask_b: torch.Tensor, k: int) -> torch.Tensor:
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

    The estimate is taken at every detail level of ``detail.ladder`` (the quarter and half maps
    smoothed by a Gaussian of 0, 1, 2, 4, 8, 16 px on a 224 px input, all in one batch: no extra
    network pass). Each readout records ``levels`` (per level: ``px``, ``rerun_spearman``,
    ``rerun_top10``, ``settled``) and ``reproducible_px``: the finest level at which both
    estimates reach the threshold, None when none does. The top-level ``rerun_spearman`` and
    ``rerun_top10`` are the raw pixels' (level 0).

    Args:
        reduce: the method's channel reduction; default max of |.| over channels.
        threshold: re-run agreement of a settled map (``SETTLED``).
        settled_at: the detail (sigma in px on a 224 px input, one of ``detail.LADDER_PX``) at
            which the verdict is taken: "settled" when the map is reproducible at that detail or
            a finer one. 0 judges the raw pixels.
    """

    def __init__(
        self,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
        threshold: float = SETTLED,
        settled_at: float = 0,
    ):
        self.reduce = reduce or (lambda a: a.abs().amax(dim=1))
        self.threshold = float(threshold)
        self.settled_at = check_level(settled_at)
        self.last: list[dict] | None = None

    def check(
        self, quarters: list[torch.Tensor], halves: list[torch.Tensor], terms: int, what: str = "samples"
    ) -> list[dict]:
        """Per-image readout from 4 quarter and 2 half attributions, each (B, C, H, W)."""
        maps = torch.stack([self.reduce(a) for a in [*quarters, *halves]])  # (6, B, H, W)
        levels = detail.ladder(int(min(maps.shape[-2:])))
        scale = levels[-1] / detail.LADDER_PX[-1]
        target = round(self.settled_at * scale, 3)
        agreements = [level_agreements(maps, px) for px in levels]
        out = []
        for i in range(maps.shape[1]):
            rows = [self._level(px, *(values[i] for values in a)) for px, a in zip(levels, agreements)]
            reproducible = next((row["px"] for row in rows if row["settled"]), None)
            raw = rows[0]
            settled = reproducible is not None and reproducible <= target
            out.append(
                {
                    "verdict": "settled" if settled else "still changing",
                    "rerun_spearman": raw["rerun_spearman"],
                    "rerun_top10": raw["rerun_top10"],
                    "threshold": self.threshold,
                    what: int(terms),
                    "split_half_spearman": raw.pop("split_half_spearman"),
                    "split_half_top10": raw.pop("split_half_top10"),
                    "quarter_spearman": raw.pop("quarter_spearman"),
                    "quarter_top10": raw.pop("quarter_top10"),
                    "exponent_spearman": raw.pop("exponent_spearman"),
                    "exponent_top10": raw.pop("exponent_top10"),
                    "levels": [{k: row[k] for k in LEVEL_KEYS} for row in rows],
                    "reproducible_px": reproducible,
                    "settled_at_px": target,
                    "estimate": "split-quarter agreement of the displayed saliency, extrapolated to the full "
                    "count, at each detail level (saliency_core/engine/convergence.py, engine/detail.py)",
                }
            )
        self.last = out
        return out

    def _level(self, px: float, sp_q: float, sp_h: float, top_q: float, top_h: float) -> dict:
        sp, beta_sp = extrapolate(sp_q, sp_h)
        top, beta_top = extrapolate(top_q, top_h, chance=TOP_FRACTION)
        return {
            "px": px,
            "rerun_spearman": round(sp, _DIGITS),
            "rerun_top10": round(top, _DIGITS),
            # raw pixels: both estimates; a blurred level: the rank agreement (module docstring)
            "settled": bool(sp >= self.threshold and (px > 0 or top >= self.threshold)),
            "split_half_spearman": round(sp_h, _DIGITS),
            "split_half_top10": round(top_h, _DIGITS),
            "quarter_spearman": round(sp_q, _DIGITS),
            "quarter_top10": round(top_q, _DIGITS),
            "exponent_spearman": round(beta_sp, 3),
            "exponent_top10": round(beta_top, 3),
        }

    def unavailable(self, batch: int, terms: int, reason: str, what: str = "samples") -> list[dict]:
        """Readout for a run too short to split: verdict "unknown" with the reason."""
        self.last = [{"verdict": "unknown", "reason": reason, what: int(terms)} for _ in range(batch)]
        return self.last


LEVEL_KEYS = ("px", "rerun_spearman", "rerun_top10", "settled")


def check_level(px) -> float:
    """A detail level named in px on a 224 px input: one of ``detail.LADDER_PX``."""
    if isinstance(px, bool) or not isinstance(px, (int, float)) or px not in detail.LADDER_PX:
        raise ValueError(
            f"detail must be one of {', '.join(map(str, detail.LADDER_PX))} px (on a 224 px input); "
            f"got {px!r}."
        )
    return float(px)


def level_agreements(maps: torch.Tensor, px: float) -> list[list[float]]:
    """Quarter and half agreements of the maps (6, B, H, W) smoothed at ``px``: [sp_q, sp_h,
    top_q, top_h], each a list over B. One sort and one top-k for all six maps."""
    six, batch = maps.shape[:2]
    if px > 0:  # float32 is plenty for a blurred map; level 0 keeps the maps' own precision
        # a map blurred by sigma px holds no detail finer than sigma: read every (sigma / 2)-th pixel
        stride = max(1, int(px // 2))
        maps = detail.smooth_tensor(maps.flatten(0, 1).float(), px, stride)
    flat = maps.reshape(six * batch, -1)
    ranks = _ranks(flat).view(six, batch, -1)
    k = max(1, int(round(TOP_FRACTION * flat.shape[1])))
    masks = _strongest(flat.abs(), k).view(six, batch, -1)
    sp = [_rank_correlation(ranks[a], ranks[b]) for a, b in ((0, 1), (2, 3), (4, 5))]
    top = [_mask_overlap(masks[a], masks[b], k) for a, b in ((0, 1), (2, 3), (4, 5))]
    return [((sp[0] + sp[1]) / 2).tolist(), sp[2].tolist(), ((top[0] + top[1]) / 2).tolist(), top[2].tolist()]


def all_settled(readout: list[dict]) -> bool:
    return all(r.get("verdict") == "settled" for r in readout)


def describe(readout: dict, shown_px: float | None = None) -> tuple[str, str]:
    """(plain words, details with the numbers) for a page or report; ("", "") without a readout.

    ``shown_px``: the detail the map is drawn at (Gaussian sigma in px; 0: full detail); None
    means its reproducible detail, the default display of an averaged map."""
    if not readout:
        return "", ""
    verdict = readout.get("verdict")
    if verdict == "unknown":
        return "Convergence unknown: " + str(readout.get("reason", "")), ""
    unit = next((u for u in ("samples", "masks") if u in readout), "steps")
    terms = readout.get(unit)
    levels = [row for row in readout.get("levels") or [] if _level_ok(row)]
    if unit != "steps" and levels:
        words = _detail_words(readout, levels, shown_px, unit)
    elif verdict == "settled":
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
        f"Estimated agreement with a re-run at {terms} {unit}, at full detail: Spearman "
        f"{_number(readout.get('rerun_spearman')):.2f}, strongest 10 % of pixels "
        f"{_number(readout.get('rerun_top10')):.0%} shared "
        f"(settled from {_number(readout.get('threshold', SETTLED)):.2f} on both)."
    )
    if levels:
        details += " By detail (Gaussian blur of sigma px): " + ", ".join(
            f"{row['px']:g} px {row['rerun_spearman']:.2f}" for row in levels
        )
        details += " (Spearman; a blurred level is settled from the Spearman estimate alone)."
    if "stopped" in readout:
        details += f" Stopped {readout['stopped']} after {terms} {unit}."
    return words, details


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def _level_ok(row) -> bool:
    """A recorded detail level whose numbers can be shown (a record is read, never trusted)."""
    return (
        isinstance(row, dict)
        and all(math.isfinite(_number(row.get(k))) for k in ("px", "rerun_spearman"))
        and row["px"] >= 0
    )


def _detail_words(readout: dict, levels: list[dict], shown_px: float | None, unit: str = "samples") -> str:
    """The words under an averaged map: the detail it is drawn at and what a re-run reproduces
    (``unit``: what the method averages, "samples" of noise or RISE's "masks")."""
    noise = "random masks" if unit == "masks" else "random noise"
    other = "masks" if unit == "masks" else "noise"
    remedy = "More masks give" if unit == "masks" else "Sample until settled for"
    reproducible = detail.reproducible_px({"convergence": readout})
    at = {float(row["px"]): float(row["rerun_spearman"]) for row in levels}
    if reproducible is None:
        coarsest = max(at)
        return (
            f"Not settled even at {coarsest:g}-pixel detail: a re-run with other {noise} would look "
            f"different at every detail (estimated agreement {at[coarsest]:.2f}). {remedy} "
            "a map a re-run reproduces."
        )
    agreement = at.get(reproducible, float("nan"))
    if shown_px is None or shown_px == reproducible:
        if reproducible == 0:
            return (
                f"Shown at full detail: a re-run with other {noise} would show the same map "
                f"(estimated agreement {agreement:.2f})."
            )
        return (
            f"Shown at {reproducible:g}-pixel detail, the finest that a re-run with other {other} reproduces "
            f"(estimated agreement {agreement:.2f}). Finer speckle is random noise."
        )
    if shown_px < reproducible:
        return (
            f"Shown at {'full' if shown_px == 0 else f'{shown_px:g}-pixel'} detail: finer than "
            f"{reproducible:g}-pixel detail a re-run with other {noise} would look different "
            f"(estimated agreement at the pixel {at.get(0.0, float('nan')):.2f}; at {reproducible:g}-pixel "
            f"detail {agreement:.2f})."
        )
    return (
        f"Smoothed for display at {shown_px:g}-pixel detail; a re-run with other {other} reproduces it from "
        f"{reproducible:g}-pixel detail (estimated agreement {agreement:.2f})."
    )
