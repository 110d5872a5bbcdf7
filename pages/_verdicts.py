"""The latest sanity-check and stability verdicts per model, method and photo, shared by all
sessions: filled by the Sanity check and Stability pages; the Explain, Report and Gallery pages
show them and never start a check themselves."""

from __future__ import annotations

import streamlit as st

import saliency_core as sc
from pages._lru import MapCache
from pages._models import model_key


@st.cache_resource
def _sanity_verdicts() -> MapCache:
    """(model, method, photo) -> the latest SanityVerdict. Filled by the Sanity check page only."""
    return MapCache(size=1024)


def record_sanity_verdict(model: sc.Classifier, verdict) -> None:
    """Keep ``verdict`` (a ``metrics.SanityVerdict``) as this model's verdict for its method, on
    the photo it was computed for (and as the method's latest on any photo)."""
    _sanity_verdicts().put((*model_key(model), verdict.method, verdict.image_hash), verdict)
    _sanity_verdicts().put((*model_key(model), verdict.method, None), verdict)


def sanity_verdict(model: sc.Classifier, method: str, image_hash: str | None = None):
    """The last randomisation verdict computed for (model, method) on the photo ``image_hash``;
    with ``image_hash=None`` the latest on any photo (it names its photo). None if there is none."""
    return _sanity_verdicts().get((*model_key(model), method, image_hash))


def forget_sanity_verdicts() -> None:
    """Drop every recorded sanity verdict (all sessions)."""
    _sanity_verdicts.clear()


@st.cache_resource
def _stability_verdicts() -> MapCache:
    """(model, image hash, method) -> (verdict, reason), filled by the Stability page; the
    Gallery shows them as flags and never starts a check itself."""
    return MapCache(size=100_000)


def record_stability_verdict(
    model: sc.Classifier, image_hash: str, method: str, verdict: str, reason: str
) -> None:
    _stability_verdicts().put((*model_key(model), image_hash, method), (verdict, reason))


def stability_verdict(model: sc.Classifier, image_hash: str, method: str) -> tuple[str, str] | None:
    """The last stability verdict computed for this image and method, or None."""
    return _stability_verdicts().get((*model_key(model), image_hash, method))


def has_stability_verdicts() -> bool:
    return len(_stability_verdicts()) > 0
