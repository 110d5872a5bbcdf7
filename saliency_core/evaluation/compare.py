"""Compare two versions of a model on the same images: what changed between the accepted model (A)
and the candidate (B)?

Both models run through the pipeline (``saliency_core.pipeline.explain_images``) on the same
images and methods; each map explains that model's own top-1 class. For every image this module
records both predictions and, per method, how alike the two maps are: the Spearman rank
correlation of |map| and the overlap of their strongest 10 % of pixels (``metrics.similarity``).
Over the images it gives the mean of each with a percentile bootstrap interval.

A map "moved" only relative to what moves it anyway: for averaging methods (SmoothGrad family,
``Method.averaging``) model A is run a second time with another seed, and the same two measures of
A against itself are shown beside A against B. Deterministic methods give the same map on every
run, so any difference there comes from the models.

With labels (image -> true class), changed predictions are classified: ``fixed`` (A wrong, B
right), ``broken`` (A right, B wrong) and ``changed, both wrong``; without a label an image is
``changed`` or ``unchanged``.

Example:
    >>> a, b = load_model("models/v1.yaml"), load_model("models/v2.yaml")
    >>> result = compare_models(a, b, ["cat.png", "dog.png"], CompareSettings(["gradient", "smoothgrad"]))
    >>> result.summary_lines()[2]
    'The top class changed on 1 of 2 images (50 %): ...'
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..engine.detail import stated_detail
from ..engine.explain import available_methods
from ..engine.methods import METHODS
from ..engine.untrusted import quote
from ..pipeline import ExplainFn, explain_images
from .compare_labels import (
    BOTH_WRONG,
    BROKEN,
    CHANGED,
    CHANGES,
    FIXED,
    UNCHANGED,
    check_same_classes,
    classify_change,
    label_for,
)
from .map_agreement import TOP_SHARE, agreement, map_grid_reason

if TYPE_CHECKING:
    import pandas as pd


MEASURES = {"spearman": "rank correlation of |map|", "top_overlap": "overlap of the strongest 10 % of pixels"}
PREPROCESSING = ("input_size", "resize", "crop", "interpolation", "mean", "std", "gradcam_layer")

Progress = Callable[[int, int, str], None]


# ---- settings and results -----------------------------------------------------------------------


@dataclass
class CompareSettings:
    """What a comparison computes; recorded with the result.

    Attributes:
        methods: registry names.
        params: method parameters (``samples``, ``noise``, ``seed``, ``steps``, ``baseline``); each
            method gets those it takes. The seed baseline uses ``seed + 1``.
        top_share: share of pixels that counts as "strongest" for the overlap.
        confidence, resamples, seed: the percentile bootstrap over images (seed of the resampling).
        most_moved: images listed as those whose maps moved most.
    """

    methods: Sequence[str]
    params: dict = field(default_factory=dict)
    top_share: float = TOP_SHARE
    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0
    most_moved: int = 5

    def check(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(
                f"Unknown method(s) {', '.join(map(quote, unknown))}; available: {', '.join(METHODS)}."
            )
        if not self.methods:
            raise ValueError("Choose at least one saliency method.")
        if not 0 < self.top_share <= 1:
            raise ValueError(f"The share of strongest pixels must be in (0, 1]; got {self.top_share}.")
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"confidence must be between 0.5 and 1; got {self.confidence}.")
        if not 100 <= int(self.resamples) <= 100_000:
            raise ValueError(f"resamples must be between 100 and 100000; got {self.resamples}.")
        if not 0 <= int(self.most_moved) <= 1000:
            raise ValueError(f"most_moved must be between 0 and 1000; got {self.most_moved}.")

    @property
    def baseline_seed(self) -> int:
        return int(self.params.get("seed", 0) or 0) + 1

    def baseline_params(self) -> dict:
        """The parameters of model A's second run: the same, with another seed."""
        return {**self.params, "seed": self.baseline_seed}

    def record(self) -> dict:
        out = asdict(self)
        out["methods"] = list(self.methods)
        out["baseline_seed"] = self.baseline_seed
        out["interval"] = (
            f"{_pct(self.confidence)} percentile bootstrap over images, {self.resamples} resamples, "
            f"seed {self.seed}"
        )
        return out


