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
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from ..engine.classifier import Classifier
from ..engine.detail import smooth, stated_detail
from ..engine.explain import attribute, check_methods, get_method, reduce_channels
from ..engine.images import ImageSource, image_hash, load_image
from .similarity import compare

KINDS = ("noise", "brightness", "contrast", "shift", "rotation", "jpeg")
VERDICTS = ("stable", "unstable explanation", "fragile prediction")
MEASURES = ("spearman_abs", "spearman_signed", "top_k_overlap", "ssim")
MAX_VARIANTS = 100
MIN_VALID_SHARE = 0.5  # a geometric variant must leave at least half the crop comparable
_SHIFT_DIRECTIONS = [(1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)]
_ROTATION_FACTORS = [1.0, -1.0, 0.5, -0.5]


@dataclass(frozen=True)
class Perturbation:
    """How strong the generated changes are.

    Attributes:
        pixel_noise: standard deviation of the Gaussian noise added to each pixel, as a
            fraction of the pixel range [0, 1] (0.02 = about 5 grey levels of 255).
        brightness: pixel values are multiplied by 1 +/- ``brightness``.
        contrast: distance from the mean grey is multiplied by 1 -/+ ``contrast``.
        shift: pixels the content moves (right, down, left, up, then diagonally).
        rotation: degrees, about the centre of the crop (+, -, then half of each).
        jpeg_quality: JPEG quality of the re-compression (then 20 lower, at least 5).
        seed: seed of the pixel noise; the same seed gives the same variants.
    """

    pixel_noise: float = 0.02
    brightness: float = 0.1
    contrast: float = 0.1
    shift: int = 4
    rotation: float = 3.0
    jpeg_quality: int = 75
    seed: int = 0

    def check(self) -> None:
        """Raise ValueError naming any setting out of range."""
        limits = [
            ("pixel_noise", 0.0, 0.5),
            ("brightness", 0.0, 0.9),
            ("contrast", 0.0, 0.9),
            ("shift", 1, 64),
            ("rotation", 0.1, 45.0),
            ("jpeg_quality", 5, 100),
        ]
        for name, low, high in limits:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
                raise ValueError(
                    f"The {name.replace('_', ' ')} setting must be between {low} and {high}; got {value}."
                )


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
class Variant:
    """One slightly changed input.

    Attributes:
        name: plain words, e.g. ``"shift 4 px right"``.
        kind: one of ``KINDS`` or ``"similar"`` (a supplied image).
        params: the change's settings.
        x: float tensor (1, 3, H, W), what the network sees.
        shift: (right, down) pixels the content moved; (0, 0) if not shifted.
        angle: degrees the content was rotated counter-clockwise about the crop centre.
        valid: bool (H, W) in the original's coordinates: pixels present in both images.
    """

    name: str
    kind: str
    params: dict
    x: torch.Tensor
    shift: tuple[int, int] = (0, 0)
    angle: float = 0.0
    valid: np.ndarray | None = None

    def image(self) -> Image.Image:
        """The variant as the network sees it (RGB, H x W), for overlays."""
        return TF.to_pil_image(self.x[0].clamp(0, 1).cpu())

    def align(self, saliency: np.ndarray) -> np.ndarray:
        """A map of this variant moved back into the original's coordinates (H, W); pixels
        outside ``valid`` are meaningless."""
        if self.shift != (0, 0):
            return _unshift(saliency, *self.shift)
        if self.angle:
            return _rotate(saliency, -self.angle)
        return saliency

    def reference(self, saliency: np.ndarray) -> np.ndarray:
        """The original's map as it is compared with ``align(variant map)``: for a rotation it
        is rotated there and back too, so both maps are resampled the same way and the
        interpolation's blur is not counted as instability (for a pixel-level map such as
        the gradient, one round trip alone lowers Spearman's rho to about 0.86)."""
        if self.angle:
            return _rotate(_rotate(saliency, self.angle), -self.angle)
        return saliency


