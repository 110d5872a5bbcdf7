"""How alike two saliency maps are: rank correlation, top-k overlap, SSIM, HOG similarity.

The measures of Adebayo et al. 2018 (Sanity Checks for Saliency Maps, Sec. 3) and of the
stability literature (Alvarez-Melis & Jaakkola 2018). All take two maps of the same shape
(H, W) and an optional boolean ``mask`` (H, W) of the pixels to compare (e.g. the region that
is valid in both an image and its shifted copy); they return plain floats.

Scale does not matter for any of them: each map is compared by its ordering (Spearman,
top-k) or after its own normalisation (SSIM and HOG: |map| divided by its 99th percentile,
clipped to [0, 1], the same scaling the overlays use).

Example:
    >>> a = np.random.default_rng(0).random((224, 224))
    >>> compare(a, a)["spearman_abs"]
    1.0
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

SSIM_SIGMA = 1.5  # Gaussian window, Wang et al. 2004 (11 x 11 window)
SSIM_RADIUS = 5  # pixels; skimage's window radius for sigma 1.5 (truncate 3.5)
NORMALISE_PERCENTILE = 99.0
HOG_CELL = 16  # pixels per HOG cell (14 x 14 cells on a 224 px map)


def _check_pair(a, b, mask=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"Two saliency maps of the same 2-D shape (H, W) are needed; got {a.shape} and {b.shape}."
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("A saliency map contains NaN or infinite values; it cannot be compared.")
    if mask is None:
        mask = np.ones(a.shape, dtype=bool)
    else:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != a.shape:
            raise ValueError(f"The mask must have the maps' shape {a.shape}; got {mask.shape}.")
    if mask.sum() < 2:
        raise ValueError("The region to compare is empty (fewer than 2 valid pixels).")
    return a, b, mask


def rank(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a 1-D array, ties sharing their average rank (as Spearman's rho needs)."""
    values = np.asarray(values).ravel()
    order = np.argsort(values, kind="mergesort")
    position = np.empty(len(values), dtype=np.intp)
    position[order] = np.arange(len(values))
    ordered = values[order]
    starts = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    group = np.cumsum(starts)[position]  # 1-based tie group of each value
    bounds = np.concatenate([np.flatnonzero(starts), [len(values)]])
    # a group spans sorted positions bounds[g-1] .. bounds[g]-1: average 1-based rank
    return 0.5 * (bounds[group - 1] + bounds[group] + 1)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x = x - x.mean()
    y = y - y.mean()
    nx, ny = math.sqrt(float(x @ x)), math.sqrt(float(y @ y))
    if nx == 0 and ny == 0:
        return 1.0  # both constant: nothing distinguishes them
    if nx == 0 or ny == 0:
        return 0.0  # one constant: no shared ordering
    return float(np.clip((x @ y) / (nx * ny), -1.0, 1.0))


def spearman(a, b, mask=None) -> float:
    """Spearman rank correlation of two maps over the pixels in ``mask``.

    Args:
        a, b: (H, W) maps. Use ``np.abs`` first for the correlation of magnitudes.
        mask: (H, W) bool, pixels to compare; None = all.
    Returns:
        rho in [-1, 1]. By convention 1.0 when both maps are constant on the region and 0.0
        when only one is (a flat map shares no ordering with another).

    Example:
        >>> spearman(np.arange(4.0).reshape(2, 2), np.arange(4.0).reshape(2, 2) ** 3)
        1.0
    """
    a, b, mask = _check_pair(a, b, mask)
    return _pearson(rank(a[mask]), rank(b[mask]))


def top_k_overlap(a, b, fraction: float = 0.1, mask=None) -> float:
    """Share of the ``fraction`` most salient pixels of ``a`` (by |value|) that are also
    among the most salient of ``b``.

    Args:
        a, b: (H, W) maps.
        fraction: share of the (masked) pixels that counts as "top", in (0, 1]; 0.1 = top 10%.
        mask: (H, W) bool, pixels to compare.
    Returns:
        |top(a) and top(b)| / k in [0, 1]; two unrelated random maps score about ``fraction``.
        Ties are broken by pixel position, so a map compared with itself always scores 1.
    """
    a, b, mask = _check_pair(a, b, mask)
    if not 0 < float(fraction) <= 1:
        raise ValueError(f"The top-k fraction must be between 0 and 1 (e.g. 0.1 for 10%); got {fraction}.")
    va, vb = np.abs(a[mask]), np.abs(b[mask])
    k = max(1, int(round(fraction * va.size)))
    top_a = np.argsort(-va, kind="stable")[:k]
    top_b = np.argsort(-vb, kind="stable")[:k]
    return float(np.intersect1d(top_a, top_b, assume_unique=True).size / k)


