"""Slightly changed copies of an image, for the stability check: Gaussian pixel noise,
brightness, contrast, a shift of a few pixels, a small rotation, JPEG re-compression, or
reviewer-supplied similar images.

Shift and rotation are taken on the image as resized for the model, before the centre crop,
so the pixels that move into view are real image content rather than padding. Each variant
knows how to move its map back into the original's coordinates (``Variant.align``) and which
pixels are present in both images (``Variant.valid``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from ..engine.classifier import Classifier
from ..engine.images import ImageSource, load_image

KINDS = ("noise", "brightness", "contrast", "shift", "rotation", "jpeg")
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


def check_count(count) -> int:
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
    count = check_count(count)
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
