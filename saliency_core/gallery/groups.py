"""Shortcut groups: spectral relevance analysis (SpRAy; Lapuschkin et al. 2019, "Unmasking Clever
Hans predictors and assessing what machines really learn").

Per predicted class, the stored maps are

1. smoothed to their reproducible detail where the method records one
   (``engine.detail.reproducible_px``; exact maps are taken as they are),
2. turned into relevance (|map|, or the positive part of a signed method), summed over blocks
   to ``SIDE`` x ``SIDE`` (32 x 32, as in the paper) and normalised to sum 1 (mean maps and
   flags use these), then to unit length for the distances, so a group is about *where* the
   relevance sits, not how much there is or how peaked it is;
3. linked into a k-nearest-neighbour graph (``KNN`` neighbours, fewer for small classes,
   symmetrised; scikit-learn's ``kneighbors_graph``, on 32 PCA components above 1,000 maps),
   whose normalised Laplacian's smallest eigenvalues give the
   **eigengap**: the number of groups k is where the gap between consecutive eigenvalues is
   largest (at most ``MAX_GROUPS``);
4. clustered by spectral clustering (Ng, Jordan & Weiss 2001: the k leading eigenvectors,
   rows normalised, then scikit-learn's k-means).

Each group has its mean map, its size and its members ordered by closeness to the group's
centre (the first are the example tiles). A group whose mean relevance sits on one spot away
from where objects usually are, a corner (``CORNER_SHARE`` of it in one corner square of 1/16
of the picture) or the edge band (``EDGE_SHARE`` in the outer eighth of each side), is
flagged in words: a shortcut candidate such as a watermark, a tag or a border.

The 32 x 32 maps are kept in the result store (``small_maps``), so a second grouping reads
4 KB per image instead of decoding the full map.

Example:
    >>> found = class_groups(store, model, rows, "gradient", {})
    >>> [(g.label, g.size, g.flag) for g in found["espresso"].groups]
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..engine.detail import reproducible_px, smooth
from ..engine.methods import METHODS
from ..engine.untrusted import InflateError
from .store import ResultStore, decode_map, model_key, params_key

SIDE = 32  # maps are compared at 32 x 32 (Lapuschkin et al. 2019)
KNN = 10  # neighbours in the affinity graph (fewer for small classes: about the square root of the maps)
MAX_GROUPS = 8  # the eigengap looks for at most this many groups
MIN_MAPS = 6  # fewer maps in a class: no grouping
CORNER_SHARE = 0.5  # of the mean map in one corner square (1/16 of the picture; chance 0.0625)
EDGE_SHARE = 0.75  # of the mean map in the outer eighth of each side (chance 0.4375)
EXAMPLES = 6  # example members per group
SEED = 0  # k-means and the eigensolver are seeded: the same maps give the same groups
PCA_FROM = 1000  # more maps than this: neighbours are searched on PCA components
PCA_DIMS = 32


@dataclass
class Group:
    """One group of a class: ``members`` (image hashes, closest to the centre first), the mean
    normalised map (``SIDE`` x ``SIDE``), and ``flag``: words when it looks like a shortcut."""

    label: str
    members: list[str]
    mean_map: np.ndarray
    flag: str = ""

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass
class ClassGroups:
    """The groups of one class, the eigenvalues that chose their number, and the time taken."""

    label: str
    groups: list[Group] = field(default_factory=list)
    eigenvalues: list[float] = field(default_factory=list)
    note: str = ""
    seconds: float = 0.0


# ---- maps at 32 x 32 ---------------------------------------------------------------------------------


def downsample(saliency: np.ndarray, signed: bool = False, detail_px: float | None = None) -> np.ndarray:
    """A map (H, W) -> relevance summed over blocks to (SIDE, SIDE), normalised to sum 1 (all
    zero for a map without relevance). ``detail_px`` smooths it first (reproducible detail)."""
    s = np.asarray(saliency, dtype=np.float32)
    if s.ndim != 2 or min(s.shape) < 1:
        raise ValueError(f"expected a saliency map (H, W), got shape {s.shape}")
    if detail_px:
        s = smooth(s, detail_px)
    s = np.nan_to_num(np.clip(s, 0, None) if signed else np.abs(s), nan=0.0, posinf=0.0, neginf=0.0)
    h, w = s.shape
    if h % SIDE == 0 and w % SIDE == 0:  # whole blocks (224 = 32 x 7): a reshape
        out = s.astype(np.float64).reshape(SIDE, h // SIDE, SIDE, w // SIDE).sum(axis=(1, 3))
        total = out.sum()
        return (out / total if total > 0 and math.isfinite(total) else np.zeros_like(out)).astype(np.float32)
    rows = np.minimum((np.arange(h) * SIDE) // h, SIDE - 1)
    cols = np.minimum((np.arange(w) * SIDE) // w, SIDE - 1)
    out = np.zeros((SIDE, SIDE), np.float64)
    np.add.at(out, (rows[:, None], cols[None, :]), s.astype(np.float64))
    total = out.sum()
    return (out / total if total > 0 and math.isfinite(total) else np.zeros_like(out)).astype(np.float32)


def small_maps(
    store: ResultStore, model, hashes: Sequence[str], method: str, params: dict | None
) -> dict[str, np.ndarray]:
    """image hash -> its stored map at 32 x 32 (``downsample``), for the hashes with a stored map
    of the predicted class; computed once from the full map and kept in the store."""
    mkey, pkey = model_key(model), params_key(model, method, params)
    signed = METHODS[method].signed
    out = {
        h: np.frombuffer(data, "<f4").reshape(SIDE, SIDE).copy()
        for h, data in store.small_maps(mkey, method, pkey, SIDE, hashes).items()
        if len(data) == 4 * SIDE * SIDE
    }
    new = []
    for h, record, shape, blob in store.full_maps(mkey, method, pkey, [h for h in hashes if h not in out]):
        try:
            saliency = decode_map(bytes(blob), json.loads(shape))
            detail = reproducible_px((json.loads(record) or {}).get("diagnostics"))
        except (ValueError, InflateError, TypeError):
            continue  # a damaged map is left out (the page's table says to run the set again)
        out[h] = downsample(saliency, signed, detail)
        new.append((mkey, h, method, pkey, SIDE, out[h].astype("<f4").tobytes()))
    if new:
        store.put_small_maps(new)
    return out


def keep_small_maps(store: ResultStore, mkey: str, result, pkeys: dict[str, str]) -> None:
    """Store the 32 x 32 maps of one image's result (a ``pipeline.ImageResult``) as the run
    writes it, so grouping never has to decode the full maps."""
    rows = []
    for method, exp in result.maps.items():
        detail = reproducible_px(exp.diagnostics)
        small = downsample(exp.saliency, METHODS[method].signed, detail)
        rows.append((mkey, result.image_hash, method, pkeys[method], SIDE, small.astype("<f4").tobytes()))
    if rows:
        store.put_small_maps(rows)


# ---- spectral clustering ------------------------------------------------------------------------------


def spectral_groups(
    maps: np.ndarray, max_groups: int = MAX_GROUPS, knn: int = KNN
) -> tuple[np.ndarray, list[float]]:
    """Group labels (N,) of normalised maps (N, SIDE, SIDE) and the smallest eigenvalues of the
    kNN graph's normalised Laplacian; the number of groups is chosen by the eigengap.

    Raises:
        ValueError: fewer than ``MIN_MAPS`` maps.
    """
    from scipy.sparse import csgraph
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.neighbors import kneighbors_graph

    x = np.asarray(maps, np.float32).reshape(len(maps), -1)
    n = len(x)
    if n < MIN_MAPS:
        raise ValueError(f"{n} maps are too few to group; at least {MIN_MAPS} are needed.")
    # unit length: the distance of two maps is about where their relevance sits, not how peaked it is
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if n > PCA_FROM:  # the neighbour search on PCA_DIMS components instead of SIDE^2 pixels
        x = PCA(n_components=PCA_DIMS, svd_solver="randomized", random_state=SEED).fit_transform(x)
    neighbours = min(knn, max(2, round(math.sqrt(n))), n - 1)
    graph = kneighbors_graph(x, n_neighbors=neighbours, mode="connectivity", include_self=False)
    affinity = (graph + graph.T) * 0.5
    laplacian = csgraph.laplacian(affinity, normed=True)
    m = min(max_groups + 1, n - 1)
    values, vectors = _smallest(laplacian, m)
    values = np.clip(values, 0, None)
    gaps = np.diff(values)
    k = int(np.argmax(gaps[:max_groups]) + 1) if len(gaps) else 1  # gap after the k-th eigenvalue
    if k == 1:
        return np.zeros(n, int), [float(v) for v in values]
    embedding = vectors[:, :k]
    embedding = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
    labels = KMeans(n_clusters=k, n_init=10, random_state=SEED).fit_predict(embedding)
    return labels, [float(v) for v in values]


def _smallest(laplacian, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` smallest eigenvalues (ascending) and eigenvectors of a sparse Laplacian."""
    from scipy.sparse.linalg import ArpackError, eigsh

    n = laplacian.shape[0]
    if n <= 600:  # small: exact, dense
        values, vectors = np.linalg.eigh(laplacian.toarray())
        return values[:m], vectors[:, :m]
    v0 = np.random.default_rng(SEED).random(n)  # ARPACK's start vector, seeded: the same groups
    try:  # shift-invert just below 0: the smallest eigenvalues converge in a few iterations
        values, vectors = eigsh(laplacian.tocsc(), k=m, sigma=-1e-3, which="LM", v0=v0)
    except (ArpackError, RuntimeError):
        values, vectors = eigsh(laplacian, k=m, which="SA", v0=v0, tol=1e-6)
    order = np.argsort(values)
    return values[order], vectors[:, order]


