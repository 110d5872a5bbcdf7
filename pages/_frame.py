"""Pages run only inside app.py's frame (router and shared sidebar)."""

from __future__ import annotations

import streamlit as st


def require_frame() -> None:
    """Run pages only inside app.py's frame (router + sidebar). Because a pages/ folder exists,
    Streamlit starts in its legacy mode, where a first request for a page's URL runs that page
    alone (and AppTest starts every run so); switch that off and rerun through app.py."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:  # st.navigation (app.py) sets it False before pages run
        PagesManager.uses_pages_directory = False
        st.rerun()
