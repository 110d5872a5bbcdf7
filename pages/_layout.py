"""Layout of maps: rows of at most four (two on a phone-width window) and a map's colour bar."""

from __future__ import annotations

import streamlit as st

GRID_CSS = """<style>
/* Map grids (pages/_layout.map_rows): at most four per row, at least 200 px each; two per row on
   a phone-width window. Layout only: no user text here. */
div[class*="st-key-mapgrid"] div[data-testid="stHorizontalBlock"] { flex-wrap: wrap; }
div[class*="st-key-mapgrid"] div[data-testid="stColumn"] { min-width: 200px; }
@media (max-width: 640px) {
  div[class*="st-key-mapgrid"] div[data-testid="stHorizontalBlock"] {
    flex-direction: row !important; flex-wrap: wrap !important; gap: 1rem !important; }
  div[class*="st-key-mapgrid"] div[data-testid="stColumn"] {
    min-width: calc(50% - 0.75rem) !important; max-width: calc(50% - 0.75rem) !important;
    flex: 1 1 calc(50% - 0.75rem) !important; width: calc(50% - 0.75rem) !important; }
}
</style>"""
PER_ROW = 4


def map_rows(items: list, key: str, per_row: int = PER_ROW):
    """Lay ``items`` out in rows of at most ``per_row`` equal columns: yields ``(row_items,
    columns)``; what the caller draws after a row's columns (cautions) spans the full width."""
    st.html(GRID_CSS)
    with st.container(key=f"mapgrid-{key}"):
        for start in range(0, len(items), per_row):
            row = items[start : start + per_row]
            yield row, st.columns(per_row, gap="medium")[: len(row)]


def colour_bar(r, alt: str = "") -> None:
    """The colour bar of a rendered map (framed, so its dark end shows on a dark theme), labelled
    in words; the exact numbers in its tooltip."""
    from saliency_core.engine import render as rd

    st.image(
        rd.colorbar_image(r, height=12, width=256, frame=True),
        width="stretch",
        alt=alt or "Colour scale from low influence (left) to high influence (right)",
    )
    words = (
        "lowers the score ← no effect → raises the score" if r.sign == "signed" else "low → high influence"
    )
    ticks = ", ".join(label for _, label in r.colorbar_ticks)
    st.caption(words, help=f"Values along the bar: {ticks}. {r.legend}")
