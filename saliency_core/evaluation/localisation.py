"""Does a saliency map point at the region an expert marked? Localisation measures and two
baselines that ignore the model.

All measures take a map (H, W) and a bool region (H, W) of the same shape and work on the
map's **relevance**: |saliency| for unsigned methods (their maps are magnitudes already) and
the positive part for signed methods (Integrated Gradients, gradient x input), where negative
values are evidence against the class (``relevance``).

- **Pointing game** (Zhang et al. 2016, "Top-down neural attention by excitation backprop"):
  a hit when the map's maximum lies inside the region or within ``tolerance`` pixels of it
  (15 px in the paper). Where several pixels share the maximum, the score is the share of
  them that hit: the expected result of breaking the tie at random.
- **Relevance mass** / energy-based pointing game (Arras et al. 2022, "CLEVR-XAI"; Wang et
  al. 2020, "Score-CAM"): share of the total relevance that falls inside the region.
- **Relevance rank accuracy** (Arras et al. 2022): with K = |region| pixels, the share of the
  K most relevant pixels that lie inside the region.
- **IoU of the top-k %**: intersection over union of the ``top_k`` share of most relevant
  pixels with the region.

Ties at the cut of the top-K pixels are shared in proportion (the expected value under a
random tie break), so a constant map scores chance level, never an artefact of pixel order.
A map with no positive relevance gets NaN for every measure (there is nothing to point with).

Baselines (Judd et al. 2009 for the centre bias): ``centre_bias_map`` is a centred Gaussian,
``random_map`` uniform noise; a method that does not beat them is not showing the model's use
of the marked region.

Example:
    >>> region = np.zeros((224, 224), bool); region[50:100, 60:120] = True
    >>> localisation_scores(region.astype(float), region)["relevance_mass"]
    1.0
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

POINTING_TOLERANCE = 15.0  # pixels, Zhang et al. 2016
TOP_K = 0.1  # share of pixels for the top-k IoU
CENTRE_SIGMA = 0.25  # centre-bias Gaussian: standard deviation as a share of the side

METRICS = {
    # name: (label, higher is better, one-line meaning)
    "pointing_game": (
        "Pointing game",
        True,
        "1 when the map's maximum lies in the region (within the tolerance), else 0",
    ),
    "relevance_mass": (
        "Relevance mass",
        True,
        "share of the map's relevance inside the region (energy-based pointing game)",
    ),
    "relevance_rank": (
        "Relevance rank accuracy",
        True,
        "share of the |region| most relevant pixels that lie inside the region",
    ),
    "iou_top_k": (
        "IoU of the top-k %",
        True,
        "intersection over union of the top-k % most relevant pixels with the region",
    ),
}


def relevance(saliency, signed: bool = False) -> np.ndarray:
    """The values the measures use: the positive part for signed methods, |saliency| otherwise.

    Args:
        saliency: (H, W) map.
        signed: whether the method's sign means something (``Method.signed``).
    Returns:
        float64 (H, W), non-negative.
    """
    s = np.asarray(saliency, dtype=np.float64)
    return np.clip(s, 0.0, None) if signed else np.abs(s)


def _check(saliency, region) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(saliency, dtype=np.float64)
    r = np.asarray(region)
    if s.ndim != 2:
        raise ValueError(f"A saliency map must be 2-D (H, W); got shape {s.shape}.")
    if r.shape != s.shape:
        raise ValueError(f"The region must have the map's shape {s.shape}; got {r.shape}.")
    if not np.isfinite(s).all():
        raise ValueError("The saliency map contains NaN or infinite values.")
    r = r.astype(bool)
    if not r.any():
        raise ValueError("The region is empty: no pixel is marked.")
    return s, r


def pointing_game(saliency, region, tolerance: float = POINTING_TOLERANCE, signed: bool = False) -> float:
    """1.0 when the map's maximum lies within ``tolerance`` pixels of the region, else 0.0.

    Args:
        saliency: (H, W) map.
        region: bool (H, W).
        tolerance: pixels (Euclidean distance between pixel centres); 0 = inside only.
        signed: use the positive part instead of |saliency|.
    Returns:
        The share of the maximal pixels that hit (1.0 or 0.0 unless there are ties); NaN if
        the map has no positive relevance.

    Example:
        >>> s = np.zeros((10, 10)); s[2, 2] = 1; r = np.zeros((10, 10), bool); r[2:4, 2:4] = True
        >>> pointing_game(s, r)
        1.0
    """
    s, r = _check(relevance(saliency, signed), region)
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"The tolerance must be a distance of 0 pixels or more; got {tolerance}.")
    peak = s.max()
    if peak <= 0:
        return math.nan
    distance = ndimage.distance_transform_edt(~r)
    at_peak = s == peak
    return float((distance[at_peak] <= tolerance + 1e-9).mean())


def relevance_mass(saliency, region, signed: bool = False) -> float:
    """Share of the relevance inside the region (energy-based pointing game); NaN for a map
    with no positive relevance.

    Example:
        >>> relevance_mass(np.ones((4, 4)), np.eye(4, dtype=bool))
        0.25
    """
    s, r = _check(relevance(saliency, signed), region)
    total = s.sum()
    return float(s[r].sum() / total) if total > 0 else math.nan


def _top_weights(s: np.ndarray, count: float) -> np.ndarray:
    """Weights in [0, 1] per pixel selecting the ``count`` largest values; pixels tied at the
    cut share the remaining places equally."""
    flat = s.ravel()
    n = flat.size
    count = min(max(float(count), 0.0), float(n))
    weights = np.zeros(n, dtype=np.float64)
    if count <= 0:
        return weights.reshape(s.shape)
    order = np.sort(flat)[::-1]
    cut = order[int(math.ceil(count)) - 1]
    above = flat > cut
    tied = flat == cut
    weights[above] = 1.0
    weights[tied] = (count - above.sum()) / tied.sum()
    return weights.reshape(s.shape)


def relevance_rank(saliency, region, signed: bool = False) -> float:
    """Share of the K most relevant pixels inside the region, K = number of region pixels;
    NaN for a map with no positive relevance.

    Example:
        >>> s = np.zeros((4, 4)); s[0, :2] = 1; r = np.zeros((4, 4), bool); r[0, :2] = True
        >>> relevance_rank(s, r)
        1.0
    """
    s, r = _check(relevance(saliency, signed), region)
    if s.max() <= 0:
        return math.nan
    w = _top_weights(s, r.sum())
    return float(w[r].sum() / r.sum())


def top_k_iou(saliency, region, top_k: float = TOP_K, signed: bool = False) -> float:
    """IoU of the ``top_k`` share of most relevant pixels with the region; NaN for a map with
    no positive relevance.

    Example:
        >>> s = np.arange(100.0).reshape(10, 10); r = s >= 90
        >>> top_k_iou(s, r, top_k=0.1)
        1.0
    """
    if not 0 < top_k <= 1:
        raise ValueError(f"top_k must be a share of the pixels in (0, 1]; got {top_k}.")
    s, r = _check(relevance(saliency, signed), region)
    if s.max() <= 0:
        return math.nan
    w = _top_weights(s, top_k * s.size)
    inter = w[r].sum()
    return float(inter / (r.sum() + w.sum() - inter))


def localisation_scores(
    saliency, region, *, signed: bool = False, tolerance: float = POINTING_TOLERANCE, top_k: float = TOP_K
) -> dict[str, float]:
    """Every localisation measure of one map against one region.

    Args:
        saliency: (H, W) map as the method gives it.
        region: bool (H, W), e.g. ``Region.mask`` from ``saliency_core.annotations``.
        signed: the method is signed: its positive part is measured (else |saliency|).
        tolerance: pointing game tolerance in pixels.
        top_k: share of pixels for the top-k IoU.
    Returns:
        ``{"pointing_game", "relevance_mass", "relevance_rank", "iou_top_k"}`` floats (NaN if
        the map has no positive relevance).

    Example:
        >>> localisation_scores(exp.saliency, region.mask, signed=sc.METHODS[exp.method].signed)
        {'pointing_game': 1.0, 'relevance_mass': 0.61, 'relevance_rank': 0.55, 'iou_top_k': 0.31}
    """
    s, r = _check(relevance(saliency, signed), region)
    return {
        "pointing_game": pointing_game(s, r, tolerance),
        "relevance_mass": relevance_mass(s, r),
        "relevance_rank": relevance_rank(s, r),
        "iou_top_k": top_k_iou(s, r, top_k),
    }


def centre_bias_map(height: int, width: int | None = None, sigma: float = CENTRE_SIGMA) -> np.ndarray:
    """A centred Gaussian, the map of "the object is in the middle" (it ignores the model).

    Args:
        height, width: map size (width defaults to height).
        sigma: standard deviation as a share of each side.
    Returns:
        float32 (height, width), 1 at the centre.

    Example:
        >>> m = centre_bias_map(224)     # even side: the four middle pixels share the peak
        >>> float(m[111, 111]) == float(m[112, 112]) == float(m.max())
        True
    """
    width = height if width is None else width
    if sigma <= 0:
        raise ValueError(f"sigma must be positive; got {sigma}.")
    y = (np.arange(height) + 0.5 - height / 2) / (sigma * height)
    x = (np.arange(width) + 0.5 - width / 2) / (sigma * width)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2)).astype(np.float32)


def random_map(height: int, width: int | None = None, rng: np.random.Generator | int = 0) -> np.ndarray:
    """Uniform noise in [0, 1): a map that knows nothing; seeded for replay.

    Example:
        >>> random_map(224, rng=np.random.default_rng(0)).shape
        (224, 224)
    """
    width = height if width is None else width
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return rng.random((height, width), dtype=np.float32)
