"""Qualify: run a qualification of the model's methods on an annotated set (progress, Cancel, resume),
see the scorecard in force and the others, and sign a scorecard off (admins)."""

import os

import pandas as pd
import streamlit as st

import pages._qualification as qf
import pages._signin as signin
import saliency_core as sc
from pages._frame import require_frame
from pages._guard import report_error
from pages._run import cancellable, finish_run, request_run, run_active
from pages._settings import page_model, settings
from pages._text import DISCLAIMER, plain
from saliency_core.evaluation import annotations as an
from saliency_core.evaluation import qualification as ql
from saliency_core.evaluation.data import pasted_objects
from saliency_core.review.identity import can
from saliency_core.review.qualification import SignOffRefused

ss = st.session_state
VERDICT_ICON = {"qualified": ":material/verified:", "provisional": ":material/hourglass:"}


def show_intro() -> None:
    """The page's title, what it is for and how a qualification works."""
    st.title("Qualify methods")
    st.markdown(
        "Decide, on evidence, which saliency methods reviewers may rely on for this model. **Run a "
        "qualification on 50 or more annotated images; an admin then signs the scorecard off.**"
    )
    with st.expander("How it works"):
        st.markdown(
            "Each method is measured against the experts' boxes (pointing game, relevance mass, "
            "each beside a centre-bias and a random map), with deletion / insertion curves against "
            "a random map, the randomisation sanity check, stability under small changes, and, for "
            "averaging methods, the detail at which a re-run agrees. Every criterion has a stated "
            "rule and a confidence interval. A method is **qualified** when it passes all of them "
            "on 50 or more images, **not qualified** when one fails, **provisional** otherwise. "
            "The newest signed-off scorecard of this model's exact weights is in force. " + DISCLAIMER
        )


def scorecard_table(rows: list[dict]) -> pd.DataFrame:
    """A scorecard as a table: one row per method and criterion, with figure, interval and verdict."""

    def interval(r):
        if r.get("low") is None or r.get("high") is None:
            return ""
        return f"[{r['low']:.3f}, {r['high']:.3f}]"

    return pd.DataFrame(
        [
            {
                "Method": sc.METHODS[r["method"]].label if r["method"] in sc.METHODS else r["method"],
                "Criterion": ql.CRITERIA.get(r["criterion"], (r["criterion"],))[0],
                "Figure": "n/a" if r.get("figure") is None else f"{r['figure']:.3f}",
                "Interval": interval(r),
                "Rule": r["rule"],
                "Verdict": r["verdict"],
                "Detail": r["detail"],
            }
            for r in rows
        ]
    )


def show_verdicts(verdicts: dict) -> None:
    """One coloured line per method: its verdict and the reason in words."""
    for m, v in verdicts.items():
        label = sc.METHODS[m].label if m in sc.METHODS else m
        text = f"**{plain(label)}: {v['verdict']}.** {plain(v['reason'])}"
        if v["verdict"] == "not qualified":
            st.error(text, icon=":material/block:")
        else:
            (st.success if v["verdict"] == "qualified" else st.warning)(text, icon=VERDICT_ICON[v["verdict"]])


def read_records(model: sc.Classifier, qs) -> list:
    """The scorecards recorded for this model (none when the database cannot be opened or read)."""
    records = []
    if qs is None:
        st.error("The review database cannot be opened, so scorecards cannot be recorded or signed off.")
    else:
        try:
            records = qs.records(model.fingerprint)
        except ValueError as err:
            report_error("Reading the qualification records", err)
    return records


def show_records(records: list, model: sc.Classifier, qs, account) -> None:
    """The scorecards of this model: one chosen, its verdicts, table and sign-offs, and the sign-off form."""
    st.subheader("Scorecards of this model")

    def describe(rec) -> str:
        state = (
            "in force"
            if qf.in_force(model) and qf.in_force(model).id == rec.id
            else ("approved" if rec.approval else "rejected" if rec.signoffs else "awaiting sign-off")
        )
        return (
            f"#{rec.id} · {rec.created_at:%Y-%m-%d %H:%M} · {rec.images} images · by {rec.run_by} · {state}"
        )

    chosen = st.selectbox("Scorecard", records, format_func=describe, key="qualify_record")
    st.caption(
        f"Data set: {plain(chosen.dataset_description)} (fingerprint {chosen.dataset_fingerprint[:16]}…). "
        f"Run via {plain(chosen.run_via or 'the dashboard')}. Rules: "
        + plain(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in chosen.rules.items()))
    )
    show_verdicts(chosen.verdicts)
    st.dataframe(scorecard_table(chosen.scorecard), hide_index=True, key="qualify_scorecard")
    for s in chosen.signoffs:
        st.caption(
            f"{s.decision.capitalize()}d by {plain(s.admin)} ({plain(s.via)}) on {s.at:%Y-%m-%d %H:%M}: "
            + plain(s.note or "no note")
        )
    show_signoff(chosen, qs, account)


