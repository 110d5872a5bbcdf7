"""Validate saliency methods over an annotated data set: do the maps point at what experts
marked (localisation), and does the model depend on what they highlight (faithfulness)?

The run streams: for each image it loads the image, predicts, computes each chosen method's
map (``saliency_core.attribute``), scores it against the annotated region and with deletion /
insertion curves, and drops the map. Only the per-image scores, the running sums of the
curves and small thumbnails of the few worst images per method are kept, so a few hundred
images fit in a few hundred MB whatever their number.

Every method is scored beside two maps that ignore the model: a centred Gaussian (centre
bias) and seeded uniform noise (random). A method that does not beat them on a data set is not
showing where the model looks.

The map explained is the predicted class's. Unsigned methods are scored on |saliency|,
signed ones (Integrated Gradients, gradient x input, occlusion) on the positive part.

Example:
    >>> from saliency_core.data import pasted_objects
    >>> result = run_validation(model, pasted_objects(60), ValidationSettings(["gradient", "gradcam"]))
    >>> result.summary_table()          # methods x metrics, mean [95% CI], baselines included
"""

from __future__ import annotations

import heapq
import json
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torchvision.transforms.functional import to_tensor

from ..engine.explain import attribute, available_methods, reduce_channels, versions
from ..engine.methods import METHODS
from ..engine.render import shown_map
from ..pipeline import method_params
from . import faithfulness as fa
from . import localisation as lo
from .annotations import CropGeometry, Dataset, Skipped
from .validation_settings import INTERVALS as INTERVALS
from .validation_settings import MEASURED_ON as MEASURED_ON
from .validation_settings import ValidationSettings, interval_description

MIN_EXAMPLES = 50  # fewer annotated examples: the summary cannot support trust
CENTRE, RANDOM = "centre_baseline", "random_baseline"
BASELINES = {CENTRE: "Centre bias (Gaussian)", RANDOM: "Random map"}
WORST_BY = "relevance_mass"  # the worst images per method: least relevance inside the region
METRICS = {**lo.METRICS, **fa.METRICS}
LOCALISATION = tuple(lo.METRICS)
FAITHFULNESS = tuple(fa.METRICS)


@dataclass
class WorstCase:
    """A thumbnail of one of a method's worst images: the crop, the region and the map."""

    image: str
    method: str
    scores: dict
    crop: np.ndarray  # uint8 (t, t, 3)
    region: np.ndarray  # bool (t, t)
    saliency: np.ndarray  # float32 (t, t), the relevance that was scored
    boxes: list  # (x0, y0, x1, y1, label) in thumbnail pixels
    prediction: tuple  # (index, label, probability) of the top class
    target_label: str


