"""Does the model depend on the pixels a map highlights? Deletion and insertion curves
(Petsiuk et al. 2018, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
Sec. 4.1).

- **Deletion**: starting from the image, replace ``step`` pixels at a time, most relevant
  first, with the replacement; record the target class's softmax probability after each step.
  A faithful map makes it fall fast: **lower area is better**.
- **Insertion**: starting from the replacement, put the image's pixels back in the same order.
  A faithful map makes the probability rise fast: **higher area is better**.

The area is the trapezoid rule over the fraction of pixels changed, in [0, 1].

Settings, stated with every result (``Curve.record``):

- ``step``: pixels per step. Petsiuk et al. use 224 (one row of a 224 px image, 224 steps);
  that is 225 forward passes per curve. ``saliency_core.validate`` defaults to a coarser 5 %.
- ``replacement``: ``"blurred"`` (Gaussian blur, 11 px kernel, sigma 5, as in the RISE code;
  reflected at the border), ``"mean"`` (the image's mean colour per channel), ``"black"``,
  or three numbers in [0, 1] (a constant colour; the model's normalisation mean gives the
  RISE code's deletion, which sets normalised pixels to zero). Defaults: deletion ``"mean"``,
  insertion ``"blurred"``.
- Pixel order: by relevance, |saliency| for unsigned methods and the positive part for signed
  ones (``signed=True``); ties broken at random with ``seed``, so a flat region is not removed
  in raster order.

Example:
    >>> curve = deletion_curve(model.network, x, exp.saliency, exp.target, step=224)
    >>> round(curve.auc, 3), curve.replacement
    (0.071, 'mean')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms import functional as TF

from .localisation import relevance

STEP = 224  # pixels per step (Petsiuk et al. 2018)
DELETION_REPLACEMENT = "mean"
INSERTION_REPLACEMENT = "blurred"
REPLACEMENTS = ("blurred", "mean", "black")
BLUR_KERNEL = 11  # RISE code: gkern(klen=11, nsig=5)
BLUR_SIGMA = 5.0
BATCH_SIZE = 32  # images per forward pass (CPU, one thread: 24 ms per image alone,
# 18 ms in batches of 32; see bench/pages.py)

METRICS = {
    # name: (label, higher is better, one-line meaning)
    "deletion_auc": (
        "Deletion AUC",
        False,
        "area under the target probability as the most relevant pixels are removed; lower is better",
    ),
    "insertion_auc": (
        "Insertion AUC",
        True,
        "area under the target probability as the most relevant pixels are restored; higher is better",
    ),
}


@dataclass
class Curve:
    """A deletion or insertion curve.

    Attributes:
        mode: ``"deletion"`` or ``"insertion"``.
        fractions: float64 (steps + 1,), share of pixels changed, 0 to 1.
        scores: float64 (steps + 1,), probability of ``target`` at each point: softmax, or for a
            multi-label model (``probability="sigmoid"``) the class's own sigmoid.
        auc: trapezoid area under ``scores`` over ``fractions``.
        step: pixels per step; ``replacement``: what removed pixels became.
    """

    mode: str
    fractions: np.ndarray
    scores: np.ndarray
    auc: float
    step: int
    replacement: str
    target: int
    seed: int
    probability: str = "softmax"

    def record(self) -> dict:
        return {
            "mode": self.mode,
            "auc": self.auc,
            "step": self.step,
            "replacement": self.replacement,
            "target": self.target,
            "seed": self.seed,
            "fractions": self.fractions.tolist(),
            "scores": self.scores.tolist(),
            "score": f"{self.probability} probability of the target class",
        }


def _network(model):
    return getattr(model, "network", model)


def _multilabel(model) -> bool:
    """A multi-label Classifier (sigmoid outputs): a class's probability is its own sigmoid."""
    return bool(getattr(model, "multilabel", False))


def _probability(model, logits: torch.Tensor, target: int) -> list[float]:
    """The probability the model reports for ``target`` in each row of ``logits``: softmax over
    the classes, or a multi-label class's own sigmoid."""
    logits = logits.float()
    multilabel = _multilabel(model)
    if logits.dim() != 2 or logits.shape[1] < (1 if multilabel else 2):
        raise ValueError(
            f"The network must return scores (batch, classes) for two or more classes; "
            f"it returned shape {tuple(logits.shape)}."
        )
    probability = logits.sigmoid() if multilabel else logits.softmax(dim=1)
    return probability[:, int(target)].double().cpu().tolist()