@dataclass
class ImageComparison:
    """One image under both models.

    Attributes:
        prediction_a, prediction_b: top-5 (index, label, probability) of each model.
        truth: the true class index from the labels, or None; ``change``: see ``classify_change``.
        crop_a, crop_b: what each model saw (PIL RGB).
        saliency_a, saliency_b: method -> (H, W) float32 map, each for its model's top-1 class.
        agreement: method -> {"spearman", "top_overlap"} of A's and B's map at the stated detail
            ``detail_px`` (the coarsest reproducible detail of the maps), with the raw-pixel
            figures beside them (``spearman_raw``, ``top_overlap_raw``).
        seed_agreement: method -> the same of model A against itself with another seed (averaging
            methods only).
        errors: method -> why a map could not be computed or compared.
    """

    name: str
    image_hash: str
    prediction_a: list
    prediction_b: list
    truth: int | None = None
    truth_label: str | None = None
    change: str = UNCHANGED
    crop_a: object = None
    crop_b: object = None
    saliency_a: dict = field(default_factory=dict)
    saliency_b: dict = field(default_factory=dict)
    agreement: dict = field(default_factory=dict)
    seed_agreement: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)

    @property
    def top_a(self) -> tuple:
        return self.prediction_a[0]

    @property
    def top_b(self) -> tuple:
        return self.prediction_b[0]

    @property
    def changed(self) -> bool:
        return self.change != UNCHANGED

    def lowest_spearman(self) -> float:
        """The smallest A-vs-B rank correlation over the methods (NaN if none was compared)."""
        values = [a["spearman"] for a in self.agreement.values()]
        return min(values) if values else math.nan


@dataclass
class Interval:
    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    def words(self, percent: bool = False) -> str:
        f = _pct if percent else (lambda v: f"{v:.2f}")
        if not math.isfinite(self.mean):
            return "n/a"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f"{f(self.mean)} (one image: no interval)"
        return f"{f(self.mean)} ({_pct(self.confidence)} interval {f(self.low)} to {f(self.high)})"


@dataclass
class MethodAgreement:
    """A method's A-vs-B agreement over images, with the seed baseline beside it.

    ``over``: ``"held"`` (only the images whose prediction held, so both maps explain the same
    class) or ``"all"`` (no image held its prediction). ``verdict``: ``identical``, ``changed``
    (a deterministic method), ``within seed noise`` or ``moved beyond seed noise``; ``none``
    when no image could be compared."""

    method: str
    spearman: Interval
    top_overlap: Interval
    seed_spearman: Interval | None
    seed_top_overlap: Interval | None
    over: str
    verdict: str

    def record(self) -> dict:
        return asdict(self)


def _mean_interval(values, settings: CompareSettings, salt: int) -> Interval:
    from .validate import ValidationSettings, mean_interval

    options = ValidationSettings(
        methods=list(settings.methods),
        seed=settings.seed,
        interval="bootstrap",
        confidence=settings.confidence,
        resamples=int(settings.resamples),
    )
    mean, low, high, n = mean_interval(values, options, np.random.default_rng([settings.seed, salt]))
    return Interval(mean, low, high, n, settings.confidence)