@dataclass
class ValidationResult:
    """The outcome of ``run_validation``.

    Attributes:
        rows: one dict per (image, method or baseline) with every score.
        skipped: everything left out, with the reason.
        settings, model: what was run, on which model (``Classifier.describe()``).
        curves: method -> mean deletion / insertion curve (``fractions``, ``deletion``,
            ``insertion``, ``n``), when faithfulness was computed.
        worst: method -> the worst images (``WorstCase``), worst first.
        images: images scored; seconds: wall time of the run.
    """

    rows: list[dict]
    skipped: list[Skipped]
    settings: ValidationSettings
    model: dict
    description: str = ""
    curves: dict = field(default_factory=dict)
    worst: dict = field(default_factory=dict)
    images: int = 0
    total: int = 0
    seconds: float = 0.0

    @property
    def methods(self) -> list[str]:
        """Methods and baselines in table order."""
        seen = list(dict.fromkeys(r["method"] for r in self.rows))
        return [m for m in self.settings.methods if m in seen] + [b for b in BASELINES if b in seen]

    @property
    def metrics(self) -> list[str]:
        return list(LOCALISATION) + (list(FAITHFULNESS) if self.settings.faithfulness else [])

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.images < MIN_EXAMPLES:
            out.append(
                f"Only {self.images} annotated example(s) were scored; at least {MIN_EXAMPLES} are "
                "needed before these numbers can support trust in a method (the confidence intervals "
                "are wide, and a few images decide the means)."
            )
        return out

    def per_image(self) -> pd.DataFrame:
        """One row per image and method (baselines included), every score as a column."""
        return pd.DataFrame(self.rows)

    def summary(self) -> pd.DataFrame:
        """Long table: method x metric -> n, mean, CI, and the mean paired difference to the
        centre baseline with its CI (positive = better than the baseline for every metric,
        deletion included: its sign is turned)."""
        frame = self.per_image()
        out = []
        if frame.empty:
            return pd.DataFrame(out)
        centre = frame[frame["method"] == CENTRE].set_index("image")
        for method in self.methods:
            part = frame[frame["method"] == method].set_index("image")
            for metric in self.metrics:
                if metric not in part:
                    continue
                label, higher, _ = METRICS[metric]
                values = part[metric].to_numpy(dtype=float)
                # one stream per (method, metric): an interval does not depend on what else is in the table
                rng = np.random.default_rng([self.settings.seed, zlib.crc32(f"{method}/{metric}".encode())])
                mean, low, high, n = mean_interval(values, self.settings, rng)
                row = {
                    "method": method,
                    "method_label": label_of(method),
                    "metric": metric,
                    "metric_label": label,
                    "better": "higher" if higher else "lower",
                    "n": n,
                    "mean": mean,
                    "ci_low": low,
                    "ci_high": high,
                }
                if method != CENTRE and metric in centre:
                    joined = part[[metric]].join(centre[[metric]], rsuffix="_centre", how="inner")
                    diff = (joined[metric] - joined[f"{metric}_centre"]).to_numpy(dtype=float)
                    diff = diff if higher else -diff
                    d_mean, d_low, d_high, _ = mean_interval(diff, self.settings, rng)
                    row.update(
                        gain_vs_centre=d_mean,
                        gain_ci_low=d_low,
                        gain_ci_high=d_high,
                        beats_centre=bool(d_low > 0) if math.isfinite(d_low) else False,
                    )
                out.append(row)
        table = pd.DataFrame(out)
        table["interval"] = interval_description(self.settings)
        return table

    def summary_table(self, digits: int = 3) -> pd.DataFrame:
        """Methods (rows, baselines last) x metrics: ``mean [low, high]``."""
        long = self.summary()
        if long.empty:
            return long
        table = {}
        for method in self.methods:
            part = long[long["method"] == method].set_index("metric")
            row = {"method": label_of(method), "n images": int(part["n"].max())}
            row["measured on"] = self.measured_on(method)
            for metric in self.metrics:
                if metric in part.index:
                    r = part.loc[metric]
                    row[METRICS[metric][0]] = _cell(r["mean"], r["ci_low"], r["ci_high"], digits)
            table[method] = row
        return pd.DataFrame(list(table.values()))

    def measured_on(self, method: str) -> str:
        """What a method's scores were computed on, in words: "raw map", or "as drawn" with the
        detail (Gaussian sigma, px) its maps were drawn at over the images."""
        if self.settings.measure_on == "raw":
            return "raw map"
        rows = [r for r in self.rows if r["method"] == method]
        unsettled = sum(bool(r.get("measured_unsettled")) for r in rows)
        px = sorted({float(r.get("measured_px") or 0.0) for r in rows if not r.get("measured_unsettled")})
        if unsettled == len(rows) and rows:
            return "as drawn: raw, reproducible at no detail"
        words = "as drawn: full detail" if px in ([], [0.0]) else f"as drawn: {px[0]:g}-pixel detail"
        if len(px) > 1:
            words = f"as drawn: {px[0]:g} to {px[-1]:g}-pixel detail"
        return words + (f" (raw on {unsettled} image(s) reproducible at no detail)" if unsettled else "")

    def skipped_table(self) -> pd.DataFrame:
        return pd.DataFrame([s.record() for s in self.skipped], columns=["item", "reason"])

    def record(self) -> dict:
        """JSON-ready: settings, model, timing, summary and skipped items."""
        summary = self.summary()
        return {
            "description": self.description,
            "model": self.model,
            "settings": self.settings.record(self.model.get("input_size")),
            "images_scored": self.images,
            "images_given": self.total,
            "seconds": round(self.seconds, 2),
            "seconds_per_image": round(self.seconds / max(self.images, 1), 3),
            "warnings": self.warnings,
            "skipped": [s.record() for s in self.skipped],
            "summary": json.loads(summary.to_json(orient="records")) if not summary.empty else [],
            "versions": versions(),
        }


def _cell(mean: float, low: float, high: float, digits: int) -> str:
    if not math.isfinite(mean):
        return "n/a"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def label_of(method: str) -> str:
    return BASELINES.get(method) or (METHODS[method].label if method in METHODS else method)


