"""Models loaded once per version of their files, and what identifies a model in cache keys."""

from __future__ import annotations

import streamlit as st

import saliency_core as sc
from saliency_core.engine.models import source_signature


def get_model(source: str) -> sc.Classifier:
    """The model for ``source`` ("demo", a model file or a model card), loaded once per version
    of its files: the cache key is the path plus the size, modification time and inode of the
    card, weights and labels file, so a replaced file is loaded again."""
    return _load_model(source, source_signature(source))


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def _load_model(source: str, signature: str) -> sc.Classifier:
    return sc.load_model(source)


def model_key(model: sc.Classifier) -> tuple:
    """What identifies a model in cache keys: weights and card."""
    return (model.fingerprint, model.card.get("digest"))