@dataclass
class Comparison:
    """The result of ``compare_models``; ``summary_lines``, ``table`` and ``record`` draw from it."""

    model_a: dict
    model_b: dict
    settings: CompareSettings
    methods: list
    images: list
    total: int
    skipped: list = field(default_factory=list)
    skipped_methods: dict = field(default_factory=dict)
    label_problems: list = field(default_factory=list)
    labelled: bool = False
    maps_not_compared: str | None = None
    cancelled: bool = False
    seconds: float = 0.0
    _agreement: tuple | None = field(default=None, repr=False, compare=False)

    # -- facts
    @property
    def identical_weights(self) -> bool:
        return self.model_a["fingerprint"] == self.model_b["fingerprint"]

    def preprocessing_differences(self) -> list[str]:
        """What the two models do differently before and around the network (their class lists
        are the same, or nothing would be compared)."""
        return [
            f"{k} {self.model_a.get(k)} in A, {self.model_b.get(k)} in B"
            for k in PREPROCESSING
            if self.model_a.get(k) != self.model_b.get(k)
        ]

    def changed(self) -> list[ImageComparison]:
        return [i for i in self.images if i.changed]

    def counts(self) -> dict[str, int]:
        out = {c: 0 for c in CHANGES}
        for item in self.images:
            out[item.change] += 1
        return out

    def accuracy(self) -> tuple[int, int, int]:
        """(right by A, right by B, labelled images)."""
        known = [i for i in self.images if i.truth is not None]
        return (
            sum(i.top_a[0] == i.truth for i in known),
            sum(i.top_b[0] == i.truth for i in known),
            len(known),
        )

    def _pool(self) -> tuple[list[ImageComparison], str]:
        held = [i for i in self.images if not i.changed]
        return (held, "held") if held else (list(self.images), "all")

    def method_agreement(self) -> dict[str, MethodAgreement]:
        """Per method: mean A-vs-B agreement with bootstrap intervals, over the images whose
        prediction held (both maps explain the same class), or over all when none held."""
        key = (len(self.images), tuple(self.methods))
        if self._agreement is None or self._agreement[0] != key:
            self._agreement = (key, self._method_agreement())
        return self._agreement[1]

    def _method_agreement(self) -> dict[str, MethodAgreement]:
        pool, over = self._pool()
        out = {}
        for k, m in enumerate(self.methods):
            rows = [i.agreement[m] for i in pool if m in i.agreement]
            rho = _mean_interval([r["spearman"] for r in rows], self.settings, 2 * k)
            top = _mean_interval([r["top_overlap"] for r in rows], self.settings, 2 * k + 1)
            seed_rho = seed_top = None
            if METHODS[m].averaging:
                seeds = [i.seed_agreement[m] for i in pool if m in i.seed_agreement]
                seed_rho = _mean_interval([r["spearman"] for r in seeds], self.settings, 1000 + 2 * k)
                seed_top = _mean_interval([r["top_overlap"] for r in seeds], self.settings, 1001 + 2 * k)
            out[m] = MethodAgreement(
                m, rho, top, seed_rho, seed_top, over, _verdict(rows, rho, top, seed_rho, seed_top)
            )
        return out

    def most_moved(self, n: int | None = None) -> list[ImageComparison]:
        """The images whose maps moved most (lowest A-vs-B rank correlation over the methods),
        among those whose prediction held (all images when none held); identical maps never count."""
        n = self.settings.most_moved if n is None else n
        pool, _ = self._pool()
        ranked = sorted(
            (i for i in pool if math.isfinite(i.lowest_spearman()) and not _identical(i)),
            key=lambda i: i.lowest_spearman(),
        )
        return ranked[:n]

    # -- words
    def headline_lines(self) -> list[str]:
        """Identical weights, accuracy and changed predictions: the first things a reviewer asks."""
        a, lines, done = self.model_a, [], len(self.images)
        if self.identical_weights:
            differences = self.preprocessing_differences()
            lines.append(
                "The two models have identical weights (the same fingerprint "
                f"{a['fingerprint'][:12]}…)"
                + (
                    f" but differ in {'; '.join(differences)}: differences below come from that."
                    if differences
                    else " and the same preprocessing: no difference is expected."
                )
            )
        if not done:
            return lines
        right_a, right_b, known = self.accuracy()
        if known:
            lines.append(
                f"Accuracy on the {known} labelled image{'s' if known != 1 else ''}: model A "
                f"{right_a} right ({_pct(right_a / known)}), model B {right_b} right "
                f"({_pct(right_b / known)})."
            )
        changed, counts = self.changed(), self.counts()
        if not changed:
            lines.append(f"No prediction changed: both models give the same top class on all {done} images.")
        else:
            ways = [
                (FIXED, "fixed (A wrong, B right)"),
                (BROKEN, "broken (A right, B wrong)"),
                (BOTH_WRONG, "changed between two wrong classes"),
                (CHANGED, "without a label"),
            ]
            detail = ", ".join(f"{counts[k]} {w}" for k, w in ways if counts[k]) if known else ""
            shown = "; ".join(f"{i.name}: {i.top_a[1]} → {i.top_b[1]}" for i in changed[:5])
            more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
            lines.append(
                f"The top class changed on {len(changed)} of {done} images ({_pct(len(changed) / done)})"
                + (f": {detail}" if detail else "")
                + f". Changed: {shown}{more}."
            )
        return lines

    def summary_lines(self) -> list[str]:
        """The comparison in plain words, most important first (numbers with their meaning)."""
        a, b = self.model_a, self.model_b
        lines = [
            f"Model A (accepted): {a['name']}, weights sha256 {a['fingerprint'][:12]}…. "
            f"Model B (candidate): {b['name']}, weights sha256 {b['fingerprint'][:12]}…."
        ]
        done = len(self.images)
        head = f"Compared on {done} image{'s' if done != 1 else ''}"
        if self.cancelled:
            head += f" (cancelled: {done} of {self.total} done)"
        if self.skipped:
            head += f"; {len(self.skipped)} could not be used (listed below)"
        lines.append(head + ".")
        lines += self.headline_lines()
        if not done:
            return lines
        changed = self.changed()
        if self.maps_not_compared:
            lines.append(f"The maps were not compared: {self.maps_not_compared}")
            return lines
        agreement = self.method_agreement()
        for m, s in agreement.items():
            lines.append(_method_sentence(m, s, self.settings))
        if agreement and next(iter(agreement.values())).over == "held" and changed:
            held = done - len(changed)
            lines.append(
                f"Map agreement is measured on the {held} image{'' if held == 1 else 's'} whose "
                "prediction held; "
                f"on the other {len(changed)} the two maps explain different classes."
            )
        moved = self.most_moved()
        if moved:
            lines.append(
                "The maps moved most on: "
                + "; ".join(
                    f"{i.name} (lowest rank correlation {i.lowest_spearman():.2f}, "
                    f"{METHODS[min(i.agreement, key=lambda m: i.agreement[m]['spearman'])].label})"
                    for i in moved
                )
                + "."
            )
        for m, reason in self.skipped_methods.items():
            lines.append(f"{METHODS[m].label} was left out: {reason}")
        return lines

    # -- tables and records
    def table(self) -> pd.DataFrame:
        """One row per image: both predictions, the change, and per method the agreement of the maps."""
        import pandas as pd

        moved = {i.name for i in self.most_moved()}
        rows = []
        for item in self.images:
            row = {
                "image": item.name,
                "true class": item.truth_label or "",
                "model A predicts": item.top_a[1],
                "A probability": round(item.top_a[2], 4),
                "model B predicts": item.top_b[1],
                "B probability": round(item.top_b[2], 4),
                "prediction": item.change,
                "map moved most": item.name in moved,
            }
            for m in self.methods:
                label = METHODS[m].label
                got = item.agreement.get(m, {})
                row[f"{label}: detail (px)"] = got.get("detail_px")
                row[f"{label}: rank correlation"] = _round(got.get("spearman"))
                row[f"{label}: top-10% overlap"] = _round(got.get("top_overlap"))
                row[f"{label}: rank correlation, raw pixels"] = _round(got.get("spearman_raw"))
                row[f"{label}: top-10% overlap, raw pixels"] = _round(got.get("top_overlap_raw"))
                if METHODS[m].averaging:
                    seed = item.seed_agreement.get(m, {})
                    row[f"{label}: A vs A (other seed) rank correlation"] = _round(seed.get("spearman"))
            if item.errors:
                row["errors"] = "; ".join(f"{k}: {v}" for k, v in item.errors.items())
            rows.append(row)
        return pd.DataFrame(rows)

    def methods_table(self) -> pd.DataFrame:
        """One row per method: agreement of A and B, and of A with itself under another seed."""
        import pandas as pd

        rows = []
        for m, s in ({} if self.maps_not_compared else self.method_agreement()).items():
            rows.append(
                {
                    "method": METHODS[m].label,
                    "images": s.spearman.n,
                    "over": s.over,
                    "verdict": s.verdict,
                    "rank correlation A vs B": s.spearman.words(),
                    "top-10% overlap A vs B": s.top_overlap.words(True),
                    "rank correlation A vs A (other seed)": s.seed_spearman.words()
                    if s.seed_spearman
                    else "1.00 (deterministic)",
                    "top-10% overlap A vs A (other seed)": s.seed_top_overlap.words(True)
                    if s.seed_top_overlap
                    else "100 % (deterministic)",
                }
            )
        return pd.DataFrame(rows)

    def record(self) -> dict:
        """Everything as plain data (the CLI's summary JSON): both models with their cards, the
        settings, the counts, per method the intervals, the summary in words, and each image."""
        agreement = {} if self.maps_not_compared else self.method_agreement()
        right_a, right_b, known = self.accuracy()
        return {
            "kind": "comparison",
            "model_a": self.model_a,
            "model_b": self.model_b,
            "identical_weights": self.identical_weights,
            "settings": self.settings.record(),
            "methods": list(self.methods),
            "skipped_methods": dict(self.skipped_methods),
            "images": len(self.images),
            "total": self.total,
            "cancelled": self.cancelled,
            "labelled": known,
            "accuracy": {"a": right_a, "b": right_b, "labelled": known} if known else None,
            "predictions": self.counts(),
            "maps_not_compared": self.maps_not_compared,
            "agreement": {m: s.record() for m, s in agreement.items()},
            "most_moved": [i.name for i in self.most_moved()],
            "summary": self.summary_lines(),
            "skipped": [{"image": n, "reason": r} for n, r in self.skipped],
            "label_problems": list(self.label_problems),
            "per_image": [
                {
                    "image": i.name,
                    "image_hash": i.image_hash,
                    "truth": i.truth,
                    "change": i.change,
                    "prediction_a": [list(p) for p in i.prediction_a[:3]],
                    "prediction_b": [list(p) for p in i.prediction_b[:3]],
                    "agreement": i.agreement,
                    "seed_agreement": i.seed_agreement,
                    "errors": i.errors,
                }
                for i in self.images
            ],
            "seconds": round(self.seconds, 2),
        }

    def report_section(self) -> dict:
        """The comparison as the report builder's ``comparison`` section: paragraphs and tables,
        with model A's fingerprint and card (the report itself describes model B)."""
        card = self.model_a.get("card") or {}
        model_rows = [
            {
                "": "Model A (accepted)",
                "name": self.model_a["name"],
                "fingerprint": self.model_a["fingerprint"],
                "classes": self.model_a["classes"],
                "input_size": self.model_a["input_size"],
                "card": ", ".join(
                    f"{k}={v}" for k, v in card.items() if k != "digest" and not isinstance(v, (dict, list))
                ),
            },
            {
                "": "Model B (candidate)",
                "name": self.model_b["name"],
                "fingerprint": self.model_b["fingerprint"],
                "classes": self.model_b["classes"],
                "input_size": self.model_b["input_size"],
                "card": ", ".join(
                    f"{k}={v}"
                    for k, v in (self.model_b.get("card") or {}).items()
                    if k != "digest" and not isinstance(v, (dict, list))
                ),
            },
        ]
        table = self.table().drop(columns=["errors"], errors="ignore")
        return {
            "headline": " ".join(self.headline_lines()),
            "paragraphs": self.summary_lines(),
            "tables": [
                ("The two models", model_rows),
                ("Map agreement per method", self.methods_table().to_dict(orient="records")),
                ("Every image", table.to_dict(orient="records")),
            ],
        }