def mean_interval(
    values, settings: ValidationSettings, rng: np.random.Generator | None = None
) -> tuple[float, float, float, int]:
    """Mean and confidence interval of ``values`` (NaNs left out).

    Returns:
        (mean, low, high, n); low/high are NaN with fewer than two values.

    Example:
        >>> mean_interval([0, 1, 1, 1], ValidationSettings(["gradient"], interval="t"))
        (0.75, -0.04..., 1.54..., 4)
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(v.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    alpha = 1.0 - settings.confidence
    if settings.interval == "t":
        from scipy import stats

        half = float(stats.t.ppf(1 - alpha / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
        return mean, mean - half, mean + half, n
    rng = rng if rng is not None else np.random.default_rng(settings.seed)
    means = v[rng.integers(0, n, size=(settings.resamples, n))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return mean, float(low), float(high), n


def _thumb(array: np.ndarray, size: int, kind: str) -> np.ndarray:
    if kind == "rgb":
        # a one-channel model's grey crop becomes grey RGB: thumbnails are (t, t, 3)
        return np.asarray(
            Image.fromarray(array).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        )
    if kind == "mask":
        return (
            np.asarray(
                Image.fromarray(array.astype(np.uint8) * 255).resize((size, size), Image.Resampling.NEAREST)
            )
            > 127
        )
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(array, dtype=np.float32)).resize(
            (size, size), Image.Resampling.BOX
        ),
        dtype=np.float32,
    )


@dataclass
class RunPlan:
    """What every image of a run shares (``plan_run``): the methods that can run on the model,
    those that cannot (as ``Skipped``), the centre-bias map and the deletion step."""

    methods: list[str]
    skipped: list[Skipped]
    centre: np.ndarray
    step: int
    geometry: CropGeometry


def plan_run(model, settings: ValidationSettings) -> RunPlan:
    """Check ``settings`` and prepare what ``score_image`` needs for every image.

    Raises:
        ValueError: bad settings, or none of the methods can run on this model.
    """
    settings.check()
    usable = available_methods(model)
    methods, skipped = [], []
    for m in settings.methods:
        if usable.get(m):
            skipped.append(
                Skipped(f"method {m}", f"{METHODS[m].label} cannot run on this model: {usable[m]}.")
            )
        else:
            methods.append(m)
    if not methods:
        raise ValueError(
            "None of the chosen methods can run on this model: "
            + "; ".join(f"{m}: {usable[m]}" for m in settings.methods)
        )
    size = model.input_size
    return RunPlan(
        methods=methods,
        skipped=skipped,
        centre=lo.centre_bias_map(size, sigma=settings.centre_sigma),
        step=settings.step_pixels(size),
        geometry=CropGeometry.of(model),
    )


@dataclass
class ImageScores:
    """One image's part of a run (``score_image``).

    Attributes:
        index, name: the image's place in the data set and its name.
        rows: one dict per method and baseline, in table order.
        skipped: what was left out for this image (the image itself, a box, a method), with the reason.
        curves: method -> ``{"fractions", "deletion", "insertion"}`` float64 arrays, when
            faithfulness was computed.
        scored: whether the image was scored at all.
    """

    index: int
    name: str
    rows: list[dict] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    curves: dict = field(default_factory=dict)
    scored: bool = False

    def record(self) -> dict:
        """JSON-ready; ``from_record`` gives back exactly the same values (floats included)."""
        return {
            "index": self.index,
            "name": self.name,
            "scored": self.scored,
            "rows": self.rows,
            "skipped": [s.record() for s in self.skipped],
            "curves": {
                m: {k: np.asarray(v, dtype=np.float64).tolist() for k, v in c.items()}
                for m, c in self.curves.items()
            },
        }

    @classmethod
    def from_record(cls, record: dict) -> ImageScores:
        return cls(
            index=int(record["index"]),
            name=record["name"],
            rows=list(record["rows"]),
            skipped=[Skipped(s["item"], s["reason"]) for s in record["skipped"]],
            curves={
                m: {k: np.asarray(v, dtype=np.float64) for k, v in c.items()}
                for m, c in record["curves"].items()
            },
            scored=bool(record["scored"]),
        )


def score_image(
    model, item, index: int, settings: ValidationSettings, plan: RunPlan, keep: Callable | None = None
) -> ImageScores:
    """Score every method of ``plan`` and the two baselines on one annotated image.

    The local run and the Ray run (``saliency_core.distributed``) both call this, so an image's
    rows depend only on the image, its place ``index`` in the data set (the random baseline's
    seed) and the settings, never on which worker or batch computed it.

    Args:
        model: a ``Classifier``.
        item: an ``annotations.Item``.
        index: the item's place in the data set.
        settings: the run's ``ValidationSettings``; plan: ``plan_run(model, settings)``.
        keep: ``keep(method, row, crop, region, saliency, signed, prediction, target_label)``
            after each row, for thumbnails of the worst images (the local run).
    Returns:
        ``ImageScores``; problems with the image or one method are in its ``skipped``.

    Example:
        >>> plan = plan_run(model, settings)
        >>> score_image(model, dataset.items[0], 0, settings, plan).rows[0]["pointing_game"]
        1.0
    """
    out = ImageScores(index=index, name=item.name)
    try:
        image = item.image()
        region = item.annotation.region(image.size, plan.geometry)
    except ValueError as err:
        out.skipped.append(Skipped(item.name, str(err).removeprefix(item.name + ": ")))
        return out
    out.skipped += region.dropped
    device = next((p.device for p in model.network.parameters()), torch.device("cpu"))
    crop = model.crop(image)
    x = to_tensor(crop).unsqueeze(0).to(device)
    prediction = model.predict(x, k=5)
    target = prediction[0][0]
    base = _base_row(model, item, x, prediction, region)
    backgrounds, ends = _faithfulness_ends(model, x, target, settings)
    noise = lo.random_map(model.input_size, rng=np.random.default_rng([settings.seed, index]))
    maps = [(m, None) for m in plan.methods] + [(CENTRE, plan.centre), (RANDOM, noise)]
    for method, fixed in maps:
        tick = time.perf_counter()
        signed = bool(METHODS[method].signed) if method in METHODS else False
        try:
            saliency, measured_px, unsettled = (
                _saliency(model, x, target, method, settings) if fixed is None else (fixed, 0.0, False)
            )
            scores, curves = _scores(
                model, x, saliency, target, signed, region, settings, plan, backgrounds, ends
            )
            if curves is not None:
                out.curves[method] = curves
        except Exception as err:  # one failing method must not stop the run (ValueError: a known limit)
            failed = f"the method failed ({type(err).__name__}: {err})."
            why = str(err) if isinstance(err, ValueError) else failed
            out.skipped.append(Skipped(f"{item.name} [{label_of(method)}]", why))
            continue
        row = {
            "image": item.name,
            "method": method,
            "method_label": label_of(method),
            "signed": signed,
            **{k: v for k, v in base.items() if k != "image"},
            "top1_label": prediction[0][1],
            "top1_probability": prediction[0][2],
            **scores,
            "measured_px": measured_px,
            "measured_unsettled": unsettled,
            "seconds": time.perf_counter() - tick,
            "notes": "; ".join(region.notes),
        }
        out.rows.append(row)
        if keep is not None:
            keep(method, row, crop, region, saliency, signed, prediction, model.labels[target])
        del saliency
    out.scored = True
    return out


def _base_row(model, item, x: torch.Tensor, prediction: list, region) -> dict:
    """What every row of one image shares: the image, its predicted class and its region."""
    target = prediction[0][0]
    base = {
        "image": item.name,
        "target": target,
        "target_label": model.labels[target],
        "target_probability": prediction[0][2],
        "annotation": item.annotation.kind,
        "region_fraction": region.fraction,
    }
    if getattr(model, "multilabel", False):  # a multi-label prediction is a set; maps explain its top class
        base["predicted"] = "; ".join(
            label for _, label, _ in model.predicted_set(probabilities=model.probabilities(x)[0])
        )
    return base


def _faithfulness_ends(
    model, x: torch.Tensor, target: int, settings: ValidationSettings
) -> tuple[dict, dict]:
    """The replacement images of the deletion and insertion curves, and the curves' first and last
    points, which are the same for every map of this image: computed once (none without faithfulness)."""
    backgrounds, ends = {}, {}
    if settings.faithfulness:
        for r in {settings.deletion_replacement, settings.insertion_replacement}:
            backgrounds[r] = fa.replacement_image(x, r)
        replaced = {mode: backgrounds[r] for mode, r in _replacements(settings).items()}
        try:
            ends = fa.end_scores(model, x, target, replaced)
        except ValueError:
            ends = {}  # each method's curves then say what is wrong, one skipped item each
    return backgrounds, ends


def _replacements(settings: ValidationSettings) -> dict[str, str]:
    return {"deletion": settings.deletion_replacement, "insertion": settings.insertion_replacement}


def _saliency(
    model, x: torch.Tensor, target: int, method: str, settings: ValidationSettings
) -> tuple[np.ndarray, float, bool]:
    """The method's (H, W) map of ``target`` to score, its detail (Gaussian sigma, px) and whether
    it is an averaged map reproducible at no detail (then drawn raw): the raw map, or with
    ``measure_on="shown"`` the map as drawn."""
    attribution, used, diagnostics = attribute(
        model, x, torch.tensor([target], device=x.device), method, **method_params(method, settings.params)
    )
    raw = reduce_channels(attribution, METHODS[method].reduction)[0].float().cpu().numpy()
    if settings.measure_on == "raw":
        return raw, 0.0, False
    shown = shown_map(raw, method, diagnostics)
    return shown.saliency, shown.detail_px, shown.unsettled


def _scores(
    model, x, saliency, target, signed, region, settings, plan, backgrounds, ends
) -> tuple[dict, dict | None]:
    """Localisation scores of one map and, with faithfulness, its deletion and insertion areas
    (added to the scores) and curves (``{"fractions", "deletion", "insertion"}``; else None)."""
    scores = lo.localisation_scores(
        saliency, region.mask, signed=signed, tolerance=settings.tolerance, top_k=settings.top_k
    )
    if not settings.faithfulness:
        return scores, None
    replacements = _replacements(settings)
    curves = fa.causal_curves(
        model,
        x,
        saliency,
        target,
        ("deletion", "insertion"),
        step=plan.step,
        replacements=replacements,
        signed=signed,
        seed=settings.seed,
        batch_size=settings.batch_size,
        backgrounds={m: backgrounds[r] for m, r in replacements.items()},
        end_scores=ends,
    )
    for mode, c in curves.items():
        scores[f"{mode}_auc"] = c.auc
    return scores, {
        "fractions": curves["deletion"].fractions,
        "deletion": curves["deletion"].scores,
        "insertion": curves["insertion"].scores,
    }


class RunTotals:
    """Adds up ``ImageScores`` in data set order into a ``ValidationResult``: rows, skipped
    items and the running sums of the curves (the same order gives the same floats)."""

    def __init__(self, skipped: Sequence[Skipped]):
        self.rows: list[dict] = []
        self.skipped: list[Skipped] = list(skipped)
        self.sums: dict = {}
        self.scored = 0

    def add(self, part: ImageScores) -> None:
        self.skipped += part.skipped
        self.rows += part.rows
        for method, c in part.curves.items():
            acc = self.sums.setdefault(
                method, {"fractions": c["fractions"], "n": 0, "deletion": 0.0, "insertion": 0.0}
            )
            acc["n"] += 1
            acc["deletion"] = acc["deletion"] + c["deletion"]
            acc["insertion"] = acc["insertion"] + c["insertion"]
        self.scored += bool(part.scored)

    def result(
        self,
        settings: ValidationSettings,
        model,
        description: str,
        total: int,
        started: float,
        worst: dict | None = None,
    ) -> ValidationResult:
        curves = {
            m: {
                "fractions": a["fractions"],
                "deletion": a["deletion"] / a["n"],
                "insertion": a["insertion"] / a["n"],
                "n": a["n"],
            }
            for m, a in self.sums.items()
        }
        return ValidationResult(
            rows=self.rows,
            skipped=self.skipped,
            settings=settings,
            model=model.describe(),
            description=description,
            curves=curves,
            worst=worst or {},
            images=self.scored,
            total=total,
            seconds=time.perf_counter() - started,
        )


class ValidationRun:
    """A validation that can stop after any image and go on later (the page's Cancel keeps what
    was done): the plan, the scores so far, the worst-image thumbnails and the time spent.

    Example:
        >>> run = ValidationRun(model, demo_dataset(), settings)
        >>> run.step(); run.done, run.total
        (1, 5)
        >>> run.result().images          # the images scored so far
        1
    """

    def __init__(self, model, dataset: Dataset, settings: ValidationSettings):
        settings.check()
        self.model, self.dataset, self.settings = model, dataset, settings
        self.plan = plan_run(model, settings)
        self.totals = RunTotals(list(dataset.skipped) + self.plan.skipped)
        self.heaps: dict = {m: [] for m in self.plan.methods}
        self.done, self.total, self.seconds = 0, len(dataset.items), 0.0

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def step(self) -> None:
        """Score the next image; the run's state changes only once it is complete."""
        index, item = self.done, self.dataset.items[self.done]
        tick = time.perf_counter()
        heaps = {m: list(h) for m, h in self.heaps.items()}

        def keep(method, row, crop, region, saliency, signed, prediction, target_label):
            if method in heaps:
                _keep_worst(
                    heaps[method],
                    self.settings,
                    row,
                    crop,
                    region,
                    lo.relevance(saliency, signed),
                    prediction,
                    target_label,
                    index,
                )

        part = score_image(self.model, item, index, self.settings, self.plan, keep=keep)
        self.totals.add(part)
        self.heaps, self.done = heaps, index + 1
        self.seconds += time.perf_counter() - tick

    def result(self) -> ValidationResult:
        """The result of the images scored so far (all of them once ``finished``)."""
        worst = {m: [w for _, _, w in sorted(h, key=lambda e: (-e[0], -e[1]))] for m, h in self.heaps.items()}
        return self.totals.result(
            self.settings,
            self.model,
            self.dataset.description,
            self.total,
            time.perf_counter() - self.seconds,
            worst=worst,
        )


