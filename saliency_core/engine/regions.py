"""Region view: which parts of the image hold most of a map's attribution, as outlines that a
reader can check against the picture instead of a speckled heatmap.

The image the model saw is cut into superpixels (SLIC, Achanta et al. 2012, scikit-image), each
region gets the attribution it holds, and regions are taken densest first (attribution per
pixel) until they hold a chosen share of the map's total (default 30 %). Densest-first is the
greedy answer to "the least area holding that share" when regions are whole; the set is the
shortest such prefix, so dropping its last region falls below the share.

Works for any method: unsigned maps use |saliency|; signed ones (Integrated Gradients,
gradient x input, occlusion) their positive part, the evidence for the class. This is not XRAI
(Kapishnikov et al. 2019), which ranks overlapping segments from several Felzenszwalb
segmentations by the gain in attribution density after removing pixels already chosen; here
there is one segmentation and whole regions.

Example:
    >>> labels = segment(exp.image)
    >>> chosen = outline_regions(exp.saliency, labels, share=0.3, signed=sc.METHODS[exp.method].signed)
    >>> chosen.share >= 0.3, chosen.area
    (True, 0.12)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

DEFAULT_SHARE = 0.3
DEFAULT_REGIONS = 100  # about 22 x 22 px regions at 224 px
COMPACTNESS = 10.0  # scikit-image's default for Lab colour: regions follow edges, stay compact


def segment(image, regions: int = DEFAULT_REGIONS, compactness: float = COMPACTNESS) -> np.ndarray:
    """SLIC superpixels of the image the model saw.

    Args:
        image: PIL image or uint8 (H, W, 3), e.g. ``Explanation.image``.
        regions: about how many regions (SLIC's ``n_segments``); 2 to 2000.
        compactness: SLIC's balance of colour against position.
    Returns:
        int (H, W) labels 0 .. n-1, every region connected. Deterministic.
    """
    from skimage.segmentation import slic

    picture = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    if picture.ndim != 3 or picture.shape[2] != 3:
        raise ValueError(f"Regions need an RGB image (H, W, 3); got shape {tuple(picture.shape)}.")
    if not (isinstance(regions, (int, np.integer)) and 2 <= regions <= 2000):
        raise ValueError(f"The number of regions must be a whole number between 2 and 2000; got {regions!r}.")
    labels = slic(picture, n_segments=int(regions), compactness=float(compactness), start_label=0)
    _, dense = np.unique(labels, return_inverse=True)  # labels 0 .. n-1 without gaps
    return dense.reshape(labels.shape).astype(np.int32)


@dataclass
class RegionChoice:
    """The regions that hold a share of a map's attribution.

    Attributes:
        labels: int (H, W) region of each pixel.
        chosen: region ids, densest first.
        selected: bool (H, W), the chosen regions.
        share: the share of the attribution they hold (>= ``target_share`` unless the map is empty).
        target_share: the share asked for.
        area: the share of the image they cover.
        regions: number of regions in the image.
        empty: the map has no attribution to share (all zero, or no positive values when signed).
        signed: whether the positive part was used (signed maps) rather than |saliency|.
    """

    labels: np.ndarray
    chosen: list[int]
    selected: np.ndarray
    share: float
    target_share: float
    area: float
    regions: int
    empty: bool
    signed: bool


def relevance(saliency: np.ndarray, signed: bool) -> np.ndarray:
    """What is ranked: the positive part of a signed map, |saliency| otherwise, float64."""
    s = np.asarray(saliency, dtype=np.float64)
    return np.clip(s, 0, None) if signed else np.abs(s)


def outline_regions(
    saliency: np.ndarray, labels: np.ndarray, share: float = DEFAULT_SHARE, signed: bool = False
) -> RegionChoice:
    """The densest regions, in order, until they hold ``share`` of the map's attribution.

    Args:
        saliency: (H, W) map (``Explanation.saliency``).
        labels: (H, W) regions from ``segment``.
        share: the share of the attribution to hold, in (0, 1].
        signed: rank the positive part (for signed methods) instead of |saliency|.
    Returns:
        ``RegionChoice``; for an empty map nothing is chosen and ``empty`` is True.
    """
    s = np.asarray(saliency)
    labels = np.asarray(labels)
    if s.shape != labels.shape or s.ndim != 2:
        raise ValueError(
            f"The map has shape {tuple(s.shape)} and the regions {tuple(labels.shape)}; "
            "both must be the same (H, W)."
        )
    share = float(share)
    if not (math.isfinite(share) and 0 < share <= 1):
        raise ValueError(f"The share of the attribution must be between 0 and 1; got {share}.")
    r = relevance(s, signed)
    if not np.isfinite(r).all():
        raise ValueError("The map has values that are not finite numbers.")
    if labels.min() < 0:
        raise ValueError("Region labels must be 0 or more.")
    n = int(labels.max()) + 1
    mass = np.bincount(labels.ravel(), weights=r.ravel(), minlength=n)
    size = np.bincount(labels.ravel(), minlength=n)
    total = float(mass.sum())
    if total <= 0:
        return RegionChoice(
            labels=labels,
            chosen=[],
            selected=np.zeros(s.shape, bool),
            share=0.0,
            target_share=share,
            area=0.0,
            regions=int((size > 0).sum()),
            empty=True,
            signed=signed,
        )
    density = np.where(size > 0, mass / np.maximum(size, 1), -np.inf)
    order = np.argsort(-density, kind="stable")
    held = np.cumsum(mass[order])
    k = int(np.searchsorted(held, share * total)) + 1
    k = min(k, n)
    while k < n and mass[order[:k]].sum() < share * total:  # float rounding in the running sum
        k += 1
    chosen = [int(i) for i in order[:k]]
    selected = np.isin(labels, chosen)
    return RegionChoice(
        labels=labels,
        chosen=chosen,
        selected=selected,
        share=float(mass[chosen].sum() / total),
        target_share=share,
        area=float(selected.mean()),
        regions=int((size > 0).sum()),
        empty=False,
        signed=signed,
    )


def legend(choice: RegionChoice, target_label: str | None = None) -> str:
    """Plain words for what the outline shows."""
    score = f"the score for {target_label!r}" if target_label else "the explained class's score"
    what = "positive attribution (evidence for the class)" if choice.signed else "attribution"
    if choice.empty:
        return f"Nothing is outlined: the map holds no {what} for {score}, so no region stands out."
    return (
        f"Outlined: {len(choice.chosen)} region(s) holding {choice.share:.0%} of the map's {what} for "
        f"{score} (asked: at least {choice.target_share:.0%}), covering {choice.area:.0%} of the image; "
        f"regions of similar colour (SLIC superpixels, {choice.regions} in all), densest first; the rest "
        "is dimmed."
    )