def _pct(share: float) -> str:
    return f"{100 * share:.0f} %"


def _round(value) -> float | None:
    return None if value is None else round(float(value), 4)


def _identical(item: ImageComparison) -> bool:
    return all(a["spearman"] >= 1 - 1e-9 and a["top_overlap"] >= 1 for a in item.agreement.values())


def _verdict(rows, rho: Interval, top: Interval, seed_rho, seed_top) -> str:
    if not rows:
        return "none"
    if all(r["spearman"] >= 1 - 1e-9 and r["top_overlap"] >= 1 for r in rows):
        return "identical"
    if seed_rho is None:
        return "changed"
    # moved when A-vs-B agreement lies wholly below A-vs-A's (either measure)
    below = [
        ab.high < aa.low
        for ab, aa in ((rho, seed_rho), (top, seed_top))
        if math.isfinite(ab.high) and math.isfinite(aa.low)
    ]
    if not below:  # one image: no intervals; compare the values
        below = [rho.mean < seed_rho.mean and top.mean < seed_top.mean]
    return "moved beyond seed noise" if any(below) else "within seed noise"


def _method_sentence(method: str, s: MethodAgreement, settings: CompareSettings) -> str:
    label = METHODS[method].label
    if s.verdict == "none":
        return f"{label}: no image had both maps, nothing to compare."
    pct = _pct(settings.top_share)
    text = (
        f"{label}: the maps of A and B have a rank correlation of {s.spearman.words()} and share "
        f"{s.top_overlap.words(True)} of their strongest {pct} of pixels"
    )
    if s.verdict == "identical":
        return text + " — the maps are identical on every image."
    if s.seed_spearman is None:
        return text + (
            f". {label} is deterministic (the same model gives the same map every time), so any "
            "value below 1 is a change between the models."
        )
    text += (
        f". Model A against itself with another seed ({settings.baseline_seed} instead of "
        f"{settings.baseline_seed - 1}): {s.seed_spearman.words()} and {s.seed_top_overlap.words(True)}"
    )
    if s.verdict == "moved beyond seed noise":
        return text + ": the maps moved more than a change of seed moves them."
    return text + ": the difference is within what a change of seed does, so it is not a clear change."