def run_validation(
    model,
    dataset: Dataset,
    settings: ValidationSettings,
    progress: Callable[[int, int, float | None], None] | None = None,
    run: ValidationRun | None = None,
) -> ValidationResult:
    """Score each method (and the two baselines) on every annotated image of ``dataset``.

    Args:
        model: a ``Classifier``.
        dataset: annotated images (``saliency_core.annotations`` / ``saliency_core.data``).
        settings: methods, parameters and measures (``ValidationSettings``).
        progress: ``progress(done, total, eta_seconds)`` after each image (eta None at first).
        run: a ``ValidationRun`` of the same model, data set and settings to go on with (it is
            updated after each image, so a caller interrupted in ``progress`` keeps what was done).
    Returns:
        ``ValidationResult``: per-image rows, summary with confidence intervals, skipped items,
        mean curves and thumbnails of the worst images.
    Raises:
        ValueError: bad settings, or none of the methods can run on this model. Problems with
            single images, annotations or methods are in ``result.skipped`` instead.

    Example:
        >>> r = run_validation(model, demo_dataset(), ValidationSettings(["gradient"], faithfulness=False))
        >>> r.per_image().columns[:4].tolist()
        ['image', 'method', 'method_label', 'signed']
    """
    run = run if run is not None else ValidationRun(model, dataset, settings)
    if progress:
        progress(run.done, run.total, None)
    while not run.finished:
        run.step()
        if progress:
            progress(run.done, run.total, run.seconds / run.done * (run.total - run.done))
    return run.result()