def show_signoff(chosen, qs, account) -> None:
    """The sign-off form under the chosen scorecard: Approve or Reject with a note (admins only)."""
    with st.form("qualify_signoff", border=True):
        st.markdown(
            "**Sign-off** (admins only: the QA lead approves the scorecard before reviewers rely on it)"
        )
        st.text_input("Note", key="qualify_note", placeholder="what you checked")
        c1, c2 = st.columns(2)
        approve = c1.form_submit_button("Approve", type="primary", disabled=not can(account, "sign_off"))
        reject = c2.form_submit_button("Reject", disabled=not can(account, "sign_off"))
    if not can(account, "sign_off"):
        st.caption("Only an admin can sign a scorecard off: sign in as an admin on the Review page.")
    if approve or reject:
        try:
            qs.sign_off(
                chosen.id, account, "approve" if approve else "reject", note=str(ss.get("qualify_note", ""))
            )
            st.rerun()
        except (SignOffRefused, ValueError) as err:
            st.error(plain(err))


def show_run_form(model: sc.Classifier, cfg) -> None:
    """The form that starts a new qualification: images, methods and deletion / insertion step."""
    st.subheader("Run a qualification")
    usable = sc.available_methods(model)
    with st.form("qualify_form", border=False):
        st.radio(
            "Annotated images",
            ["Bundled pasted objects", "ZIP of images and annotations"],
            horizontal=True,
            key="qualify_source",
        )
        st.number_input("Pasted-object images", 10, 500, ql.DEMO_IMAGES, key="qualify_pasted")
        st.file_uploader("ZIP of images and annotations", type=["zip"], key="qualify_zip")
        st.multiselect(
            "Methods to qualify",
            [m for m in sc.METHODS if not usable.get(m)],
            default=[m for m in cfg.methods if not usable.get(m)],
            key="qualify_methods",
            format_func=lambda n: sc.METHODS[n].label,
        )
        st.select_slider(
            "Deletion / insertion: pixels per step",
            [0.05, 0.1, 0.2],
            ql.DEMO_STEP,
            key="qualify_step",
            format_func=lambda v: f"{v:.0%}",
        )
        st.form_submit_button(
            "Run qualification",
            type="primary",
            on_click=lambda: (ss.update(qualify_new=True), request_run("qualify")),
        )


def start_run(model: sc.Classifier, cfg) -> None:
    """After the form was sent: set up the run (data set, settings, results file) or say why not."""
    if not ss.pop("qualify_new", False):
        return
    try:
        if ss.get("qualify_source") == "Bundled pasted objects":
            dataset = pasted_objects(int(ss.get("qualify_pasted", ql.DEMO_IMAGES)))
        elif ss.get("qualify_zip") is not None:
            dataset = an.dataset_from_zip(ss["qualify_zip"].getvalue(), name=ss["qualify_zip"].name)
        else:
            raise ValueError("Upload a ZIP of images and annotations, or choose the bundled pasted objects.")
        options = ql.QualificationSettings(
            list(ss.get("qualify_methods") or []),
            params=cfg.params,
            step_fraction=float(ss.get("qualify_step", ql.DEMO_STEP)),
        )
        folder = os.path.join(os.environ.get(qf.FOLDER_ENV) or ql.DEMO_CACHE, "runs")
        fingerprint = ql.dataset_fingerprint(dataset)
        os.makedirs(folder, exist_ok=True)
        results = os.path.join(folder, ql.run_key(model, fingerprint, options) + ".jsonl")
        ss["qualify_run"] = ql.QualificationRun(
            model, dataset, options, results=results, fingerprint=fingerprint
        )
        ss.pop("qualify_recorded", None)
    except ValueError as err:
        finish_run("qualify")
        report_error("Qualification", err)


def advance_run():
    """The run of this session, computed on (progress bar, Cancel) while it is active; None if it failed."""
    run = ss.get("qualify_run")
    if run_active("qualify") and run is not None:
        try:
            with cancellable("qualify", f"Qualifying: {run.total} steps…") as bar:
                run.run(
                    progress=lambda d, t, w: bar.progress(d / max(t, 1), text=f"{d} of {t} steps done · {w}")
                )
            finish_run("qualify")
        except Exception as err:
            finish_run("qualify")
            ss.pop("qualify_run", None)
            run = None
            report_error("Qualification", err)
    return run


def show_run(run, qs, account) -> None:
    """This run's outcome: Go on when it stopped, recorded as a scorecard when complete, its verdicts."""
    result = run.result()
    if not result.complete:
        st.warning(
            f"Stopped after {sum(u in run.done for u in run.units)} of {run.total} steps; run it again "
            "with the same settings to go on where it stopped.",
            icon=":material/pause_circle:",
        )
        st.button("Go on", on_click=request_run, args=("qualify",), key="qualify_go_on")
    elif qs is not None and ss.get("qualify_recorded") is not run:
        by = account.name if account is not None else "dashboard user (not signed in)"
        rec = qs.add(result, run_by=by, via="Qualify page")
        ss["qualify_recorded"] = run
        st.success(f"Recorded as scorecard #{rec.id}; an admin signs it off above.")
        st.rerun()
    st.subheader("This run")
    show_verdicts(result.verdicts)
    st.dataframe(scorecard_table(result.rows), hide_index=True, key="qualify_run_table")


require_frame()
show_intro()
cfg = settings()
model = page_model(cfg)
qf.status(model)
qs = qf.store()
records = read_records(model, qs)
account = signin.current_account()  # the signed-in identity, its role asked again now
if records:
    show_records(records, model, qs, account)
show_run_form(model, cfg)
start_run(model, cfg)
run = advance_run()
if run is not None:
    show_run(run, qs, account)