def compare_models(
    model_a,
    model_b,
    images: Iterable,
    settings: CompareSettings,
    labels: dict[str, int] | None = None,
    *,
    label_problems: Sequence[str] = (),
    explain_fn: ExplainFn | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    on_start: Callable[[Comparison], None] | None = None,
) -> Comparison:
    """Run both models over the same images and compare predictions and maps.

    Args:
        model_a, model_b: loaded ``Classifier`` s; A is the accepted version, B the candidate.
        images: paths, or ``(name, source)`` pairs (source: path, bytes or PIL image).
        settings: methods and parameters (``CompareSettings``).
        labels: image name -> true class index (``read_labels``); images without one are only
            ``changed`` / ``unchanged``.
        label_problems: messages from reading the labels, kept with the result.
        explain_fn: passed to the pipeline (the dashboard's cached maps).
        progress: ``progress(maps done, maps in all, label)``.
        cancel: checked before each image; True stops the run, keeping what was done.
        on_start: called with the ``Comparison`` before the first image; it fills in as images
            finish and reads as cancelled until the run ends (the dashboard keeps it, so a run
            stopped from outside still shows what was done).
    Returns:
        ``Comparison``. Images that cannot be read are in ``skipped``; a method that fails on an
        image is in that image's ``errors``.
    Raises:
        ValueError: the class lists differ (the message lists the differing classes), a setting
            is out of range, or no method can run on both models.
    """
    started = time.perf_counter()
    settings.check()
    check_same_classes(model_a, model_b)
    sources = [item if isinstance(item, tuple) else (str(item), item) for item in images]
    methods, skipped_methods = _usable_methods(model_a, model_b, settings)
    grid = map_grid_reason(model_a, model_b)
    averaging = [m for m in methods if METHODS[m].averaging] if grid is None else []
    runs = _explain_runs(
        model_a, model_b, sources, methods, averaging, settings, explain_fn, progress, cancel
    )
    result = Comparison(
        model_a=model_a.describe(),
        model_b=model_b.describe(),
        settings=settings,
        methods=methods,
        images=[],
        total=len(sources),
        skipped_methods=skipped_methods,
        label_problems=list(label_problems),
        labelled=bool(labels),
        maps_not_compared=grid,
        cancelled=True,
    )
    if on_start is not None:
        on_start(result)
    for results in zip(*runs):
        item = _compare_one(results, methods, averaging, labels, model_a.labels, settings, grid)
        if isinstance(item, tuple):
            result.skipped.append(item)
        else:
            result.images.append(item)
        result.seconds = time.perf_counter() - started
    result.cancelled = len(result.images) + len(result.skipped) < len(sources)
    result.seconds = time.perf_counter() - started
    return result


