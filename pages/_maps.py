"""Saliency maps computed at most once per (model, image, method, class, parameters), in a map
cache shared by all sessions, one map at a time in this process."""

from __future__ import annotations

import threading
from collections.abc import Callable

import streamlit as st
from PIL import Image

import saliency_core as sc
from pages._lru import MapCache

# One map at a time in this process: 2 CPU cores gain nothing from two at once, and a background
# prefetch (pages/_prefetch.py) then never competes with the map a reviewer is waiting for.
COMPUTE_LOCK = threading.RLock()


@st.cache_resource
def map_cache() -> MapCache:
    return MapCache()


def map_key(model: sc.Classifier, image_hash: str, method: str, target: int, params: dict) -> tuple:
    # card digest: the same weights with another card (preprocessing, labels) are another model
    return (
        model.fingerprint,
        model.card.get("digest"),
        image_hash,
        method,
        int(target),
        tuple(sorted(params.items())),
    )


def explanation(
    model: sc.Classifier,
    image: Image.Image,
    image_hash: str,
    method: str,
    target: int,
    params: dict,
    progress: Callable[[int, int], None] | None = None,
    preview: Callable | None = None,
) -> sc.Explanation:
    """The map for (model, image, method, target, params), computed at most once.
    ``preview(done, total, saliency)`` shows a running map while SmoothGrad works."""
    used = sc.resolve_params(sc.METHODS[method], params, model)
    key = map_key(model, image_hash, method, target, used)
    cache = map_cache()
    hit = cache.get(key)
    if hit is None:
        with COMPUTE_LOCK:
            hit = cache.get(key)  # computed meanwhile (the Review prefetch, another session)
            if hit is None:
                hit = sc.explain(
                    model, image, method=method, target=target, progress=progress, preview=preview, **used
                )
                cache.put(key, hit)
    return hit


def cached_explain(
    model: sc.Classifier,
    image: Image.Image,
    method: str,
    target: int | None,
    params: dict,
    progress: Callable[[int, int], None] | None = None,
    preview: Callable | None = None,
) -> sc.Explanation:
    """``explanation`` in the form the pipeline calls (saliency_core.pipeline, ``explain_fn``)."""
    if target is None:
        target = model.predict(image, k=1)[0][0]
    return explanation(model, image, sc.image_hash(image), method, target, params, progress, preview)


def is_cached(model: sc.Classifier, image_hash: str, method: str, target: int, params: dict) -> bool:
    used = sc.resolve_params(sc.METHODS[method], params, model)
    return map_cache().get(map_key(model, image_hash, method, target, used)) is not None
