"""The sidebar's words on how averaging methods run on this machine (saliency_core/engine/plans.py)."""

from __future__ import annotations

import streamlit as st

from saliency_core.engine.plans import describe_model


def plan_caption(model) -> None:
    """One caption naming the model's execution plan, e.g. "computed in bfloat16 on this CPU's
    matrix units; maps checked to move less than a tenth of a seed change"; nothing is measured here."""
    st.caption(describe_model(model))