def _usable_methods(model_a, model_b, settings: CompareSettings) -> tuple[list[str], dict[str, str]]:
    """The chosen methods both models can run, and method -> why not for the others."""
    methods, skipped_methods = [], {}
    usable_a, usable_b = available_methods(model_a), available_methods(model_b)
    for m in dict.fromkeys(settings.methods):
        why = [f"model {k} {r}" for k, r in (("A", usable_a.get(m)), ("B", usable_b.get(m))) if r]
        if why:
            skipped_methods[m] = "; ".join(why) + "."
        else:
            methods.append(m)
    if not methods:
        raise ValueError(
            "None of the chosen methods can run on both models: "
            + " ".join(f"{METHODS[m].label}: {r}" for m, r in skipped_methods.items())
        )
    return methods, skipped_methods


def _explain_runs(model_a, model_b, sources, methods, averaging, settings, explain_fn, progress, cancel):
    """The pipeline's runs (lazy, one result per image): model A, model B and, for the averaging
    methods, model A with another seed; ``progress`` counts the maps of all of them together."""
    per_image = 2 * len(methods) + len(averaging)
    total, done = len(sources) * per_image, {}

    def tick(run: str):
        def report(count: int, _total: int, label: str):
            done[run] = count
            if progress is not None:
                progress(sum(done.values()), total, f"{label} ({run})")

        return report

    jobs = [(model_a, methods, settings.params, "model A"), (model_b, methods, settings.params, "model B")]
    if averaging:
        jobs.append((model_a, averaging, settings.baseline_params(), "model A, other seed"))
    return [
        explain_images(
            model, sources, names, params, explain_fn=explain_fn, progress=tick(run), cancel=cancel
        )
        for model, names, params, run in jobs
    ]


