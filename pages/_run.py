"""Long runs: an estimate before, progress and Cancel while running, and the run's state in
session_state (``NAME__running``, ``NAME__cancelled``)."""

from __future__ import annotations

from contextlib import contextmanager

import streamlit as st


def estimate_caption(seconds: float, what: str) -> None:
    """Say before a run starts how long it will take here (``saliency_core.engine.estimate``)."""
    from saliency_core.engine.estimate import describe_seconds

    st.caption(
        f":material/schedule: {what}: {describe_seconds(seconds)} on this machine "
        "(from a timing of the model made just now)."
    )


def request_run(name: str) -> None:
    """Button callback: start run ``name`` on this rerun (a flag set in a callback survives
    require_frame()'s rerun, which a button's click value does not)."""
    st.session_state[f"{name}__running"] = True


def cancel_run(name: str) -> None:
    st.session_state[f"{name}__running"] = False
    st.session_state[f"{name}__cancelled"] = True


def run_active(name: str) -> bool:
    """Whether run ``name`` was started and has neither finished nor been cancelled."""
    return bool(st.session_state.get(f"{name}__running"))


def run_cancelled(name: str) -> bool:
    return bool(st.session_state.get(f"{name}__cancelled"))


def finish_run(name: str) -> None:
    st.session_state[f"{name}__running"] = False
    st.session_state[f"{name}__cancelled"] = False


@contextmanager
def cancellable(name: str, text: str):
    """A progress bar and a Cancel button while run ``name`` computes. A click on Cancel stops
    the script at its next Streamlit call (the bar's next update); what the run stored in
    session_state so far stays, and the page shows it. Yields the progress bar."""
    bar = st.progress(0.0, text=text)
    stop = st.empty()
    stop.button(
        "Cancel",
        key=f"{name}__cancel",
        icon=":material/cancel:",
        on_click=cancel_run,
        args=(name,),
        help="Stops the run. What was finished so far is kept and shown.",
    )
    try:
        yield bar
    finally:
        bar.empty()
        stop.empty()
