"""The qualification in force for the current model, for every page: one sentence with a link to the
scorecard, a marker in words per method, the methods Review and Gallery start from (the qualified
ones) and those offered to reviewers (only the qualified ones when the operator sets
SALIENCY_HIDE_UNQUALIFIED=1); and the demo's qualification, computed once per server in a
background thread (saliency_core.review.qualification.qualify_demo; SALIENCY_DEMO_QUALIFICATION=0
turns it off)."""

from __future__ import annotations

import os
import threading

import streamlit as st

import pages._models as models  # looked up at call time: tests replace models.get_model
import saliency_core as sc
from pages._text import plain
from saliency_core.evaluation import qualification as ql
from saliency_core.review import qualification as rq
from saliency_core.review import store as rs

HIDE_ENV = "SALIENCY_HIDE_UNQUALIFIED"
DEMO_ENV = "SALIENCY_DEMO_QUALIFICATION"
FOLDER_ENV = "SALIENCY_QUALIFICATION_DIR"
PAGE = "pages/qualify.py"
HOW = (
    "Run one on the Qualify page (or `python -m saliency_core qualify --model ... --images ... "
    "--annotations ... --methods ... --out DIR --store URL`) on 50 or more annotated images, and have an "
    "admin sign it off."
)


@st.cache_resource(show_spinner=False)
def _store(url: str) -> rq.QualificationStore:
    return rq.QualificationStore(rs.ReviewStore(url))


def store() -> rq.QualificationStore | None:
    """The qualification records of the review database; None when it cannot be opened."""
    try:
        return _store(rs.database_url())
    except ValueError:
        return None


def in_force(model: sc.Classifier) -> rq.QualificationRecord | None:
    """The record in force for exactly this model's weights, or None."""
    qs = store()
    try:
        return qs.in_force(model.fingerprint) if qs is not None else None
    except ValueError:
        return None


def record_in_force(model: sc.Classifier) -> dict | None:
    """The record in force as plain data, for a report's appendix; None without one."""
    rec = in_force(model)
    return rec.record() if rec is not None else None


def hide_unqualified() -> bool:
    return os.environ.get(HIDE_ENV, "") == "1"


def sentence(model: sc.Classifier, rec: rq.QualificationRecord | None) -> str:
    """One plain sentence: which methods are qualified for this model, since when, on what evidence."""
    if rec is None:
        return f"Not qualified yet: no method has a signed-off qualification for this model. {HOW}"
    names = ", ".join(sc.METHODS[m].label for m in rec.qualified if m in sc.METHODS) or "none of its methods"
    when = rec.approval.at.strftime("%Y-%m-%d")
    return (
        f"Qualified for this model: {names} (since {when}, on {rec.images} annotated images, signed off by "
        f"{rec.approval.admin}; see the scorecard)."
    )


def status(model: sc.Classifier) -> None:
    """The sentence under a page's title, with a link to the scorecard; the demo's progress while it
    is computed."""
    rec = in_force(model)
    with st.container(border=True):
        st.caption(":material/verified: " + plain(sentence(model, rec)))
        st.page_link(PAGE, label="Scorecard and qualification", icon=":material/rule:")
        demo_progress(model)


def marker(model: sc.Classifier, method: str, rec: rq.QualificationRecord | None = None) -> str:
    """The method's standing for this model, in words."""
    rec = rec if rec is not None else in_force(model)
    label = sc.METHODS[method].label
    if rec is None:
        return f"{label} is not qualified yet for this model."
    verdict = rec.verdicts.get(method)
    if verdict is None:
        return f"{label} is not qualified for this model: it was not part of the qualification in force."
    if verdict["verdict"] == "qualified":
        return f"{label} is qualified for this model."
    return f"{label} is {verdict['verdict']} for this model. {verdict['reason']}"


def caution(model: sc.Classifier, method: str) -> list[str]:
    """For a method's caution beside its maps: why the record in force does not qualify it, in words
    (Markdown-escaped); [] when it is qualified or no record is in force (the page's sentence says so)."""
    rec = in_force(model)
    if rec is None or method in rec.qualified:
        return []
    return [plain(marker(model, method, rec))]


def mark_qualified(model: sc.Classifier, method: str) -> None:
    """A caption beside a method's maps when the record in force qualifies it."""
    rec = in_force(model)
    if rec is not None and method in rec.qualified:
        st.caption(":material/verified: " + plain(marker(model, method, rec)))


def default_methods(model: sc.Classifier, options: list[str], fallback: list[str]) -> list[str]:
    """The methods a form starts with: of ``options``, the qualified ones when a record is in force
    and any of them is; else ``fallback``."""
    rec = in_force(model)
    chosen = [m for m in options if rec is not None and m in rec.qualified]
    return chosen or [m for m in fallback if m in options]


def offered(model: sc.Classifier, options: list[str]) -> list[str]:
    """The methods offered to reviewers: only the qualified ones when the operator hides the others."""
    if not hide_unqualified():
        return list(options)
    rec = in_force(model)
    return [m for m in options if rec is not None and m in rec.qualified]


# ---- the demo's qualification, once per server ----------------------------------------------------
def _run_demo(state: dict) -> None:
    def progress(done, total, what):
        state.update(done=done, total=total, what=what)

    try:
        folder = os.environ.get(FOLDER_ENV) or ql.DEMO_CACHE
        with rs.ReviewStore(rs.database_url()) as review_store:
            rq.qualify_demo(folder, review_store, progress=progress, cancel=state["stop"])
    except Exception as err:  # noqa: BLE001  shown on the pages; the dashboard goes on without it
        state["error"] = " ".join(str(err).split())
    finally:
        state["finished"] = True


@st.cache_resource(show_spinner=False)
def _demo_job() -> dict:
    state = {"done": 0, "total": 0, "what": "", "error": None, "finished": False, "stop": threading.Event()}
    if os.environ.get(DEMO_ENV, "1") == "0":
        state["finished"] = True
        return state
    threading.Thread(target=_run_demo, args=(state,), daemon=True, name="demo-qualification").start()
    return state


def start_demo_qualification() -> None:
    """Start the demo's qualification in the background, once per server (app.py calls this)."""
    _demo_job()


def demo_progress(model: sc.Classifier) -> None:
    """While the demo's qualification is computed (or if it failed), say so for the demo model."""
    state = _demo_job()
    if model.fingerprint != models.get_model("demo").fingerprint:
        return
    if state.get("error"):
        st.caption(f"The demo's qualification could not be computed: {plain(state['error'])}")
    elif not state["finished"]:
        done, total = state["done"], state["total"]
        st.progress(
            done / total if total else 0.0,
            text=f"The demo's qualification is being computed in the "
            f"background: {done} of {total or '?'} steps done.",
        )


def status_of(source: str) -> None:
    """``status`` for the model ``source`` names (the sidebar's), when it loads."""
    try:
        model = models.get_model(source)
    except ValueError:
        return
    status(model)
