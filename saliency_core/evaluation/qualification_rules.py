"""The pass rules of a qualification, applied: per-image scores -> one row per method and criterion
(figure, interval, rule in words, pass / fail / undecided) and each method's verdict with its reason.

Pure: no model, no files. ``qualification`` runs the measurements and calls ``scorecard``.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd

from ..engine.detail import REFERENCE_SIZE
from ..engine.methods import METHODS
from .validate import CENTRE, RANDOM, ValidationSettings, label_of, mean_interval

VERDICTS = ("qualified", "provisional", "not qualified")
CRITERIA = {
    # name: (label, source)
    "pointing_game": ("Pointing game", "Zhang et al. 2016"),
    "relevance_mass": ("Relevance mass", "Arras et al. 2022"),
    "deletion": ("Deletion", "Petsiuk et al. 2018"),
    "insertion": ("Insertion", "Petsiuk et al. 2018"),
    "sanity": ("Randomisation sanity check", "Adebayo et al. 2018"),
    "stability": ("Stability", "Alvarez-Melis & Jaakkola 2018"),
    "reproducibility": ("Reproducibility", "reproducible detail of averaged maps"),
}
COLUMNS = ("method", "method_label", "criterion", "criterion_label", "figure", "low", "high")
COLUMNS += ("rule", "verdict", "detail")


# ---- the pure part: scores -> scorecard --------------------------------------------------------
def _row(method, criterion, figure, low, high, rule, verdict, detail) -> dict:
    def number(v):
        return float(v) if v is not None and math.isfinite(float(v)) else None

    return {
        "method": method,
        "method_label": label_of(method),
        "criterion": criterion,
        "criterion_label": CRITERIA[criterion][0],
        "figure": number(figure),
        "low": number(low),
        "high": number(high),
        "rule": rule,
        "verdict": verdict,
        "detail": detail,
    }


def _above(low: float, high: float, margin: float) -> str:
    """pass when the interval lies above ``margin``, fail when it lies at or below it."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "undecided"
    if low > margin:
        return "pass"
    if high <= margin:
        return "fail"
    return "undecided"


def _fmt(mean, low, high) -> str:
    if not math.isfinite(mean):
        return "n/a"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:+.3f}"
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"


def _paired(frame: pd.DataFrame, method: str, baseline: str, metric: str, higher: bool, settings) -> tuple:
    part = frame[frame["method"] == method].set_index("image")[[metric]]
    base = frame[frame["method"] == baseline].set_index("image")[[metric]]
    joined = part.join(base, rsuffix="_base", how="inner")
    diff = (joined[metric] - joined[f"{metric}_base"]).to_numpy(dtype=float)
    rng = np.random.default_rng([settings.seed, zlib.crc32(f"{method}/{baseline}/{metric}".encode())])
    return mean_interval(diff if higher else -diff, settings, rng)


def localisation_rows(frame: pd.DataFrame, method: str, vs: ValidationSettings, rules) -> list[dict]:
    """Pointing game and relevance mass: mean [CI], judged by the paired gains over both baselines."""
    rows = []
    for metric in ("pointing_game", "relevance_mass"):
        values = frame.loc[frame["method"] == method, metric].to_numpy(dtype=float) if metric in frame else []
        rng = np.random.default_rng([vs.seed, zlib.crc32(f"{method}/{metric}".encode())])
        mean, low, high, n = mean_interval(values, vs, rng)
        gains = {b: _paired(frame, method, b, metric, True, vs) for b in (CENTRE, RANDOM)} if n else {}
        verdicts = [_above(g[1], g[2], rules.localisation_margin) for g in gains.values()]
        verdict = (
            "fail"
            if "fail" in verdicts
            else "pass"
            if verdicts and set(verdicts) == {"pass"}
            else "undecided"
        )
        detail = "; ".join(f"gain over {label_of(b).lower()} {_fmt(*g[:3])}" for b, g in gains.items())
        rule = (
            f"paired gain over the centre-bias and the random map above {rules.localisation_margin:g} "
            f"({rules.confidence:.0%} interval, {CRITERIA[metric][1]})"
        )
        rows.append(
            _row(
                method,
                metric,
                mean,
                low,
                high,
                rule,
                verdict,
                f"{n} images; {detail}" if n else "no image scored",
            )
        )
    return rows


