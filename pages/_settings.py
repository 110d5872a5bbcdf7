"""The shared sidebar's settings as the pages read them (``PageSettings``), the sidebar's model
and the methods it can run."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

import pages._defaults as defaults  # one place for every page's defaults
import pages._models as models  # looked up at call time: tests replace models.get_model
import saliency_core as sc
from pages._text import plain

DEFAULT_METHODS = list(defaults.METHODS)


@dataclass
class PageSettings:
    """What the shared sidebar holds (set by app.py): the model source ("demo", a model file or a
    card), the chosen method names, and every sidebar parameter as its default's type."""

    model: str
    methods: list[str]
    params: dict


def settings() -> PageSettings:
    """What the shared sidebar holds (set by app.py)."""
    s = st.session_state
    return PageSettings(
        model=s.get("model", "demo"),
        methods=list(s.get("methods", DEFAULT_METHODS)),
        # each as its default's type (the sidebar's widgets, or the methods' defaults)
        params={key: type(default)(s.get(key, default)) for key, default in defaults.PARAMS.items()},
    )


def page_model(cfg: PageSettings) -> sc.Classifier:
    """The sidebar's model; on failure an error on the page, and the page stops."""
    try:
        return models.get_model(cfg.model)
    except ValueError as err:
        st.error(f"The model could not be loaded: {plain(err)}")
        st.stop()


def page_methods(model: sc.Classifier, cfg: PageSettings) -> list[str]:
    """The sidebar's methods that ``model`` can run; a warning names the others and why.
    With none left, a hint and the page stops."""
    usable = sc.available_methods(model)
    for m in [m for m in cfg.methods if usable.get(m)]:
        st.warning(f"**{sc.METHODS[m].label}** is left out: it {usable[m]}.")
    methods = [m for m in cfg.methods if not usable.get(m)]
    if not methods:
        st.info("Choose at least one saliency method in the sidebar, then press **Apply**.")
        st.stop()
    return methods


def page_setup() -> tuple[PageSettings, sc.Classifier, list[str]]:
    """The sidebar's settings, the model they name and the methods it can run: how pages start."""
    cfg = settings()
    model = page_model(cfg)
    return cfg, model, page_methods(model, cfg)