def _rotate(saliency: np.ndarray, degrees: float) -> np.ndarray:
    """(H, W) map rotated anticlockwise about its centre, bilinear, zeros outside."""
    m = torch.from_numpy(np.ascontiguousarray(saliency, dtype=np.float32))[None]
    return TF.rotate(m, degrees, InterpolationMode.BILINEAR, fill=[0.0])[0].numpy()


def _unshift(saliency: np.ndarray, right: int, down: int) -> np.ndarray:
    """out[p, q] = saliency[p + down, q + right], zeros where that falls outside."""
    h, w = saliency.shape
    out = np.zeros_like(saliency)
    rows = slice(max(0, -down), min(h, h - down))
    cols = slice(max(0, -right), min(w, w - right))
    src_rows = slice(rows.start + down, rows.stop + down)
    src_cols = slice(cols.start + right, cols.stop + right)
    out[rows, cols] = saliency[src_rows, src_cols]
    return out


def _shift_valid(h: int, w: int, right: int, down: int) -> np.ndarray:
    valid = np.zeros((h, w), dtype=bool)
    valid[max(0, -down) : min(h, h - down), max(0, -right) : min(w, w - right)] = True
    return valid


class _Frame:
    """The image resized for the model (C, Hr, Wr) and where the centre crop sits in it."""

    def __init__(self, model: Classifier, image: Image.Image):
        self.size = model.input_size
        if model.channels == 1:
            image = image.convert("L")  # as the model sees it (Classifier.crop)
        resized = TF.resize(image, model.resize, interpolation=InterpolationMode(model.interpolation))
        self.full = TF.to_tensor(resized)
        _, hr, wr = self.full.shape
        self.top = int(round((hr - self.size) / 2.0))
        self.left = int(round((wr - self.size) / 2.0))
        self.x = model.preprocess(image)
        self.geometric = (
            self.top >= 0
            and self.left >= 0
            and tuple(self.x.shape[-2:]) == (self.size, self.size)
            and torch.allclose(self.crop(self.full), self.x[0], atol=1e-6)
        )

    def crop(self, full: torch.Tensor, down: int = 0, right: int = 0) -> torch.Tensor:
        top, left = self.top + down, self.left + right
        return full[:, top : top + self.size, left : left + self.size]

    def margin(self) -> tuple[int, int, int, int]:
        """Pixels of real image around the crop: (top, bottom, left, right)."""
        _, hr, wr = self.full.shape
        return (self.top, hr - self.top - self.size, self.left, wr - self.left - self.size)


def _need_geometry(frame: _Frame, what: str) -> None:
    if not frame.geometric:
        raise ValueError(
            f"A {what} variant needs the model's preprocessing to be a resize followed by a "
            f"centre crop of {frame.size} px; this model's preprocessing is different. "
            "Leave out shift and rotation, or supply similar images."
        )


def _shift_variant(frame: _Frame, right: int, down: int, pixels: int) -> Variant:
    _need_geometry(frame, "shift")
    top, bottom, left, right_margin = frame.margin()
    # content moving right by r means the crop window moves left by r
    room = {"right": left, "left": right_margin, "down": top, "up": bottom}
    needed = {"right": max(right, 0), "left": max(-right, 0), "down": max(down, 0), "up": max(-down, 0)}
    side = {"right": "left of", "left": "right of", "down": "above", "up": "below"}
    for direction, n in needed.items():
        if n > room[direction]:
            _, hr, wr = frame.full.shape
            raise ValueError(
                f"The image is too small for a {pixels} px shift: resized for this model it is {wr}x{hr} px, "
                f"which leaves {room[direction]} px of picture {side[direction]} the {frame.size} px crop "
                f"where {n} px are needed. Use a shift of at most {max(0, min(room.values()))} px, or leave "
                "the shift out."
            )
    x = frame.crop(frame.full, down=-down, right=-right).unsqueeze(0).clone()
    words = {(1, 0): "right", (0, 1): "down", (-1, 0): "left", (0, -1): "up"}
    sign = (int(np.sign(right)), int(np.sign(down)))
    direction = words.get(sign) or f"{words[(0, sign[1])]} and {words[(sign[0], 0)]}"
    return Variant(
        f"shift {pixels} px {direction}",
        "shift",
        {"right": right, "down": down},
        x,
        shift=(right, down),
        valid=_shift_valid(frame.size, frame.size, right, down),
    )