def faithfulness_rows(frame: pd.DataFrame, method: str, vs: ValidationSettings, rules) -> list[dict]:
    """Deletion / insertion area: mean [CI], judged by the paired gain over the random map."""
    rows = []
    for criterion, metric, higher in (
        ("deletion", "deletion_auc", False),
        ("insertion", "insertion_auc", True),
    ):
        values = frame.loc[frame["method"] == method, metric].to_numpy(dtype=float) if metric in frame else []
        rng = np.random.default_rng([vs.seed, zlib.crc32(f"{method}/{metric}".encode())])
        mean, low, high, n = mean_interval(values, vs, rng)
        gain = _paired(frame, method, RANDOM, metric, higher, vs) if n else (math.nan,) * 4
        verdict = _above(gain[1], gain[2], rules.faithfulness_margin)
        side = "below" if not higher else "above"
        rule = (
            f"area {side} the random map's: paired gain above {rules.faithfulness_margin:g} "
            f"({rules.confidence:.0%} interval, {CRITERIA[criterion][1]})"
        )
        detail = f"{n} images; gain over the random map {_fmt(*gain[:3])}" if n else "no image scored"
        rows.append(_row(method, criterion, mean, low, high, rule, verdict, detail))
    return rows


def sanity_row(method: str, finals: list[float], rules) -> dict:
    """Final rank correlations (one per sampled image): pass when all are below the threshold."""
    rule = (
        f"rank correlation of |map| with the trained model's map below {rules.sanity_threshold:.2f} on every "
        f"sampled image, top half of the layers re-initialised ({CRITERIA['sanity'][1]})"
    )
    values = [v for v in finals if v is not None and math.isfinite(v)]
    if not values:
        return _row(method, "sanity", None, None, None, rule, "undecided", "not measured on any image")
    failed = [v for v in values if v >= rules.sanity_threshold]
    verdict = "fail" if failed else "pass"
    detail = (
        f"the map stays like the trained model's when the model is destroyed on {len(failed)} of "
        f"{len(values)} sampled images (rank correlation up to {max(failed):.2f}, not below "
        f"{rules.sanity_threshold:.2f})"
        if failed
        else f"the map changes when the model is destroyed on all {len(values)} sampled images"
    )
    return _row(method, "sanity", float(np.mean(values)), min(values), max(values), rule, verdict, detail)


def stability_row(method: str, means: list[float], vs: ValidationSettings, rules) -> dict:
    """Per sampled image the mean rank correlation under small changes: its mean [CI] against the rule."""
    rule = (
        "mean rank correlation of |map| under small input changes at least "
        f"{rules.stability_min_spearman:.2f} "
        f"({rules.confidence:.0%} interval, {CRITERIA['stability'][1]})"
    )
    rng = np.random.default_rng([vs.seed, zlib.crc32(f"{method}/stability".encode())])
    mean, low, high, n = mean_interval([v for v in means if v is not None], vs, rng)
    if not n:
        return _row(method, "stability", None, None, None, rule, "undecided", "not measured on any image")
    if n == 1:
        low = high = mean
    # at least the rule: the interval lies at or above it
    verdict = (
        "pass"
        if low >= rules.stability_min_spearman
        else "fail"
        if high < rules.stability_min_spearman
        else "undecided"
    )
    return _row(method, "stability", mean, low, high, rule, verdict, f"{n} images")