def normalise(saliency, percentile: float = NORMALISE_PERCENTILE) -> np.ndarray:
    """|map| / its ``percentile``-th percentile of non-zero values, clipped to [0, 1] (float64).

    A map that is zero everywhere stays zero.
    """
    s = np.abs(np.asarray(saliency, dtype=np.float64))
    nonzero = s[s > 0]
    if nonzero.size == 0:
        return np.zeros_like(s)
    scale = float(np.percentile(nonzero, percentile))
    return np.clip(s / scale, 0.0, 1.0) if scale > 0 else np.zeros_like(s)


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood lies inside ``mask`` (outside the map counts as outside)."""
    outside = torch.from_numpy(~mask).float()[None, None]
    outside = F.pad(outside, [radius] * 4, value=1.0)
    grown = F.max_pool2d(outside, 2 * radius + 1, stride=1)
    return (grown[0, 0] == 0).numpy()


def ssim(a, b, mask=None) -> float:
    """Structural similarity (Wang et al. 2004) of the normalised |maps|.

    Gaussian window sigma 1.5 (11 x 11), K1 = 0.01, K2 = 0.03, data range 1, via
    scikit-image's ``structural_similarity``; the SSIM map is averaged over the pixels whose
    whole window lies inside ``mask`` (without a mask: all but a 5 px border, as scikit-image).

    Args:
        a, b: (H, W) maps; each is normalised by ``normalise`` first.
        mask: (H, W) bool, pixels to compare.
    Returns:
        Mean SSIM in [-1, 1]; 1 for identical maps.
    """
    from skimage.metrics import structural_similarity

    a, b, mask = _check_pair(a, b, mask)
    if min(a.shape) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs maps of at least {2 * SSIM_RADIUS + 1} pixels a side; got {a.shape}.")
    _, full = structural_similarity(
        normalise(a),
        normalise(b),
        data_range=1.0,
        gaussian_weights=True,
        sigma=SSIM_SIGMA,
        use_sample_covariance=False,
        full=True,
    )
    inner = _erode(mask, SSIM_RADIUS)
    if not inner.any():
        raise ValueError(f"The region to compare is too thin for SSIM's {2 * SSIM_RADIUS + 1} px window.")
    return float(full[inner].mean())


def hog_similarity(a, b, mask=None) -> float:
    """Pearson correlation of the HOG descriptors (Dalal & Triggs 2005) of the normalised |maps|,
    as in Adebayo et al. 2018: 9 orientations, 16 px cells, 2 x 2 cell blocks.

    Pixels outside ``mask`` are set to 0 in both maps first.
    """
    from skimage.feature import hog

    a, b, mask = _check_pair(a, b, mask)
    if min(a.shape) < 2 * HOG_CELL:
        raise ValueError(
            f"HOG similarity needs maps of at least {2 * HOG_CELL} pixels a side; got {a.shape}."
        )
    options = dict(orientations=9, pixels_per_cell=(HOG_CELL, HOG_CELL), cells_per_block=(2, 2))
    ha = hog(normalise(a) * mask, **options)
    hb = hog(normalise(b) * mask, **options)
    return _pearson(ha, hb)


MEASURES = ("spearman_abs", "spearman_signed", "top_k_overlap", "ssim", "hog")


def compare(
    a,
    b,
    mask=None,
    *,
    signed_a=None,
    signed_b=None,
    fraction: float = 0.1,
    measures: tuple[str, ...] = ("spearman_abs", "spearman_signed", "top_k_overlap", "ssim"),
) -> dict:
    """Several similarities of map ``b`` to map ``a`` in one call.

    Args:
        a, b: (H, W) drawn saliency maps (``Explanation.saliency``).
        mask: (H, W) bool, the pixels to compare.
        signed_a, signed_b: signed versions of the maps for ``spearman_signed`` (e.g. the
            attribution summed over colour channels); default ``a`` and ``b``.
        fraction: the top-k share for ``top_k_overlap``.
        measures: which of ``MEASURES`` to compute.
    Returns:
        ``{measure: float}``: ``spearman_abs`` (rank correlation of |a| and |b|),
        ``spearman_signed``, ``top_k_overlap``, ``ssim``, ``hog``.

    Example:
        >>> compare(exp.saliency, exp.saliency)
        {'spearman_abs': 1.0, 'spearman_signed': 1.0, 'top_k_overlap': 1.0, 'ssim': 1.0}
    """
    unknown = set(measures) - set(MEASURES)
    if unknown:
        raise ValueError(
            f"Unknown similarity measure(s) {', '.join(sorted(unknown))}; choose from {', '.join(MEASURES)}."
        )
    out = {}
    for name in measures:
        if name == "spearman_abs":
            out[name] = spearman(np.abs(np.asarray(a)), np.abs(np.asarray(b)), mask)
        elif name == "spearman_signed":
            out[name] = spearman(
                a if signed_a is None else signed_a, b if signed_b is None else signed_b, mask
            )
        elif name == "top_k_overlap":
            out[name] = top_k_overlap(a, b, fraction, mask)
        elif name == "ssim":
            out[name] = ssim(a, b, mask)
        else:
            out[name] = hog_similarity(a, b, mask)
    return out
