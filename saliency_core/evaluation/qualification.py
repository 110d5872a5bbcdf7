"""Qualify a model's saliency methods on an annotated data set before reviewers rely on them.

One run, one model, one annotated set. Per method it measures, each with a stated pass rule
(``QualificationRules``; the defaults come from the papers named below, a QA lead may tighten
them, and the record keeps the rules used):

- **Pointing game** (Zhang et al. 2016) and **relevance mass** (Arras et al. 2022) on every
  image (``validate.score_image``): the paired gain over the centre-bias map and over the random
  map must lie above ``localisation_margin`` (the whole confidence interval).
- **Deletion / insertion** (Petsiuk et al. 2018) on every image: the paired gain over the random
  map (lower deletion area, higher insertion area) must lie above ``faithfulness_margin``.
- **Randomisation sanity check** (Adebayo et al. 2018, ``sanity.sanity_check``, cascading over
  the top half of the layer blocks) on a sample: the rank correlation of |map| with the trained
  model's map must fall below ``sanity_threshold`` on every sampled image.
- **Stability** (Alvarez-Melis & Jaakkola 2018, ``stability.stability_check``) on a sample: the
  mean rank correlation of |map| under small input changes must be at least
  ``stability_min_spearman`` (the whole interval).
- **Reproducibility** of averaging methods (SmoothGrad family, RISE) on a sample, through the
  pipeline: the reproducible detail recorded with each map (``engine.detail.reproducible_px``)
  must be at most ``max_reproducible_px`` (px at a 224 px input, scaled); exact methods give
  the same map for the same input and pass.

A criterion's verdict is ``pass``, ``fail``, ``undecided`` (its interval straddles the rule, or
the figure was not recorded) or ``n/a``. A method is **not qualified** when any criterion fails
(the failing criteria in words), **provisional** with fewer than ``min_images`` annotated images
scored or any criterion undecided (never qualified then), else **qualified**.

The run goes image by image and sample by sample; each finished unit is appended to a results
file (JSON lines) so a stopped run (``cancel``) resumes where it stopped with the same model,
data set, settings and software.

Example:
    >>> from saliency_core.evaluation.data import pasted_objects
    >>> q = qualify(model, pasted_objects(60), QualificationSettings(["gradient", "gradcam"]))
    >>> q.verdicts["gradcam"]["verdict"]
    'qualified'
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..engine.detail import reproducible_px
from ..engine.explain import versions
from ..engine.images import image_hash
from ..engine.methods import METHODS
from . import sanity as sa
from . import stability as st
from .annotations import Dataset, Skipped

# the pass rules and verdicts live in qualification_rules; callers import them from here too
from .qualification_rules import (
    COLUMNS,
    CRITERIA,  # noqa: F401
    VERDICTS,  # noqa: F401
    faithfulness_rows,  # noqa: F401
    localisation_rows,  # noqa: F401
    overall,  # noqa: F401
    reproducibility_row,  # noqa: F401
    sanity_row,  # noqa: F401
    scorecard,
    stability_row,  # noqa: F401
)
from .validate import (
    MIN_EXAMPLES,
    ImageScores,
    RunTotals,
    ValidationSettings,
    label_of,
    plan_run,
    score_image,
)

SCHEMA = 1


@dataclass(frozen=True)
class QualificationRules:
    """The pass rules; defaults from the literature. A QA lead may tighten them (the record keeps
    the rules a scorecard was judged by).

    Attributes:
        min_images: annotated images needed before a method can be qualified (50).
        localisation_margin: the pointing game's and relevance mass's paired gain over the centre
            and random baselines must exceed this over its whole interval (0: beat them).
        faithfulness_margin: deletion / insertion area's paired gain over the random map (0).
        sanity_threshold: rank correlation of |map| with the trained model's map after the top
            half of the blocks is re-initialised; below it on every sampled image (0.5).
        stability_min_spearman: mean rank correlation of |map| under small input changes (0.5).
        max_reproducible_px: coarsest reproducible detail accepted for an averaged map, Gaussian
            sigma in px at a 224 px input (4 px: two SmoothGrad-50 runs agree at 0.94 there).
        confidence: of every interval (0.95).
    """

    min_images: int = MIN_EXAMPLES
    localisation_margin: float = 0.0
    faithfulness_margin: float = 0.0
    sanity_threshold: float = sa.DEFAULT_THRESHOLD
    stability_min_spearman: float = st.StabilityThresholds().min_spearman
    max_reproducible_px: float = 4.0
    confidence: float = 0.95

    def check(self) -> None:
        """ValueError in plain words for a rule out of range."""
        if isinstance(self.min_images, bool) or not isinstance(self.min_images, int) or self.min_images < 1:
            raise ValueError(
                f"The minimum number of images must be a whole number of 1 or more; got {self.min_images}."
            )
        ranges = {
            "localisation_margin": (-1.0, 1.0),
            "faithfulness_margin": (-1.0, 1.0),
            "sanity_threshold": (0.0, 1.0),
            "stability_min_spearman": (0.0, 1.0),
            "max_reproducible_px": (0.0, 64.0),
            "confidence": (0.5, 0.999),
        }
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(
                    f"The rule {name.replace('_', ' ')} must be between {low} and {high}; got {value}."
                )

    def record(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict) -> QualificationRules:
        rules = cls(**{k: record[k] for k in asdict(cls()) if k in record})
        rules.check()
        return rules


@dataclass
class QualificationSettings:
    """What a qualification run computes; recorded with its scorecard.

    Attributes:
        methods: registry names to qualify.
        params: method parameters (each method takes its own; ``validate.ValidationSettings``).
        rules: the pass rules.
        step_fraction: deletion / insertion: share of pixels changed per step.
        sanity_images, stability_images, reproducibility_images: images sampled (evenly over
            the set) for the sanity check, the stability check and the reproducible detail.
        stability_variants: small changes per sampled image (one of each kind at 6).
        seed: random baseline, bootstrap, sanity re-initialisation, stability noise.
        interval: ``"bootstrap"`` or ``"t"``; resamples: bootstrap resamples.
    """

    methods: Sequence[str]
    params: dict = field(default_factory=dict)
    rules: QualificationRules = field(default_factory=QualificationRules)
    step_fraction: float = 0.1
    sanity_images: int = 3
    stability_images: int = 5
    stability_variants: int = 6
    reproducibility_images: int = 3
    seed: int = 0
    interval: str = "bootstrap"
    resamples: int = 2000

    def validation(self) -> ValidationSettings:
        """The localisation / faithfulness part as ``validate`` runs it."""
        return ValidationSettings(
            methods=list(self.methods),
            params=dict(self.params),
            step_fraction=self.step_fraction,
            seed=self.seed,
            interval=self.interval,
            confidence=self.rules.confidence,
            resamples=self.resamples,
            worst=0,
        )

    def check(self) -> None:
        self.rules.check()
        self.validation().check()
        for name in ("sanity_images", "stability_images", "stability_variants", "reproducibility_images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
                raise ValueError(
                    f"{name.replace('_', ' ').capitalize()} must be a whole number from 0 to 100; "
                    f"got {value}."
                )

    def record(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "rules"}
        out["methods"] = list(self.methods)
        out["params"] = {k: self.params[k] for k in sorted(self.params)}
        return out


def dataset_fingerprint(dataset: Dataset) -> str:
    """sha256 over every item's name, annotation (boxes, mask) and decoded pixels: the same set
    gives the same fingerprint wherever it is read from. Items that cannot be read count by name."""
    h = hashlib.sha256(f"{len(dataset.items)}".encode())
    for item in dataset.items:
        a = item.annotation
        boxes = [[b.x_min, b.y_min, b.x_max, b.y_max, b.label] for b in a.boxes]
        h.update(json.dumps([item.name, boxes, list(a.size or ())]).encode())
        if a.mask is not None:
            h.update(np.packbits(np.asarray(a.mask, dtype=bool)).tobytes() + str(a.mask.shape).encode())
        try:
            h.update(image_hash(item.image()).encode())
        except ValueError as err:
            h.update(f"unreadable: {err}".encode())
    return h.hexdigest()


def sample(count: int, wanted: int) -> list[int]:
    """``wanted`` indices spread evenly over ``range(count)``, first and last included."""
    if count <= 0 or wanted <= 0:
        return []
    return sorted({int(round(v)) for v in np.linspace(0, count - 1, min(wanted, count))})


# ---- the result ---------------------------------------------------------------------------------
@dataclass
class Qualification:
    """A scorecard for one model on one annotated set.

    Attributes:
        rows: scorecard rows (``COLUMNS``), per method and criterion.
        verdicts: method -> ``{"verdict", "reason", "failing"}``.
        model, dataset: ``Classifier.describe()``; ``{"fingerprint", "description", "images"}``.
        settings, rules, versions: what was run, the rules judged by, the software.
        images: annotated images scored; complete: every unit ran (False after a Cancel).
        skipped: what was left out, with the reason; seconds: time spent computing.
    """

    rows: list[dict]
    verdicts: dict
    model: dict
    dataset: dict
    settings: dict
    rules: dict
    versions: dict
    images: int
    complete: bool = True
    skipped: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def model_fingerprint(self) -> str:
        return self.model.get("fingerprint", "")

    @property
    def qualified(self) -> list[str]:
        return [m for m, v in self.verdicts.items() if v["verdict"] == "qualified"]

    def table(self) -> pd.DataFrame:
        """The scorecard: one row per method and criterion, then each method's overall verdict."""
        rows = list(self.rows)
        for m, v in self.verdicts.items():
            rows.append(
                {
                    "method": m,
                    "method_label": label_of(m),
                    "criterion": "overall",
                    "criterion_label": "Overall",
                    "figure": None,
                    "low": None,
                    "high": None,
                    "rule": "every criterion passes",
                    "verdict": v["verdict"],
                    "detail": v["reason"],
                }
            )
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def record(self) -> dict:
        """JSON-ready; ``from_record`` gives it back."""
        return {
            "schema": SCHEMA,
            "model": self.model,
            "dataset": self.dataset,
            "settings": self.settings,
            "rules": self.rules,
            "versions": self.versions,
            "images": self.images,
            "complete": self.complete,
            "seconds": round(self.seconds, 2),
            "skipped": [s.record() if isinstance(s, Skipped) else s for s in self.skipped],
            "scorecard": self.rows,
            "verdicts": self.verdicts,
        }

    @classmethod
    def from_record(cls, record: dict) -> Qualification:
        return cls(
            rows=list(record["scorecard"]),
            verdicts=dict(record["verdicts"]),
            model=dict(record["model"]),
            dataset=dict(record["dataset"]),
            settings=dict(record["settings"]),
            rules=dict(record["rules"]),
            versions=dict(record["versions"]),
            images=int(record["images"]),
            complete=bool(record.get("complete", True)),
            skipped=list(record.get("skipped", [])),
            seconds=float(record.get("seconds", 0.0)),
        )