def _rotation_variant(frame: _Frame, angle: float) -> Variant:
    _need_geometry(frame, "rotation")
    _, hr, wr = frame.full.shape
    centre = [frame.left + frame.size / 2, frame.top + frame.size / 2]
    channels = frame.full.shape[0]
    stack = torch.cat([frame.full, torch.ones_like(frame.full[:1])])  # last channel: image present
    turned = TF.rotate(stack, angle, InterpolationMode.BILINEAR, center=centre, fill=[0.0] * (channels + 1))
    crop = frame.crop(turned)
    present = crop[channels:] > 0.999
    back = TF.rotate(present.float(), -angle, InterpolationMode.BILINEAR, fill=[0.0])[0]
    # and where the original's map, rotated there and back (``Variant.reference``), stays whole
    whole = _rotate(_rotate(np.ones((frame.size, frame.size), np.float32), angle), -angle)
    valid = (back > 0.999).numpy() & (whole > 0.999)
    if valid.mean() < MIN_VALID_SHARE:
        raise ValueError(
            f"The image is too small for a {angle:g} degree rotation: only {valid.mean():.0%} of "
            f"the {frame.size} px crop would remain comparable (at least {MIN_VALID_SHARE:.0%} "
            "is needed). Use a smaller angle."
        )
    direction = "anticlockwise" if angle > 0 else "clockwise"
    return Variant(
        f"rotate {abs(angle):g}\u00b0 {direction}",
        "rotation",
        {"degrees": angle},
        crop[:channels].unsqueeze(0).clone(),
        angle=float(angle),
        valid=valid,
    )


def _noise_variant(frame: _Frame, sigma: float, seed: int, index: int) -> Variant:
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + index)
    noise = torch.randn(frame.x.shape, generator=g, dtype=frame.x.dtype)
    x = (frame.x + sigma * noise).clamp(0, 1)
    return Variant(
        f"noise \u03c3={sigma:g} #{index + 1}", "noise", {"sigma": sigma, "seed": seed, "index": index}, x
    )


def _brightness_variant(frame: _Frame, factor: float) -> Variant:
    x = (frame.x * factor).clamp(0, 1)
    return Variant(f"brightness \u00d7{factor:g}", "brightness", {"factor": factor}, x)


def _contrast_variant(frame: _Frame, factor: float) -> Variant:
    # blend with the mean grey, as PIL's ImageEnhance.Contrast (ITU-R 601 luma)
    if frame.x.shape[1] == 1:  # a greyscale model's input is the luma
        luma = frame.x.mean()
    else:
        luma = (0.299 * frame.x[:, 0] + 0.587 * frame.x[:, 1] + 0.114 * frame.x[:, 2]).mean()
    x = (luma + (frame.x - luma) * factor).clamp(0, 1)
    return Variant(f"contrast \u00d7{factor:g}", "contrast", {"factor": factor}, x)


def _jpeg_variant(frame: _Frame, quality: int) -> Variant:
    buffer = io.BytesIO()
    TF.to_pil_image(frame.x[0]).save(buffer, format="JPEG", quality=int(quality))
    mode = "L" if frame.x.shape[1] == 1 else "RGB"
    x = TF.to_tensor(Image.open(io.BytesIO(buffer.getvalue())).convert(mode)).unsqueeze(0)
    return Variant(f"JPEG quality {quality}", "jpeg", {"quality": int(quality)}, x)


def _check_count(count) -> int:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= MAX_VARIANTS:
        raise ValueError(
            f"The number of variants must be a whole number between 1 and {MAX_VARIANTS}; got {count}."
        )
    return int(count)


