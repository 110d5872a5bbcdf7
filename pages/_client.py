"""Who is at the keyboard (for sign-in throttling): the connection's address or the session."""

from __future__ import annotations

import streamlit as st


def client_id() -> str:
    """Who is at the keyboard, for sign-in throttling: ``ip:ADDRESS`` of the connection; behind a
    reverse proxy on this machine (the connection comes from localhost), the address the proxy
    appended to X-Forwarded-For (or X-Real-IP); else ``session:ID`` of this browser session."""
    try:
        address = st.context.ip_address
        headers = st.context.headers or {}
    except Exception:  # no request context (bare script, tests)
        address, headers = None, {}
    if address:
        return f"ip:{address}"[:200]
    forwarded = headers.get("X-Forwarded-For") or headers.get("X-Real-Ip") or ""
    last = forwarded.split(",")[-1].strip()
    if last:
        return f"ip:{last}"[:200]
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return f"session:{ctx.session_id if ctx else 'unknown'}"
