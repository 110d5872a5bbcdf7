"""The method parameters' widgets, drawn from the method registry: each widget's label, range,
step, help and default are the method's own ``Setting`` (saliency_core/engine/methods/), so a
default or a limit changes in the method's file only."""

from __future__ import annotations

import streamlit as st

from saliency_core.engine.methods import Setting, page_settings


def setting_widget(key: str, setting: Setting) -> None:
    """One widget for ``setting``, its value kept under ``key`` in the session state."""
    shown = {"key": key, "help": setting.help or None}
    if setting.widget == "slider":
        st.slider(setting.label, setting.low, setting.high, setting.default, setting.step, **shown)
    elif setting.widget == "number":
        st.number_input(setting.label, setting.low, setting.high, setting.default, step=setting.step, **shown)
    elif setting.widget == "select":
        choices = list(setting.choices)
        st.selectbox(setting.label, choices, index=choices.index(setting.default), **shown)
    elif setting.widget == "select_slider":
        st.select_slider(setting.label, list(setting.choices), setting.default, **shown)
    else:
        raise ValueError(f"Unknown widget {setting.widget!r} for {setting.label!r}.")


def setting_widgets(place: str) -> None:
    """The widgets of every setting offered at ``place`` (``"top"`` or ``"more"`` of the sidebar)."""
    for key, setting in page_settings().items():
        if setting.place == place:
            setting_widget(key, setting)