def flag(mean_map: np.ndarray) -> str:
    """Words when a group's mean relevance sits on one spot at the border, else ""."""
    q, band = SIDE // 4, SIDE // 8
    corners = {
        "top-left": mean_map[:q, :q],
        "top-right": mean_map[:q, -q:],
        "bottom-left": mean_map[-q:, :q],
        "bottom-right": mean_map[-q:, -q:],
    }
    total = float(mean_map.sum()) or 1.0
    where, part = max(((k, float(v.sum()) / total) for k, v in corners.items()), key=lambda kv: kv[1])
    if part >= CORNER_SHARE:
        return (
            f"{part:.0%} of this group's relevance sits in the {where} corner (1/16 of the picture): the "
            "model may use a watermark, tag or border there instead of the object. Check these images."
        )
    inner = float(mean_map[band:-band, band:-band].sum()) / total
    if 1 - inner >= EDGE_SHARE:
        return (
            f"{1 - inner:.0%} of this group's relevance sits in the edge band (the outer eighth of each "
            "side): the model may use a frame, border or background there instead of the object. "
            "Check these images."
        )
    return ""


def group_maps(label: str, hashes: Sequence[str], maps: np.ndarray) -> ClassGroups:
    """The groups of one class's normalised maps (N, SIDE, SIDE), largest first."""
    started = time.perf_counter()
    result = ClassGroups(label)
    try:
        labels, result.eigenvalues = spectral_groups(maps)
    except ValueError as err:
        result.note = str(err)
        return result
    for g in np.unique(labels):
        idx = np.flatnonzero(labels == g)
        mean_map = maps[idx].mean(axis=0)
        distance = ((maps[idx] - mean_map) ** 2).reshape(len(idx), -1).sum(axis=1)
        members = [hashes[i] for i in idx[np.argsort(distance, kind="stable")]]
        result.groups.append(Group("", members, mean_map, flag(mean_map)))
    result.groups.sort(key=lambda grp: (-grp.size, grp.members[0]))
    for n, grp in enumerate(result.groups, 1):
        grp.label = f"{label}: group {n} of {len(result.groups)}"
    result.seconds = time.perf_counter() - started
    return result


def class_groups(
    store: ResultStore,
    model,
    rows: pd.DataFrame,
    method: str,
    params: dict | None,
    labels: Sequence[str] = (),
) -> dict[str, ClassGroups]:
    """Shortcut groups per predicted label (``labels``: only these) of the rows with a result.

    Args:
        rows: ``gallery.table`` (or a filtered part of it).
    Returns:
        predicted label -> ``ClassGroups``.
    """
    done = rows[(rows["status"] == "done") & (rows["image_hash"] != "")]
    if labels:
        done = done[done["predicted_label"].isin(list(labels))]
    maps = small_maps(store, model, sorted(set(done["image_hash"])), method, params)
    out = {}
    for label, part in done.groupby("predicted_label", sort=True):
        hashes = [h for h in dict.fromkeys(part["image_hash"]) if h in maps]
        stack = np.stack([maps[h] for h in hashes]) if hashes else np.zeros((0, SIDE, SIDE), np.float32)
        out[str(label)] = group_maps(str(label), hashes, stack)
    return out