# ---- the run ------------------------------------------------------------------------------------
def _cancelled(cancel) -> bool:
    if cancel is None:
        return False
    is_set = getattr(cancel, "is_set", None)
    return bool(is_set() if callable(is_set) else cancel())


def run_key(model, fingerprint: str, settings: QualificationSettings) -> str:
    """What a results file belongs to: model, data set, settings and software. Not the rules: they
    judge the units' figures, so a run re-judged by tightened rules reuses every unit."""
    text = json.dumps(
        [model.fingerprint, fingerprint, settings.record(), versions()],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


class QualificationRun:
    """A qualification that can stop after any unit (an image, or a sampled check) and go on later.

    Units: every annotated image (localisation, faithfulness), then the sampled images of the
    sanity check, the stability check and the reproducible detail. With ``results`` (a file
    path) each finished unit is appended to it as one JSON line; a new run with the same key
    (``run_key``) reads them back instead of computing them again.

    Example:
        >>> run = QualificationRun(model, pasted_objects(60), settings, results="q.jsonl")
        >>> run.run(progress=print, cancel=stop_event)      # stop_event.set() stops after a unit
        >>> run.result().verdicts
    """

    def __init__(
        self, model, dataset: Dataset, settings: QualificationSettings, results=None, fingerprint=None
    ):
        settings.check()
        self.model, self.dataset, self.settings = model, dataset, settings
        self.validation = settings.validation()
        self.plan = plan_run(model, self.validation)
        self.fingerprint = fingerprint or dataset_fingerprint(dataset)
        self.key = run_key(model, self.fingerprint, settings)
        n = len(dataset.items)
        averaging = [m for m in self.plan.methods if METHODS[m].averaging]
        self.units = [("image", i) for i in range(n)]
        self.units += [("sanity", i) for i in sample(n, settings.sanity_images)]
        self.units += [("stability", i) for i in sample(n, settings.stability_images)]
        if averaging:
            self.units += [("reproducibility", i) for i in sample(n, settings.reproducibility_images)]
        self.averaging = averaging
        self.done: dict[tuple[str, int], dict] = {}
        self.seconds = 0.0
        self.results = Path(results) if results else None
        if self.results is not None:
            self._resume()

    @property
    def total(self) -> int:
        return len(self.units)

    @property
    def finished(self) -> bool:
        return all(u in self.done for u in self.units)

    def _resume(self) -> None:
        lines = self.results.read_text(encoding="utf-8").splitlines() if self.results.is_file() else []
        try:
            header = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            header = {}
        if header.get("key") != self.key:  # another model, set, setting or software: start again
            self.results.parent.mkdir(parents=True, exist_ok=True)
            self.results.write_text(json.dumps({"key": self.key, "schema": SCHEMA}) + "\n", encoding="utf-8")
            return
        for line in lines[1:]:
            try:
                entry = json.loads(line)
                unit = (str(entry["kind"]), int(entry["index"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line cut short when the process stopped: computed again
            if unit in self.units:
                self.done[unit] = entry["value"]
                self.seconds += float(entry.get("seconds", 0.0))

    def _keep(self, unit, value: dict, seconds: float) -> None:
        self.done[unit] = value
        self.seconds += seconds
        if self.results is not None:
            line = json.dumps({"kind": unit[0], "index": unit[1], "seconds": seconds, "value": value})
            with open(self.results, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())

    def step(self, unit) -> dict:
        """Compute one unit (kept in ``done`` and the results file)."""
        kind, index = unit
        item = self.dataset.items[index]
        tick = time.perf_counter()
        if kind == "image":
            value = score_image(self.model, item, index, self.validation, self.plan).record()
        elif kind == "sanity":
            value = self._sanity(item)
        elif kind == "stability":
            value = self._stability(item)
        else:
            value = self._reproducibility(item)
        self._keep(unit, value, time.perf_counter() - tick)
        return value

    def _sanity(self, item) -> dict:
        try:
            blocks = sa.layer_blocks(self.model)
            depth = sa.default_depth(blocks)
            result = sa.sanity_check(
                self.model,
                item.image(),
                self.plan.methods,
                depth=depth,
                blocks=blocks,
                params=self.settings.params,
                threshold=self.settings.rules.sanity_threshold,
                seed=self.settings.seed,
                image_name=item.name,
                maps_at=sa.checkpoints(depth, 4),
            )
        except ValueError as err:
            return {"scores": {}, "errors": {"all": str(err)}}
        return {
            "scores": {m: v.final_similarity for m, v in result.verdicts().items()},
            "errors": result.errors,
        }

    def _stability(self, item) -> dict:
        thresholds = st.StabilityThresholds(min_spearman=self.settings.rules.stability_min_spearman)
        try:
            result = st.stability_check(
                self.model,
                item.image(),
                self.plan.methods,
                count=self.settings.stability_variants,
                perturbation=st.Perturbation(seed=self.settings.seed),
                thresholds=thresholds,
                params=self.settings.params,
            )
        except ValueError as err:
            return {"scores": {}, "errors": {"all": str(err)}}
        scores = {m: s.mean["spearman_abs"] for m, s in result.summary.items() if s.mean}
        return {"scores": scores, "errors": result.errors}

    def _reproducibility(self, item) -> dict:
        from ..pipeline import explain_image

        try:
            image = item.image()
        except ValueError as err:
            return {"scores": {}, "errors": {"all": str(err)}}
        result = explain_image(self.model, image, item.name, self.averaging, self.settings.params)
        scores = {}
        for m, exp in result.maps.items():
            readout = (exp.diagnostics or {}).get("convergence")
            readout = readout[0] if isinstance(readout, list) and readout else readout
            recorded = isinstance(readout, dict) and "reproducible_px" in readout
            scores[m] = {"px": reproducible_px(exp.diagnostics), "recorded": recorded}
        return {"scores": scores, "errors": dict(result.errors)}

    def run(self, progress: Callable[[int, int, str], None] | None = None, cancel=None) -> Qualification:
        """Compute the units not done yet, in order, until all are done or ``cancel`` says stop.

        Args:
            progress: ``progress(done, total, what was just done)`` after each unit.
            cancel: a callable returning True, or an event (``is_set()``): checked before each unit.
        Returns:
            ``result()``: complete, or of the units done when cancelled.
        """
        done = sum(u in self.done for u in self.units)
        if progress:
            progress(done, self.total, "resumed" if done else "started")
        for unit in self.units:
            if unit in self.done:
                continue
            if _cancelled(cancel):
                break
            self.step(unit)
            done += 1
            if progress:
                progress(done, self.total, f"{unit[0]} · {self.dataset.items[unit[1]].name}")
        return self.result()

    def result(self) -> Qualification:
        """The scorecard of the units done so far (``complete`` once every unit is done)."""
        totals = RunTotals(list(self.dataset.skipped) + self.plan.skipped)
        units: dict = {"sanity": [], "stability": [], "reproducibility": []}
        for unit in self.units:
            value = self.done.get(unit)
            if value is None:
                continue
            if unit[0] == "image":
                totals.add(ImageScores.from_record(value))
            else:
                units[unit[0]].append(value["scores"])
                totals.skipped += [
                    Skipped(f"{unit[0]} on {self.dataset.items[unit[1]].name} [{label_of(m)}]", str(e))
                    for m, e in value.get("errors", {}).items()
                ]
        units["cannot_run"] = {s.item.removeprefix("method "): s.reason for s in self.plan.skipped}
        frame = pd.DataFrame(totals.rows)
        vs = self.validation
        rows, verdicts = scorecard(
            frame,
            units,
            list(self.settings.methods),
            vs,
            self.settings.rules,
            totals.scored,
            self.model.input_size,
            self.finished,
        )
        return Qualification(
            rows=rows,
            verdicts=verdicts,
            model=self.model.describe(),
            dataset={
                "fingerprint": self.fingerprint,
                "description": self.dataset.description,
                "images": len(self.dataset.items),
            },
            settings=self.settings.record(),
            rules=self.settings.rules.record(),
            versions=versions(),
            images=totals.scored,
            complete=self.finished,
            skipped=totals.skipped,
            seconds=self.seconds,
        )


def qualify(
    model, dataset: Dataset, settings: QualificationSettings, progress=None, cancel=None, results=None
):
    """Run a whole qualification (``QualificationRun``); see the module docstring."""
    return QualificationRun(model, dataset, settings, results=results).run(progress=progress, cancel=cancel)


# ---- kept on disk: the demo's qualification is computed once per model, set and software --------
DEMO_IMAGES = 50  # the bundled pasted-object set at the minimum for a verdict
DEMO_METHODS = ("gradient", "guided_backprop", "smoothgrad", "gradcam")  # the sidebar's defaults (a test
# keeps them equal to pages/_defaults.METHODS); each with its own default parameters
DEMO_CACHE = os.path.join("data", "qualification")  # kept here by the dashboard and `qualify --demo`
DEMO_STEP = 0.2  # deletion / insertion: 6 points per curve (the cheap setting; 0.1 doubles the time)


def demo_settings(methods: Sequence[str] = DEMO_METHODS, params: dict | None = None) -> QualificationSettings:
    """The demo's qualification: the methods with their own default parameters, the default rules,
    the cheap curve step ``DEMO_STEP`` and the default samples of the sanity and stability checks."""
    return QualificationSettings(list(methods), params=dict(params or {}), step_fraction=DEMO_STEP)


def cached_qualification(
    model, dataset: Dataset, settings: QualificationSettings, folder, progress=None, cancel=None
) -> Qualification:
    """``qualify`` kept in ``folder`` as ``<run_key>.json`` (its units in ``<run_key>.jsonl``, so a
    stopped computation resumes): computed again only when the model, the data set, the settings or
    the software change.

    Returns:
        The scorecard; ``complete`` is False when ``cancel`` stopped it (nothing is kept as final then).
    """
    folder = Path(folder)
    fingerprint = dataset_fingerprint(dataset)
    key = run_key(model, fingerprint, settings)
    final = folder / f"{key}.json"
    if final.is_file():
        try:
            return Qualification.from_record(json.loads(final.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            pass  # a damaged copy: computed again
    folder.mkdir(parents=True, exist_ok=True)
    run = QualificationRun(model, dataset, settings, results=folder / f"{key}.jsonl", fingerprint=fingerprint)
    result = run.run(progress=progress, cancel=cancel)
    if result.complete:
        partial = final.with_suffix(".json.tmp")
        partial.write_text(json.dumps(result.record(), indent=1, default=str), encoding="utf-8")
        os.replace(partial, final)
    return result
