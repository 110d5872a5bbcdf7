"""Stability and sanity-check runs (pages/stability.py, pages/sanity.py) computed at most once,
shared by all sessions."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from pages._lru import MapCache


@st.cache_resource
def result_cache() -> MapCache:
    """Stability and sanity-check runs shared by all sessions; few, as each holds many maps."""
    return MapCache(size=24)


def computed(key: tuple, compute: Callable[[], object]):
    """``compute()`` at most once per ``key`` (a tuple of hashable values)."""
    cache = result_cache()
    hit = cache.get(key)
    if hit is None:
        hit = compute()
        cache.put(key, hit)
    return hit


def is_computed(key: tuple) -> bool:
    return result_cache().get(key) is not None