def _failure(result) -> str | None:
    if result.failed is not None:
        return result.failed
    if result.crashed is not None:
        message = " ".join(result.crashed["message"].split())
        return f"{result.name}: unexpected {result.crashed['type']}: {message}"
    return None


def _compare_one(results, methods, averaging, labels, class_names, settings: CompareSettings, grid):
    a, b = results[0], results[1]
    seed = results[2] if len(results) > 2 else None
    problem = _failure(a) or _failure(b)
    if problem:
        return (a.name, problem)
    truth = label_for(a.name, labels)
    item = ImageComparison(
        name=a.name,
        image_hash=a.image_hash,
        prediction_a=list(a.prediction),
        prediction_b=list(b.prediction),
        truth=truth,
        truth_label=class_names[truth] if truth is not None else None,
        change=classify_change(a.prediction[0][0], b.prediction[0][0], truth),
        crop_a=a.crop,
        crop_b=b.crop,
    )
    for m in methods:
        for tag, run in (("model A", a), ("model B", b)):
            if m in run.errors or m in run.crashes:
                message = (
                    run.errors.get(m) or f"unexpected {run.crashes[m]['type']}: {run.crashes[m]['message']}"
                )
                item.errors[m] = f"{tag}: {' '.join(message.split())}"
        if (
            seed is not None
            and m in averaging
            and m not in item.errors
            and (m in seed.errors or m in seed.crashes)
        ):
            message = (
                seed.errors.get(m) or f"unexpected {seed.crashes[m]['type']}: {seed.crashes[m]['message']}"
            )
            item.errors[m] = f"model A with another seed: {' '.join(message.split())}"
        if m in a.maps:
            item.saliency_a[m] = a.maps[m].saliency
        if m in b.maps:
            item.saliency_b[m] = b.maps[m].saliency
        if grid is None and m in a.maps and m in b.maps:
            try:
                # one stated detail per method and image: the coarsest reproducible detail of the
                # maps compared (A, B and A's other-seed run), so A vs B and the seed baseline match
                runs = [a, b] + ([seed] if m in averaging and seed is not None and m in seed.maps else [])
                px = stated_detail(
                    *(r.maps[m].diagnostics for r in runs), size=int(min(a.maps[m].saliency.shape))
                )
                item.agreement[m] = agreement(a.maps[m].saliency, b.maps[m].saliency, settings.top_share, px)
                if len(runs) > 2:
                    item.seed_agreement[m] = agreement(
                        a.maps[m].saliency, seed.maps[m].saliency, settings.top_share, px
                    )
            except ValueError as err:
                item.errors[m] = " ".join(str(err).split())
    return item