def replacement_image(
    x: torch.Tensor, replacement="mean", blur_kernel: int = BLUR_KERNEL, blur_sigma: float = BLUR_SIGMA
) -> torch.Tensor:
    """What removed pixels become, same shape as ``x`` (1, C, H, W).

    Args:
        x: the image, pixels in [0, 1].
        replacement: ``"blurred"``, ``"mean"``, ``"black"`` or C numbers (a constant colour).
    Example:
        >>> replacement_image(x, "blurred").shape == x.shape
        True
    """
    if isinstance(replacement, str):
        if replacement == "blurred":
            return TF.gaussian_blur(x, [blur_kernel, blur_kernel], [blur_sigma, blur_sigma])
        if replacement == "mean":
            return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
        if replacement == "black":
            return torch.zeros_like(x)
        raise ValueError(
            f"Unknown replacement {replacement!r}; use one of {', '.join(REPLACEMENTS)} "
            "or a colour (three numbers in [0, 1])."
        )
    colour = torch.as_tensor(list(replacement), dtype=x.dtype, device=x.device)
    if colour.numel() != x.shape[1]:
        raise ValueError(f"A replacement colour needs {x.shape[1]} numbers; got {colour.numel()}.")
    return colour.view(1, -1, 1, 1).expand_as(x).clone()


def _replacement_name(replacement) -> str:
    if isinstance(replacement, str):
        return replacement
    return "colour (" + ", ".join(f"{float(v):.3f}" for v in replacement) + ")"


def pixel_order(saliency, signed: bool = False, seed: int = 0) -> np.ndarray:
    """Flat pixel indices, most relevant first; equal values in a seeded random order.

    Example:
        >>> pixel_order(np.array([[0., 2.], [1., 0.]]))[:2]
        array([1, 2])
    """
    values = relevance(saliency, signed).ravel()
    shuffle = np.random.default_rng(seed).permutation(values.size)
    return shuffle[np.argsort(-values[shuffle], kind="stable")]


def area_under_curve(fractions: Sequence[float], scores: Sequence[float]) -> float:
    """Trapezoid area of ``scores`` over ``fractions``."""
    f, s = np.asarray(fractions, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    return float(np.sum((f[1:] - f[:-1]) * (s[1:] + s[:-1]) / 2.0))


def _check_inputs(x: torch.Tensor, saliency, step) -> tuple[np.ndarray, int]:
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"Expected one preprocessed image of shape (1, C, H, W); got {tuple(x.shape)}.")
    s = np.asarray(saliency)
    if s.shape != tuple(x.shape[2:]):
        raise ValueError(f"The map is {s.shape} but the image is {tuple(x.shape[2:])}; they must match.")
    step = int(step)
    if step < 1:
        raise ValueError(f"step must be 1 pixel or more; got {step}.")
    return s, step


