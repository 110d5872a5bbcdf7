"""How alike two models' saliency maps are: whether they can be compared pixel by pixel at all
(``map_grid_reason``), one map resampled onto the other's grid (``align``), the rank correlation
of |map| and the overlap of the strongest pixels at a stated detail (``agreement``), and B's map
minus A's on one colour scale (``map_difference``).
"""

from __future__ import annotations

import numpy as np

from ..engine.detail import smooth
from .similarity import spearman, top_k_overlap

TOP_SHARE = 0.1  # "strongest pixels": the top 10 % by |value|
SAME_CROP = 1e-3  # crop share (input_size / resize) within which two models see the same region


def map_grid_reason(model_a, model_b) -> str | None:
    """None when the two models' maps can be compared pixel by pixel (they see the same region of
    the image, maybe at different resolutions); else why not, in words."""
    share_a = model_a.input_size / model_a.resize
    share_b = model_b.input_size / model_b.resize
    if abs(share_a - share_b) > SAME_CROP:
        return (
            f"model A sees a {model_a.input_size} px centre crop of the image resized to {model_a.resize} "
            f"px, model B a {model_b.input_size} px crop of {model_b.resize} px: they see different parts "
            "of the image, so their maps do not line up pixel for pixel."
        )
    return None


def align(saliency: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``saliency`` resampled (bilinear) to ``shape`` (H, W); unchanged when it already has it."""
    saliency = np.asarray(saliency, dtype=np.float32)
    if saliency.shape == tuple(shape):
        return saliency
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(saliency))[None, None]
    return F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0].numpy()


def agreement(
    a: np.ndarray, b: np.ndarray, top_share: float = TOP_SHARE, detail_px: float = 0.0
) -> dict[str, float]:
    """Rank correlation of |a| and |b| and the overlap of their strongest ``top_share`` pixels
    (``b`` is resampled to ``a``'s shape first), at a stated detail: both maps blurred by a
    Gaussian of ``detail_px`` px (engine/detail.py; 0: the raw pixels). Beside them the same two
    numbers on the raw pixels (``spearman_raw``, ``top_overlap_raw``) and ``detail_px``.

    Example:
        >>> agreement(m, m)
        {'spearman': 1.0, 'top_overlap': 1.0, 'detail_px': 0.0, 'spearman_raw': 1.0, 'top_overlap_raw': 1.0}
    """
    b = align(b, a.shape)
    raw = {"spearman": spearman(np.abs(a), np.abs(b)), "top_overlap": top_k_overlap(a, b, top_share)}
    at = raw
    if detail_px > 0:
        sa, sb = smooth(np.abs(a), detail_px), smooth(np.abs(b), detail_px)
        at = {"spearman": spearman(sa, sb), "top_overlap": top_k_overlap(sa, sb, top_share)}
    return {
        **at,
        "detail_px": float(detail_px),
        "spearman_raw": raw["spearman"],
        "top_overlap_raw": raw["top_overlap"],
    }


def map_difference(a: np.ndarray, b: np.ndarray, scale: float, sign: str = "absolute") -> np.ndarray:
    """B's map minus A's on one colour scale, for the difference view.

    Both maps are normalised with the same ``scale`` (``render.shared_scale`` of the two) and
    ``sign`` as the overlays are, then subtracted; ``b`` is resampled to ``a``'s shape.

    Returns:
        float32 (H, W) in [-1, 1]: positive where B's map is stronger, negative where A's is
        (a signed difference is halved to fit). Zeros when ``scale`` is 0 (both maps empty).
    """
    from ..engine.render import map_values

    b = align(b, a.shape)
    if not scale > 0:
        return np.zeros(a.shape, dtype=np.float32)
    va, _ = map_values(a, sign=sign, scale=scale)
    vb, _ = map_values(b, sign=sign, scale=scale)
    diff = vb - va
    return (diff / 2 if sign == "signed" else diff).astype(np.float32)