def make_variants(
    model: Classifier,
    image: ImageSource,
    count: int = 8,
    perturbation: Perturbation = Perturbation(),
    kinds: Sequence[str] = KINDS,
) -> list[Variant]:
    """``count`` slightly changed copies of ``image`` as the model sees it.

    The kinds are taken in turn (noise, brightness, contrast, shift, rotation, JPEG, noise,
    ...); a kind's n-th use varies its setting (new noise, the opposite direction, ...).

    Args:
        model: the classifier (its preprocessing decides the crop).
        image: PIL image, path or bytes.
        count: K, between 1 and ``MAX_VARIANTS``.
        perturbation: strengths of the changes.
        kinds: which of ``KINDS`` to use.
    Returns:
        list of ``Variant``; each ``x`` is (1, 3, input_size, input_size).
    Raises:
        ValueError: bad count, unknown kind, setting out of range, or an image too small
            for the shift or rotation.

    Example:
        >>> [v.name for v in make_variants(model, "chelsea.png", count=3)]
        ['noise σ=0.02 #1', 'brightness ×1.1', 'contrast ×0.9']
    """
    count = _check_count(count)
    perturbation.check()
    kinds = list(dict.fromkeys(kinds))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(
            f"Variant kinds must be some of {', '.join(KINDS)}; got {', '.join(map(str, kinds)) or 'none'}."
        )
    frame = _Frame(model, load_image(image))
    p = perturbation
    variants = []
    for i in range(count):
        kind, n = kinds[i % len(kinds)], i // len(kinds)
        if kind == "noise":
            variants.append(_noise_variant(frame, p.pixel_noise, p.seed, n))
        elif kind == "brightness":
            variants.append(_brightness_variant(frame, 1 + p.brightness * (1 if n % 2 == 0 else -1)))
        elif kind == "contrast":
            variants.append(_contrast_variant(frame, 1 - p.contrast * (1 if n % 2 == 0 else -1)))
        elif kind == "shift":
            dx, dy = _SHIFT_DIRECTIONS[n % len(_SHIFT_DIRECTIONS)]
            variants.append(_shift_variant(frame, dx * int(p.shift), dy * int(p.shift), int(p.shift)))
        elif kind == "rotation":
            variants.append(
                _rotation_variant(frame, p.rotation * _ROTATION_FACTORS[n % len(_ROTATION_FACTORS)])
            )
        else:
            variants.append(_jpeg_variant(frame, max(5, p.jpeg_quality - 20 * (n % 2))))
    return variants