@torch.no_grad()
def causal_curves(
    model,
    x: torch.Tensor,
    saliency,
    target: int,
    modes: Sequence[str] = ("deletion", "insertion"),
    *,
    step: int = STEP,
    replacements: dict | None = None,
    signed: bool = False,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    backgrounds: dict | None = None,
    end_scores: dict | None = None,
) -> dict[str, Curve]:
    """Several curves of one image and one map, their points sent through the network together
    (``batch_size`` images per forward pass, whichever curve they belong to).

    Args:
        modes: ``"deletion"`` and/or ``"insertion"``.
        replacements: mode -> replacement (see ``replacement_image``); a mode not given gets its
            default (deletion ``"mean"``, insertion ``"blurred"``).
        backgrounds: mode -> the replacement image already computed (speed only).
        end_scores: the target's probability on the image (key ``"image"``) and on each mode's
            background (key: the mode), where already known (``end_scores``): a curve's first and
            last points do not depend on the map, so several maps of one image share them.
        Others: as in ``causal_curve``.
    Returns:
        mode -> ``Curve``, each exactly as ``causal_curve`` gives it.

    Example:
        >>> curves = causal_curves(model, x, exp.saliency, exp.target, step=2509)
        >>> curves["deletion"].auc < curves["insertion"].auc
        True
    """
    s, step = _check_inputs(x, saliency, step)
    replacements, backgrounds = dict(replacements or {}), dict(backgrounds or {})
    h, w = x.shape[2], x.shape[3]
    n = h * w
    steps = int(math.ceil(n / step))
    rank = np.empty(n, dtype=np.int64)
    rank[pixel_order(s, signed, seed)] = np.arange(n)
    changed_at = torch.from_numpy(rank // step).view(1, 1, h, w).to(x.device)  # step that changes it
    ends, used = _curve_ends(x, modes, replacements, backgrounds)
    # every point of every curve: (curve, step k); image = end where the pixel changed before k.
    # Step 0 is the start image, step `steps` the end image (every pixel changed): known ones are not run.
    scores = _known_scores(modes, dict(end_scores or {}), steps)
    points = [(c, k) for c in range(len(ends)) for k in range(steps + 1) if np.isnan(scores[c, k])]
    network = _network(model)
    for first in range(0, len(points), max(1, int(batch_size))):
        chunk = points[first : first + max(1, int(batch_size))]
        batch = torch.cat([torch.where(changed_at < k, ends[c][1], ends[c][0]) for c, k in chunk])
        for (c, k), p in zip(chunk, _probability(model, network(batch), target)):
            scores[c, k] = p
    fractions = np.minimum(np.arange(steps + 1) * step, n) / n
    return {
        mode: Curve(
            mode=mode,
            fractions=fractions.copy(),
            scores=scores[i],
            auc=area_under_curve(fractions, scores[i]),
            step=step,
            replacement=_replacement_name(used[mode]),
            target=int(target),
            seed=int(seed),
            probability="sigmoid" if _multilabel(model) else "softmax",
        )
        for i, mode in enumerate(modes)
    }


def _curve_ends(x: torch.Tensor, modes: Sequence[str], replacements: dict, backgrounds: dict):
    """Per mode, the (start, end) images of its curve, and mode -> the replacement used."""
    ends, used = [], {}
    for mode in modes:
        if mode not in ("deletion", "insertion"):
            raise ValueError(f"mode must be 'deletion' or 'insertion'; got {mode!r}.")
        used[mode] = replacements.get(mode)
        if used[mode] is None:
            used[mode] = DELETION_REPLACEMENT if mode == "deletion" else INSERTION_REPLACEMENT
        other = backgrounds[mode] if backgrounds.get(mode) is not None else replacement_image(x, used[mode])
        ends.append((x, other) if mode == "deletion" else (other, x))
    return ends, used


def _known_scores(modes: Sequence[str], known: dict, steps: int) -> np.ndarray:
    """(curves, steps + 1) scores, NaN except the first and last points already known."""
    scores = np.full((len(modes), steps + 1), np.nan)
    for c, mode in enumerate(modes):
        first, last = ("image", mode) if mode == "deletion" else (mode, "image")
        if known.get(first) is not None:
            scores[c, 0] = known[first]
        if known.get(last) is not None:
            scores[c, steps] = known[last]
    return scores


@torch.no_grad()
def end_scores(model, x: torch.Tensor, target: int, backgrounds: dict) -> dict:
    """The target's probability on the image and on each background (mode -> image), in one
    forward pass: the first and last points of every curve of this image (``causal_curves``).

    Example:
        >>> end_scores(model, x, 281, {"deletion": replacement_image(x, "mean")})
        {'image': 0.39..., 'deletion': 0.001...}
    """
    names = ["image", *backgrounds]
    return dict(
        zip(names, _probability(model, _network(model)(torch.cat([x, *backgrounds.values()])), target))
    )


def causal_curve(
    model,
    x: torch.Tensor,
    saliency,
    target: int,
    mode: str = "deletion",
    *,
    step: int = STEP,
    replacement=None,
    signed: bool = False,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    background: torch.Tensor | None = None,
) -> Curve:
    """A deletion or insertion curve of one image.

    Args:
        model: a ``Classifier`` or a network mapping (B, C, H, W) pixels to logits (B, classes).
        x: the preprocessed image (1, C, H, W).
        saliency: (H, W) map; its relevance (see ``signed``) orders the pixels.
        target: the class whose probability is followed.
        mode: ``"deletion"`` or ``"insertion"``.
        step: pixels changed per step (1 or more).
        replacement: see ``replacement_image``; None = the mode's default (deletion ``"mean"``,
            insertion ``"blurred"``).
        signed: the method is signed: order by the positive part, not |saliency|.
        seed: tie break of equal values.
        batch_size: images per forward pass (speed only).
        background: the replacement image already computed (speed only; must match ``replacement``).
    Returns:
        ``Curve`` with ``ceil(H*W / step) + 1`` points.
    Raises:
        ValueError: shapes do not match, a bad step, mode or replacement, or a network with
            fewer than two outputs (a softmax probability needs two or more).

    Example:
        >>> c = causal_curve(model, x, exp.saliency, exp.target, "insertion", step=224)
        >>> c.scores[0], c.scores[-1]      # blurred image ... the image itself
        (0.02..., 0.91...)
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion'; got {mode!r}.")
    return causal_curves(
        model,
        x,
        saliency,
        target,
        (mode,),
        step=step,
        replacements={mode: replacement},
        signed=signed,
        seed=seed,
        batch_size=batch_size,
        backgrounds={mode: background},
    )[mode]


def deletion_curve(model, x: torch.Tensor, saliency, target: int, **options) -> Curve:
    """``causal_curve(..., mode="deletion")``: lower area = more faithful.

    Example:
        >>> deletion_curve(model, x, exp.saliency, exp.target, step=224, replacement="blurred").auc
        0.08...
    """
    return causal_curve(model, x, saliency, target, "deletion", **options)


def insertion_curve(model, x: torch.Tensor, saliency, target: int, **options) -> Curve:
    """``causal_curve(..., mode="insertion")``: higher area = more faithful.

    Example:
        >>> insertion_curve(model, x, exp.saliency, exp.target, step=224).auc
        0.52...
    """
    return causal_curve(model, x, saliency, target, "insertion", **options)