def _keep_worst(
    heap: list,
    settings: ValidationSettings,
    row: dict,
    crop,
    region,
    relevance: np.ndarray,
    prediction,
    target_label: str,
    index: int,
) -> None:
    """Keep the ``settings.worst`` rows with the least relevance mass (NaN = worst), with
    thumbnails; a min-heap on the negated badness drops the best of the kept ones."""
    if settings.worst <= 0:
        return
    value = row.get(WORST_BY, math.nan)
    badness = math.inf if not math.isfinite(value) else -value
    if len(heap) >= settings.worst and badness <= heap[0][0]:
        return
    t = settings.thumbnail
    f = t / region.mask.shape[0]
    case = WorstCase(
        image=row["image"],
        method=row["method"],
        scores={k: row[k] for k in METRICS if k in row},
        crop=_thumb(np.asarray(crop), t, "rgb"),
        region=_thumb(region.mask, t, "mask"),
        saliency=_thumb(relevance, t, "map"),
        boxes=[(x0 * f, y0 * f, x1 * f, y1 * f, label) for x0, y0, x1, y1, label in region.boxes],
        prediction=tuple(prediction[0]),
        target_label=target_label,
    )
    entry = (badness, -index, case)
    if len(heap) < settings.worst:
        heapq.heappush(heap, entry)
    else:
        heapq.heapreplace(heap, entry)
