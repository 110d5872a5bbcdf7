"""The display-detail controls of the shared sidebar, and what the pages read from them.

Averaged maps (SmoothGrad family, RISE, Integrated Gradients with a random baseline) are drawn
at their reproducible detail by default (saliency_core.engine.render.shown_map); "Show full
detail" draws every map raw, and "Display detail" blurs any map for display, saying so.
"""

from __future__ import annotations

import streamlit as st

from saliency_core.engine.detail import LADDER_PX
from saliency_core.engine.render import Shown, shown_map

NONE = "none"


def detail_controls() -> None:
    """The sidebar's switch and setting (outside the Apply form: drawing only, nothing is recomputed)."""
    with st.expander("Map detail"):
        st.toggle(
            "Show full detail",
            key="full_detail",
            help="Averaged maps are drawn at the finest detail that a re-run with other random noise "
            "reproduces; finer speckle is noise. Switch on to draw every map pixel by pixel.",
        )
        st.select_slider(
            "Display detail (blur for display)",
            [NONE, *[px for px in LADDER_PX if px]],
            NONE,
            key="display_px",
            format_func=lambda px: "none" if px == NONE else f"{px} px",
            help="Blur any map for display by a Gaussian of this many pixels (on a 224-pixel image); the "
            "words under the map then say so. Measures always use the raw map.",
        )


def detail_settings() -> dict:
    """``full_detail`` and ``display_px`` for ``render.shown_map``."""
    px = st.session_state.get("display_px", NONE)
    return {
        "full_detail": bool(st.session_state.get("full_detail", False)),
        "display_px": None if px == NONE or not isinstance(px, (int, float)) else float(px),
    }


def drawn(exp) -> Shown:
    """The map drawn for an explanation (``render.shown_map`` with the sidebar's settings):
    averaged maps at their reproducible detail, with the words that say so."""
    return shown_map(exp.saliency, exp.method, getattr(exp, "diagnostics", None), **detail_settings())
