"""Stability of saliency maps across slightly changed inputs (Alvarez-Melis & Jaakkola 2018;
Yeh et al. 2019).

An image is changed a little, K times: Gaussian pixel noise, brightness, contrast, a shift of
a few pixels, a small rotation, JPEG re-compression (or the reviewer supplies similar images).
For each variant we record the prediction and compare each method's map with the original's
by Spearman rank correlation, top-10% overlap and SSIM (``similarity.compare``). Geometric
changes are undone before comparing (the variant's map is shifted / rotated back; for a
rotation the original's map goes through the same rotation there and back, so resampling
blur is not mistaken for instability) and only the pixels valid in both images are compared.

Shift and rotation are taken on the image as resized for the model, before the centre crop,
so the pixels that move into view are real image content rather than padding.

Verdict per method (thresholds in ``StabilityThresholds``, all adjustable):

- ``fragile prediction``: under some variant the predicted class changes, or the probability
  of the originally predicted class falls by more than ``max_confidence_drop``;
- ``unstable explanation``: the prediction is steady, but the map moves: the mean Spearman
  of |map| over the variants is below ``min_spearman``, or the mean top-k overlap is below
  ``min_top_k_overlap``;
- ``stable``: neither.

Example:
    >>> result = stability_check(model, "coffee.png", ["gradient", "gradcam"], count=8)
    >>> result.summary["gradcam"].verdict
    'stable'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from PIL import Image

from ..engine.classifier import Classifier
from ..engine.detail import smooth, stated_detail
from ..engine.explain import attribute, check_methods, get_method, reduce_channels
from ..engine.images import ImageSource, image_hash, load_image
from .similarity import compare
from .variants import KINDS, Perturbation, Variant, check_count, make_variants

# the variants' public names, importable from here as before
from .variants import MAX_VARIANTS as MAX_VARIANTS
from .variants import similar_variants as similar_variants

VERDICTS = ("stable", "unstable explanation", "fragile prediction")
MEASURES = ("spearman_abs", "spearman_signed", "top_k_overlap", "ssim")


@dataclass(frozen=True)
class StabilityThresholds:
    """Where the verdicts change. Defaults: see the module docstring and the page.

    Attributes:
        min_spearman: a map is stable if its mean Spearman rank correlation (of |map|) with
            the original over the variants is at least this ...
        min_top_k_overlap: ... and its mean top-k overlap is at least this (random maps: ``top_k``).
        max_confidence_drop: a drop in the original class's probability larger than this
            (absolute, e.g. 0.20 = 20 percentage points), or a changed class, marks the
            prediction as fragile.
        top_k: share of pixels that counts as "most salient" for the overlap.
    """

    min_spearman: float = 0.5
    min_top_k_overlap: float = 0.4
    max_confidence_drop: float = 0.2
    top_k: float = 0.1

    def check(self) -> None:
        for name in ("min_spearman", "min_top_k_overlap", "max_confidence_drop"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1):
                raise ValueError(
                    f"The {name.replace('_', ' ')} threshold must be between 0 and 1; got {value}."
                )
        if not 0 < self.top_k <= 0.5:
            raise ValueError(
                f"The top-k share must be between 0 and 0.5 (e.g. 0.1 for 10%); got {self.top_k}."
            )


@dataclass
class VariantOutcome:
    """One variant's prediction, maps and scores.

    Attributes:
        name, kind, params: as in ``Variant``.
        prediction: the variant's top-1 (index, label, probability).
        target_probability: probability of the original's explained class on the variant.
        class_changed: top-1 differs from the original's.
        confidence_drop: original probability of the target minus ``target_probability``.
        steady: neither a changed class nor a drop above the threshold.
        valid_share: share of the crop compared (geometric variants lose a border).
        saliency: method -> (H, W) map in the variant's own coordinates (for overlays).
        scores: method -> {measure: value} against the original's map.
        image: the variant as the network saw it.
    """

    name: str
    kind: str
    params: dict
    prediction: tuple[int, str, float]
    target_probability: float
    class_changed: bool
    confidence_drop: float
    steady: bool
    valid_share: float
    image: Image.Image
    saliency: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)


@dataclass
class MethodStability:
    """Summary for one method.

    Attributes:
        verdict: one of ``VERDICTS``; ``reason`` says why in plain words.
        mean, worst: {measure: value} over all variants (worst = lowest). Every variant
            explains the same class, so its map is comparable even where the top-1 changed.
        steady: number of variants whose prediction held; ``variants`` how many in all.
        map_stable: whether the map passed the thresholds (None when no variant was scored).
    """

    method: str
    verdict: str
    reason: str
    mean: dict
    worst: dict
    steady: int
    variants: int
    map_stable: bool | None


@dataclass
class StabilityResult:
    """Everything one stability run found. ``summary`` has one ``MethodStability`` per method."""

    image: Image.Image
    image_hash: str
    model_fingerprint: str
    prediction: list
    target: int
    target_label: str
    saliency: dict
    variants: list
    summary: dict
    thresholds: StabilityThresholds
    perturbation: Perturbation | None
    params: dict
    errors: dict = field(default_factory=dict)

    def with_thresholds(self, thresholds: StabilityThresholds) -> StabilityResult:
        """The same maps and scores judged with other thresholds (no map is recomputed).

        Raises:
            ValueError: ``thresholds.top_k`` differs from the run's: the overlap scores
                depend on it, so that needs a new run.
        """
        thresholds.check()
        if thresholds.top_k != self.thresholds.top_k:
            raise ValueError(
                f"The top-k share is part of the scores ({self.thresholds.top_k:g} in this run); "
                f"changing it to {thresholds.top_k:g} needs a new run."
            )
        variants = [
            dataclasses.replace(
                v, steady=not v.class_changed and v.confidence_drop <= thresholds.max_confidence_drop
            )
            for v in self.variants
        ]
        summary = {m: judge(variants, m, thresholds, self.target_label) for m in self.summary}
        return dataclasses.replace(self, variants=variants, summary=summary, thresholds=thresholds)

    def rows(self) -> list[dict]:
        """One row per (variant, method): prediction and scores; for a table or CSV."""
        out = []
        for v in self.variants:
            for method, scores in v.scores.items():
                out.append(
                    {
                        "variant": v.name,
                        "kind": v.kind,
                        "method": method,
                        "top1": v.prediction[1],
                        "top1_probability": v.prediction[2],
                        "target_probability": v.target_probability,
                        "class_changed": v.class_changed,
                        "steady": v.steady,
                        "valid_share": v.valid_share,
                        **scores,
                    }
                )
        return out

    def record(self) -> dict:
        """JSON-ready summary: verdicts, mean and worst scores, thresholds, settings."""
        return {
            "image_hash": self.image_hash,
            "model_fingerprint": self.model_fingerprint,
            "prediction": [{"index": i, "label": name, "probability": p} for i, name, p in self.prediction],
            "target": self.target,
            "target_label": self.target_label,
            "thresholds": asdict(self.thresholds),
            "perturbation": asdict(self.perturbation) if self.perturbation else "similar images supplied",
            "params": self.params,
            "methods": {
                m: {
                    "verdict": s.verdict,
                    "reason": s.reason,
                    "mean": s.mean,
                    "worst": s.worst,
                    "steady_variants": s.steady,
                    "variants": s.variants,
                }
                for m, s in self.summary.items()
            },
            "variants": [
                {
                    "name": v.name,
                    "kind": v.kind,
                    "params": v.params,
                    "prediction": {
                        "index": v.prediction[0],
                        "label": v.prediction[1],
                        "probability": v.prediction[2],
                    },
                    "target_probability": v.target_probability,
                    "steady": v.steady,
                    "valid_share": v.valid_share,
                    "scores": v.scores,
                }
                for v in self.variants
            ],
            "errors": self.errors,
        }


def _maps(
    model: Classifier, x: torch.Tensor, target: int, method: str, params: dict
) -> tuple[list[np.ndarray], list[np.ndarray], dict, list[dict]]:
    """Drawn maps and signed (channel-summed) maps of every image in ``x`` (N, 3, H, W), and each
    image's diagnostics (an averaging method's convergence readout, for its reproducible detail)."""
    targets = torch.full((x.shape[0],), int(target), dtype=torch.long, device=x.device)
    attribution, used, diagnostics = attribute(model, x, targets, method, **params)
    drawn = list(reduce_channels(attribution, get_method(method).reduction).float().cpu().numpy())
    readouts = diagnostics.get("convergence")
    each = [{"convergence": r} for r in readouts] if isinstance(readouts, list) else [{}] * x.shape[0]
    return drawn, list(attribution.sum(dim=1).float().cpu().numpy()), used, each


def _scores(v: Variant, maps: tuple, signed: tuple, valid: np.ndarray, px: float, top_k: float) -> dict:
    """The variant's map against the original's, both blurred by a Gaussian of ``px`` px first."""
    return compare(
        v.reference(smooth(maps[0], px)),
        v.align(smooth(maps[1], px)),
        valid,
        signed_a=v.reference(smooth(signed[0], px)),
        signed_b=v.align(smooth(signed[1], px)),
        fraction=top_k,
        measures=MEASURES,
    )


def judge(
    outcomes: Sequence[VariantOutcome], method: str, thresholds: StabilityThresholds, target_label: str
) -> MethodStability:
    """The verdict for one method from its variants' predictions and scores.

    Args:
        outcomes: variants with ``scores[method]`` filled.
        thresholds: see ``StabilityThresholds``.
    Returns:
        ``MethodStability``.
    """
    steady = [v for v in outcomes if v.steady]
    scored = [v.scores[method] for v in outcomes if method in v.scores]
    mean = {k: float(np.mean([s[k] for s in scored])) for k in MEASURES} if scored else {}
    worst = {k: float(np.min([s[k] for s in scored])) for k in MEASURES} if scored else {}
    map_stable = None
    if scored:
        map_stable = (
            mean["spearman_abs"] >= thresholds.min_spearman
            and mean["top_k_overlap"] >= thresholds.min_top_k_overlap
        )
    pct = f"{thresholds.top_k:.0%}"
    if len(steady) < len(outcomes):
        changed = [v for v in outcomes if v.class_changed]
        dropped = [v for v in outcomes if not v.class_changed and not v.steady]
        parts = []
        if changed:
            parts.append(
                f"the predicted class changed under {len(changed)} of {len(outcomes)} small changes ("
                + "; ".join(f"{v.name}: {v.prediction[1]}" for v in changed[:3])
                + ("; ..." if len(changed) > 3 else "")
                + ")"
            )
        if dropped:
            parts.append(
                f"the probability of {target_label!r} fell by more than "
                f"{thresholds.max_confidence_drop:.0%} under " + ", ".join(v.name for v in dropped[:3])
            )
        reason = "; ".join(parts) + "."
        reason = reason[0].upper() + reason[1:]
        if map_stable is not None:
            reason += (
                f" The map itself (same class explained on every variant) is "
                f"{'stable' if map_stable else 'unstable'} (mean Spearman {mean['spearman_abs']:.2f}, "
                f"top-{pct} overlap {mean['top_k_overlap']:.2f})."
            )
        verdict = "fragile prediction"
    elif map_stable:
        verdict = "stable"
        reason = (
            f"The prediction held under all {len(outcomes)} changes and the map stayed put: mean Spearman "
            f"{mean['spearman_abs']:.2f} (at least {thresholds.min_spearman:.2f}), top-{pct} overlap "
            f"{mean['top_k_overlap']:.2f} (at least {thresholds.min_top_k_overlap:.2f})."
        )
    else:
        verdict = "unstable explanation"
        reason = (
            f"The prediction held under all {len(outcomes)} changes but the map moved: mean Spearman "
            f"{mean['spearman_abs']:.2f} (needs {thresholds.min_spearman:.2f}), top-{pct} overlap "
            f"{mean['top_k_overlap']:.2f} (needs {thresholds.min_top_k_overlap:.2f})."
        )
    return MethodStability(method, verdict, reason, mean, worst, len(steady), len(outcomes), map_stable)


def stability_check(
    model: Classifier,
    image: ImageSource,
    methods: Sequence[str],
    *,
    variants: Sequence[Variant] | None = None,
    count: int = 8,
    perturbation: Perturbation = Perturbation(),  # noqa: B008 (frozen, never changed)
    kinds: Sequence[str] = KINDS,
    thresholds: StabilityThresholds = StabilityThresholds(),
    target: int | None = None,
    params: dict | None = None,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    done: StabilityResult | None = None,
    on_result: Callable[[StabilityResult], None] | None = None,
) -> StabilityResult:
    """Check how much each method's map changes under small changes of the input.

    Args:
        model: the classifier.
        image: the original image (PIL, path or bytes).
        methods: names in ``METHODS``.
        variants: ready-made variants (``similar_variants``); None generates ``count`` with
            ``make_variants(perturbation, kinds)``.
        thresholds: where the verdicts change.
        target: class explained on every variant; None = the original's predicted class.
        params: method parameters (``samples``, ``noise``, ``seed``, ``steps``...); each
            method takes the ones it knows. The same seed is used for every variant.
        batch_size: images per attribution call.
        progress: ``progress(done, total)`` after each batch of maps.
        done: a result of this check for the same model, image, variants, methods and
            parameters that stopped early: its methods are kept, the others computed.
        on_result: ``on_result(result so far)`` after each method (a caller that stops the
            run keeps what was done).
    Returns:
        ``StabilityResult``; ``summary[method].verdict`` is one of ``VERDICTS``. A method
        that fails is reported in ``errors`` and left out of ``summary``.
    Raises:
        ValueError: no methods, an unknown method or parameter, bad variant settings.

    Example:
        >>> r = stability_check(model, "coffee.png", ["gradcam"], count=4)
        >>> r.summary["gradcam"].mean["spearman_abs"] > 0.8
        True
    """
    thresholds.check()
    methods = check_methods(model, methods)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}.")
    image = load_image(image)
    if variants is None:
        variants = make_variants(model, image, count, perturbation, kinds)
    else:
        check_count(len(variants))
        perturbation = None
    run = _Run(model, image, variants, thresholds, perturbation, target)
    if done is not None:
        run.resume(done)
    todo = [m for m in methods if m not in run.summary and m not in run.errors]
    total = len(todo) * math.ceil(run.batch.shape[0] / int(batch_size))
    params = dict(params or {})
    for method in todo:
        if run.add(method, params, int(batch_size), progress, total) and on_result is not None:
            on_result(run.so_far())
    summary = {m: run.summary[m] for m in methods if m in run.summary}  # the caller's order
    result = run.so_far()
    result.summary = summary
    return result


class _Run:
    """One stability run: the original and its variants in one batch, each variant's prediction,
    and the maps, scores and verdicts of the methods done so far."""

    def __init__(self, model, image, variants, thresholds, perturbation, target):
        device = next((p.device for p in model.network.parameters()), torch.device("cpu"))
        x0 = model.preprocess(image).to(device)
        self.size = tuple(x0.shape[-2:])
        for v in variants:
            if tuple(v.x.shape) != tuple(x0.shape):
                raise ValueError(
                    f"Variant {v.name!r} has shape {tuple(v.x.shape)}; expected {tuple(x0.shape)}."
                )
        self.batch = torch.cat([x0] + [v.x.to(device) for v in variants])  # original first
        probabilities = model.probabilities(self.batch).cpu()
        self.prediction = model.predict(x0, k=5)
        target = self.prediction[0][0] if target is None else int(target)
        if not 0 <= target < len(model.labels):
            raise ValueError(f"Target class must be between 0 and {len(model.labels) - 1}; got {target}.")
        self.model, self.image, self.variants, self.target = model, image, variants, target
        self.thresholds, self.perturbation = thresholds, perturbation
        self.outcomes = [self._outcome(v, probabilities, i) for i, v in enumerate(variants, start=1)]
        self.originals, self.used_params, self.summary, self.errors = {}, {}, {}, {}
        self.count = 0  # batches of maps done, for ``progress``

    def _valid(self, v: Variant) -> np.ndarray:
        return v.valid if v.valid is not None else np.ones(self.size, dtype=bool)

    def _outcome(self, v: Variant, probabilities: torch.Tensor, i: int) -> VariantOutcome:
        """The prediction on variant ``v`` (row ``i`` of ``probabilities``) against the original's."""
        top = int(probabilities[i].argmax())
        pt = float(probabilities[i, self.target])
        changed = top != self.prediction[0][0]
        drop = float(probabilities[0, self.target]) - pt
        return VariantOutcome(
            name=v.name,
            kind=v.kind,
            params=v.params,
            prediction=(top, self.model.labels[top], float(probabilities[i, top])),
            target_probability=pt,
            class_changed=changed,
            confidence_drop=drop,
            steady=not changed and drop <= self.thresholds.max_confidence_drop,
            valid_share=float(self._valid(v).mean()),
            image=v.image(),
        )

    def _judge(self, method: str) -> MethodStability:
        return judge(self.outcomes, method, self.thresholds, self.model.labels[self.target])

    def resume(self, done: StabilityResult) -> None:
        """Go on with a run that stopped early: keep its methods."""
        if (
            done.image_hash != image_hash(self.image)
            or len(done.variants) != len(self.outcomes)
            or done.target != self.target
        ):
            raise ValueError("The earlier partial result is for another image, target or set of variants.")
        for outcome, old in zip(self.outcomes, done.variants):
            outcome.saliency.update(old.saliency)
            outcome.scores.update(old.scores)
        self.originals.update(done.saliency)
        self.used_params.update(done.params)
        self.errors.update(done.errors)
        self.summary.update({m: self._judge(m) for m in done.summary})

    def add(self, method: str, params: dict, batch_size: int, progress, total: int) -> bool:
        """Maps and scores of one method on every variant; False (and the error kept) if it fails."""
        own = {k: v for k, v in params.items() if k in get_method(method).defaults}
        try:
            drawn, signed, used, diagnostics = [], [], {}, []
            for start in range(0, self.batch.shape[0], batch_size):
                d, s, used, diag = _maps(
                    self.model, self.batch[start : start + batch_size], self.target, method, own
                )
                drawn += d
                signed += s
                diagnostics += diag
                self.count += 1
                if progress is not None:
                    progress(self.count, total)
        except ValueError as err:
            self.errors[method] = str(err)
            return False
        self.originals[method], self.used_params[method] = drawn[0], used
        top_k = self.thresholds.top_k
        for v, outcome, d, s, diag in zip(
            self.variants, self.outcomes, drawn[1:], signed[1:], diagnostics[1:]
        ):
            outcome.saliency[method] = d
            # at one stated detail: the coarser of the two maps' reproducible details (exact maps: 0)
            px = stated_detail(diagnostics[0], diag, size=int(min(np.shape(d))))
            pair, pair_signed = (drawn[0], d), (signed[0], s)
            at_detail = _scores(v, pair, pair_signed, self._valid(v), px, top_k)
            raw = _scores(v, pair, pair_signed, self._valid(v), 0.0, top_k) if px else at_detail
            outcome.scores[method] = {**at_detail, "detail_px": px, **{f"{k}_raw": raw[k] for k in MEASURES}}
        self.summary[method] = self._judge(method)
        return True

    def so_far(self) -> StabilityResult:
        outcomes = self.outcomes
        return StabilityResult(
            image=self.model.crop(self.image),
            image_hash=image_hash(self.image),
            model_fingerprint=self.model.fingerprint,
            prediction=self.prediction,
            target=self.target,
            target_label=self.model.labels[self.target],
            saliency=dict(self.originals),
            variants=[
                dataclasses.replace(o, saliency=dict(o.saliency), scores=dict(o.scores)) for o in outcomes
            ],
            summary=dict(self.summary),
            thresholds=self.thresholds,
            perturbation=self.perturbation,
            params=dict(self.used_params),
            errors=dict(self.errors),
        )