def similar_variants(model: Classifier, images: Sequence[tuple[str, ImageSource]]) -> list[Variant]:
    """Reviewer-supplied similar images (frames of one product, say) as variants.

    They are compared pixel for pixel with the original after the model's preprocessing, so
    they should show the object at the same place and scale; nothing is aligned.

    Args:
        images: (name, image) pairs, at most ``MAX_VARIANTS``.
    Returns:
        list of ``Variant`` of kind ``"similar"``.
    """
    if not 1 <= len(images) <= MAX_VARIANTS:
        raise ValueError(f"Between 1 and {MAX_VARIANTS} similar images are needed; got {len(images)}.")
    return [
        Variant(name, "similar", {"image": name}, model.preprocess(load_image(source, name=name)))
        for name, source in images
    ]


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
    perturbation: Perturbation = Perturbation(),
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
        _check_count(len(variants))
        perturbation = None
    device = next((p.device for p in model.network.parameters()), torch.device("cpu"))
    x0 = model.preprocess(image).to(device)
    size = tuple(x0.shape[-2:])
    for v in variants:
        if tuple(v.x.shape) != tuple(x0.shape):
            raise ValueError(f"Variant {v.name!r} has shape {tuple(v.x.shape)}; expected {tuple(x0.shape)}.")
    batch = torch.cat([x0] + [v.x.to(device) for v in variants])  # original first

    probabilities = model.probabilities(batch).cpu()
    prediction = model.predict(x0, k=5)
    target = prediction[0][0] if target is None else int(target)
    if not 0 <= target < len(model.labels):
        raise ValueError(f"Target class must be between 0 and {len(model.labels) - 1}; got {target}.")
    p0 = float(probabilities[0, target])
    outcomes = []
    for i, v in enumerate(variants, start=1):
        top = int(probabilities[i].argmax())
        pt = float(probabilities[i, target])
        changed = top != prediction[0][0]
        drop = p0 - pt
        valid = v.valid if v.valid is not None else np.ones(size, dtype=bool)
        outcomes.append(
            VariantOutcome(
                name=v.name,
                kind=v.kind,
                params=v.params,
                prediction=(top, model.labels[top], float(probabilities[i, top])),
                target_probability=pt,
                class_changed=changed,
                confidence_drop=drop,
                steady=not changed and drop <= thresholds.max_confidence_drop,
                valid_share=float(valid.mean()),
                image=v.image(),
            )
        )

    params = dict(params or {})
    originals, used_params, summary, errors = {}, {}, {}, {}
    if done is not None:  # go on with a run that stopped early: keep its methods
        if (
            done.image_hash != image_hash(image)
            or len(done.variants) != len(outcomes)
            or done.target != target
        ):
            raise ValueError("The earlier partial result is for another image, target or set of variants.")
        for outcome, old in zip(outcomes, done.variants):
            outcome.saliency.update(old.saliency)
            outcome.scores.update(old.scores)
        originals.update(done.saliency)
        used_params.update(done.params)
        errors.update(done.errors)
        summary.update({m: judge(outcomes, m, thresholds, model.labels[target]) for m in done.summary})
    todo = [m for m in methods if m not in summary and m not in errors]
    total = len(todo) * math.ceil(batch.shape[0] / int(batch_size))
    count = 0

    def so_far() -> StabilityResult:
        return StabilityResult(
            image=model.crop(image),
            image_hash=image_hash(image),
            model_fingerprint=model.fingerprint,
            prediction=prediction,
            target=target,
            target_label=model.labels[target],
            saliency=dict(originals),
            variants=[
                dataclasses.replace(o, saliency=dict(o.saliency), scores=dict(o.scores)) for o in outcomes
            ],
            summary=dict(summary),
            thresholds=thresholds,
            perturbation=perturbation,
            params=dict(used_params),
            errors=dict(errors),
        )

    for method in todo:
        own = {k: v for k, v in params.items() if k in get_method(method).defaults}
        try:
            drawn, signed, used, diagnostics = [], [], {}, []
            for start in range(0, batch.shape[0], int(batch_size)):
                d, s, used, diag = _maps(model, batch[start : start + int(batch_size)], target, method, own)
                drawn += d
                signed += s
                diagnostics += diag
                count += 1
                if progress is not None:
                    progress(count, total)
        except ValueError as err:
            errors[method] = str(err)
            continue
        originals[method], used_params[method] = drawn[0], used
        for v, outcome, d, s, diag in zip(variants, outcomes, drawn[1:], signed[1:], diagnostics[1:]):
            outcome.saliency[method] = d
            valid = v.valid if v.valid is not None else np.ones(size, dtype=bool)
            # at one stated detail: the coarser of the two maps' reproducible details (exact maps: 0)
            px = stated_detail(diagnostics[0], diag, size=int(min(np.shape(d))))
            at_detail = _scores(v, (drawn[0], d), (signed[0], s), valid, px, thresholds.top_k)
            raw = _scores(v, (drawn[0], d), (signed[0], s), valid, 0.0, thresholds.top_k) if px else at_detail
            outcome.scores[method] = {**at_detail, "detail_px": px, **{f"{k}_raw": raw[k] for k in MEASURES}}
        summary[method] = judge(outcomes, method, thresholds, model.labels[target])
        if on_result is not None:
            on_result(so_far())
    summary = {m: summary[m] for m in methods if m in summary}  # the caller's order
    result = so_far()
    result.summary = summary
    return result
