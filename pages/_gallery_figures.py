"""The gallery's figures: the clickable confusion matrix and the per-class accuracy bars, each built
once per session for the same data."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages._gallery_text import shown

ss = st.session_state


def session_figure(key: tuple, build) -> go.Figure:
    """``build()`` once per session for the same data: building a plotly figure takes a
    noticeable part of a rerun."""
    cache = ss.setdefault("gallery_figures", {})
    if key not in cache:
        if len(cache) > 8:
            cache.clear()
        cache[key] = build()
    return cache[key]


def confusion_figure(counts: pd.DataFrame) -> go.Figure:
    """The squares are a heatmap; an invisible marker on each carries the click (Streamlit
    reports no selection for heatmaps), and the counts are its text."""
    xs, ys, zs = [], [], []
    for t in counts.index:
        for p in counts.columns:
            xs.append(shown(p))
            ys.append(shown(t))
            zs.append(int(counts.loc[t, p]))
    top = max(zs) or 1
    columns, index = [shown(c) for c in counts.columns], [shown(t) for t in counts.index]
    fig = go.Figure(
        [
            go.Heatmap(
                x=columns,
                y=index,
                z=counts.values,
                colorscale="Blues",
                zmin=0,
                zmax=top,
                xgap=2,
                ygap=2,
                hoverinfo="skip",
                colorbar=dict(title="images"),
            ),
            go.Scatter(
                x=xs,
                y=ys,
                mode="markers+text",
                text=[str(z) if z else "" for z in zs],
                textfont=dict(color=["white" if z > top / 2 else "black" for z in zs]),
                marker=dict(size=30, symbol="square", color="rgba(0,0,0,0)"),
                hovertemplate="true: %{y}<br>predicted: %{x}<br>%{text} image(s)<extra></extra>",
                showlegend=False,
            ),
        ]
    )
    for i, t in enumerate(counts.index):  # outline the diagonal: correct predictions
        if t in counts.columns:
            j = list(counts.columns).index(t)
            fig.add_shape(
                type="rect",
                x0=j - 0.5,
                x1=j + 0.5,
                y0=len(counts.index) - i - 1.5,
                y1=len(counts.index) - i - 0.5,
                line=dict(color="#1b9e77", width=2),
            )
    fig.update_xaxes(
        type="category", categoryorder="array", categoryarray=columns, title="predicted", tickangle=-35
    )
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=index[::-1], title="true class")
    fig.update_layout(
        height=160 + 40 * len(counts.index),
        margin=dict(l=0, r=0, t=10, b=0),
        clickmode="event+select",
        dragmode=False,
        plot_bgcolor="white",
    )
    return fig


def accuracy_figure(per: pd.DataFrame) -> go.Figure:
    fig = go.Figure(
        go.Bar(
            x=per["accuracy"],
            y=[shown(v) for v in per["label"]],
            orientation="h",
            marker_color="#7570b3",
            text=[f"{c} of {n} ({a:.0%})" for c, n, a in zip(per["correct"], per["images"], per["accuracy"])],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{text}<extra></extra>",
        )
    )
    fig.update_layout(
        height=160 + 40 * len(per),
        margin=dict(l=0, r=0, t=10, b=0),
        xaxis_title="share correct",
        xaxis_range=[0, 1.35],
        xaxis_tickvals=[0, 0.25, 0.5, 0.75, 1],
        xaxis_tickformat=".0%",
        yaxis=dict(categoryorder="array", categoryarray=[shown(v) for v in per["label"]][::-1]),
        plot_bgcolor="white",
    )
    return fig
