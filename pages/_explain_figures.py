"""The Explain page's figures: the top-5 prediction chart and the zoomable map over the photo."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import saliency_core as sc
from pages._text import plain
from saliency_core.engine import render as rd


def prediction_chart(model, prediction, target: int) -> go.Figure:
    """The top-5 classes, the first at the top, the explained one in another colour and marked."""
    classes = [label for _, label, _ in prediction]
    fig = go.Figure(
        go.Bar(
            x=[p for _, _, p in prediction],
            y=classes,
            orientation="h",
            marker=dict(
                color=["#d95f02" if i == target else "#7570b3" for i, _, _ in prediction],
                pattern_shape=["/" if i == target else "" for i, _, _ in prediction],
            ),
            text=[f"{p:.1%}" + (" (explained)" if i == target else "") for i, _, p in prediction],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    fig.update_yaxes(categoryorder="array", categoryarray=classes[::-1])  # rank 1 at the top
    title = "probability"
    if model.multilabel:  # each class on its own: a line at the threshold, no sum to 100 %
        fig.add_vline(
            x=model.threshold,
            line_dash="dash",
            line_color="#444",
            annotation_text=f"threshold {model.threshold:.0%}",
            annotation_position="top",
        )
        title = "probability of each class on its own"
    fig.update_layout(
        height=230,
        margin=dict(l=0, r=0, t=30, b=0),
        showlegend=False,
        xaxis_range=[0, 1],
        xaxis_title=title,
        yaxis_title=None,
        title="The model's five most likely classes",
    )
    return fig


def interactive_map(drawn: np.ndarray, alpha: float, exp: sc.Explanation, r: rd.Rendered, key: str) -> None:
    """The map as drawn (``drawn``) over the photo the model saw: zoom, and hover for each pixel's value."""
    if r.near_zero:
        st.info(plain(r.legend))
        return
    values = {
        "absolute": abs(drawn),
        "positive": drawn.clip(min=0),
        "negative": (-drawn).clip(min=0),
    }.get(r.sign, drawn)
    zmin = -r.scale if r.sign == "signed" else 0.0
    h, w = values.shape
    fig = go.Figure()
    fig.add_trace(go.Image(z=np.asarray(exp.image.convert("RGB")), hoverinfo="skip"))
    fig.add_trace(
        go.Heatmap(
            z=values,
            colorscale=rd.plotly_colorscale(r.colormap),
            zmin=zmin,
            zmax=r.scale,
            opacity=max(0.2, alpha),
            colorbar=dict(title="influence"),
            hovertemplate="x %{x}, y %{y}: %{z:.4g}<extra></extra>",
        )
    )
    fig.update_xaxes(range=[0, w - 1], constrain="domain", title="x (pixels of the model's input)")
    fig.update_yaxes(range=[h - 1, 0], scaleanchor="x", constrain="domain", title="y (pixels)")
    fig.update_layout(
        height=560,
        margin=dict(l=0, r=0, t=30, b=0),
        title=f"{sc.METHODS[exp.method].label} map over the photo",
    )
    st.plotly_chart(
        fig,
        key=key,
        alt=f"Zoomable {sc.METHODS[exp.method].label} map drawn over the photo the "
        f"model saw, {w} by {h} pixels; hover shows each pixel's value.",
    )
    st.caption(plain(r.words), help=r.legend)
