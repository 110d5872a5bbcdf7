"""The gallery's filters above the grid: kept across pages, reset, and the checks and reasons filters."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import saliency_core as sc
from pages._gallery_reasons import REASON_LABELS
from saliency_core.gallery import reasons as gr

ORDER = {
    "File name": "name",
    "Confident mistakes first": "confident mistakes first",
    "Least confident first": "least confident first",
    "Most confident first": "most confident first",
}
SHARE_ORDER = {
    "Least inside the part first": "share inside, lowest first",
    "Most inside the part first": "share inside, highest first",
}
FLAGS = {"Any": None, "With a warning": True, "Without a warning": False}
# Streamlit forgets a widget's value when a page without it runs: the filters are kept across pages
FILTER_KEYS = (
    "gf_outcome",
    "gf_true",
    "gf_pred",
    "gf_order",
    "gf_method",
    "gf_flags",
    "gf_page",
    "gf_reason",
    "gf_threshold",
)
ss = st.session_state


def reset_filters() -> None:
    for key in ("gf_true", "gf_pred"):
        ss[key] = []
    ss["gf_outcome"], ss["gf_order"], ss["gf_page"], ss["gf_flags"] = "All images", "File name", 1, "Any"
    ss["gf_reason"] = "All images"
    ss.pop("gf_group", None)
    ss["gf_conf_version"] = ss.get("gf_conf_version", 0) + 1  # a new slider, back at its full range
    ss["gallery_conf"] = (0, 100)


def first_page() -> None:
    ss["gf_page"] = 1


def restore_filters(methods: list[str], done: pd.DataFrame) -> tuple[list, list]:
    """The filters as left on another page, without the choices no longer offered; the class options."""
    for key, value in ss.get("gallery_filters", {}).items():
        if key not in ss and key in FILTER_KEYS:
            ss[key] = value
    if ss.get("gf_method", methods[0]) not in [*methods, None]:
        del ss["gf_method"]
    true_options = sorted(done["label"].unique())
    predicted_options = sorted(done["predicted_label"].unique())
    ss["gf_true"] = [v for v in ss.get("gf_true", []) if v in true_options]
    ss["gf_pred"] = [v for v in ss.get("gf_pred", []) if v in predicted_options]
    return true_options, predicted_options


def checks_filter() -> bool | None:
    """The filter by the stability and sanity checks run on other pages (None: any)."""
    choice = st.radio(
        "Stability and sanity checks",
        list(FLAGS),
        horizontal=True,
        key="gf_flags",
        on_change=first_page,
        help="Checks run on the Stability and Sanity check pages for these images.",
    )
    return FLAGS[choice]


def reason_filter(annotations: dict, unmatched: list, scored_method: str) -> tuple[str, float]:
    """Right answer, right reason: the filter by the map's share inside the annotations, and its threshold."""
    r1, r2 = st.columns([3, 2])
    reason = REASON_LABELS[
        r1.radio(
            f"Right answer, right reason? ({sc.METHODS[scored_method].label} maps, {len(annotations):,} "
            "annotated images)",
            list(REASON_LABELS),
            horizontal=True,
            key="gf_reason",
            on_change=first_page,
            help="Looked at the part: at least the threshold's share of the map's relevance lies inside "
            "the annotated region. The maps scored are those the tiles show.",
        )
    ]
    threshold = (
        r2.slider(
            "Looked at the part from this share inside (%)",
            0,
            100,
            int(gr.THRESHOLD * 100),
            key="gf_threshold",
            on_change=first_page,
        )
        / 100
    )
    if unmatched:
        st.caption(f"{len(unmatched):,} images or annotations did not match (matched by file name).")
    return reason, threshold