def reproducibility_row(method: str, details: list[dict], input_size: int, rules) -> dict:
    """Averaging methods: the reproducible detail of each sampled map at most the rule's; exact ones n/a."""
    limit = rules.max_reproducible_px * input_size / REFERENCE_SIZE
    rule = f"reproducible detail at most {limit:g} px (Gaussian sigma) on every sampled image"
    if not METHODS[method].averaging:
        return _row(
            method,
            "reproducibility",
            None,
            None,
            None,
            rule,
            "n/a",
            "exact method: the same input gives the same map",
        )
    if not details:
        return _row(
            method, "reproducibility", None, None, None, rule, "undecided", "not measured on any image"
        )
    unrecorded = [d for d in details if not d.get("recorded")]
    values = [d["px"] for d in details if d.get("recorded") and d.get("px") is not None]
    unsettled = [d for d in details if d.get("recorded") and d.get("px") is None]
    coarsest = max(values) if values else None
    low = min(values) if values else None
    if unsettled or (coarsest is not None and coarsest > limit):
        words = (
            f"not reproducible even at the coarsest detail on {len(unsettled)} image(s)" if unsettled else ""
        )
        words = words or f"reproducible only at {coarsest:g} px on some image"
        return _row(method, "reproducibility", coarsest, low, coarsest, rule, "fail", words)
    if unrecorded:
        return _row(
            method,
            "reproducibility",
            coarsest,
            low,
            coarsest,
            rule,
            "undecided",
            f"the reproducible detail was not recorded with {len(unrecorded)} of {len(details)} map(s)",
        )
    return _row(
        method, "reproducibility", coarsest, low, coarsest, rule, "pass", f"{len(values)} images, range shown"
    )


def overall(method: str, rows: list[dict], images: int, rules, complete: bool = True) -> dict:
    """The method's verdict from its criteria rows, with the reason in words."""
    failing = [r for r in rows if r["verdict"] == "fail"]
    fails = "; ".join(f"{r['criterion_label'].lower()} ({r['detail']})" for r in failing)
    if not complete:  # a stopped run is never a final verdict
        so_far = f"; so far it fails {fails}" if failing else ""
        reason = f"Provisional: the run was stopped before the end{so_far}."
        return {"verdict": "provisional", "reason": reason, "failing": [r["criterion"] for r in failing]}
    if failing:
        return {
            "verdict": "not qualified",
            "reason": f"Fails {fails}.",
            "failing": [r["criterion"] for r in failing],
        }
    why = []
    if images < rules.min_images:
        why.append(f"only {images} annotated image(s) scored ({rules.min_images} needed)")
    undecided = [r for r in rows if r["verdict"] == "undecided"]
    if undecided:
        why.append(
            "undecided: " + "; ".join(f"{r['criterion_label'].lower()} ({r['detail']})" for r in undecided)
        )
    if why:
        return {"verdict": "provisional", "reason": "Provisional: " + "; ".join(why) + ".", "failing": []}
    return {"verdict": "qualified", "reason": "Passes every criterion.", "failing": []}


def scorecard(
    frame, units: dict, methods, vs: ValidationSettings, rules, images: int, input_size: int, complete=True
):
    """Every criterion's row per method and each method's verdict.

    Args:
        frame: ``ValidationResult.per_image()`` (methods and both baselines).
        units: ``{"sanity": [{method: final}], "stability": [{method: mean}], "reproducibility":
            [{method: {"px", "recorded"}}], "cannot_run": {method: reason}}``.
    Returns:
        (rows, verdicts): rows as ``COLUMNS`` dicts, verdicts ``{method: {"verdict", "reason", "failing"}}``.
    """
    rows, verdicts = [], {}
    for m in methods:
        if m in units.get("cannot_run", {}):
            verdicts[m] = {"verdict": "not qualified", "reason": units["cannot_run"][m], "failing": ["runs"]}
            continue
        own = localisation_rows(frame, m, vs, rules) + faithfulness_rows(frame, m, vs, rules)
        own.append(sanity_row(m, [u[m] for u in units.get("sanity", []) if m in u], rules))
        own.append(stability_row(m, [u[m] for u in units.get("stability", []) if m in u], vs, rules))
        own.append(
            reproducibility_row(
                m, [u[m] for u in units.get("reproducibility", []) if m in u], input_size, rules
            )
        )
        rows += own
        verdicts[m] = overall(m, own, images, rules, complete)
    return rows, verdicts
