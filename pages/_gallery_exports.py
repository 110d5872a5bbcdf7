"""The gallery's exports of the filtered images: a review batch, the table as CSV, an HTML report.

Each function draws one column of the page's "These N images" section from the stored results."""

from __future__ import annotations

import hashlib

import streamlit as st

import pages._signin as signin
from pages._gallery_text import md
from saliency_core import gallery
from saliency_core.pipeline import method_params
from saliency_core.review import store as rs
from saliency_core.review.identity import can

REPORT_LIMIT = 100  # images in one report
ss = st.session_state


def send_to_review(
    filtered, labelled, model, store, methods, params, outcome_word: str, review_store
) -> None:
    """Name a batch and send the filtered images to the review queue (``review_store(url)`` opens it)."""
    default_name = f"gallery {labelled.source.split(':')[0]} {outcome_word} {len(filtered)}"
    st.text_input(
        "Review batch name", key="gallery_batch_name", max_chars=200, placeholder=f"blank: {default_name}"
    )
    account = signin.current_account()
    send = st.button(
        f"Send these {len(filtered):,} to review",
        key="gallery_send",
        type="primary",
        disabled=not can(account, "decide") or filtered.empty,
        help="They become a batch in the Review queue; decisions link back here."
        if can(account, "decide")
        else "Your role records no review batches."
        if account
        else "Sign in on the Review page first.",
    )
    if account is None:
        st.page_link("pages/review.py", label="Sign in on the Review page to send images to review")
    if send and can(account, "decide"):
        name = str(ss.get("gallery_batch_name", "")).strip() or default_name
        by_name = {it.name: it for it in labelled.items}
        try:
            chosen = [
                (n, lab, by_name[n].classes, h, by_name[n].read())
                for n, lab, h in filtered[["name", "label", "image_hash"]].itertuples(index=False)
            ]
            batch_methods = {m: method_params(m, params) for m in methods}
            selection = store.save_selection(
                name,
                account.name,
                gallery.model_key(model),
                labelled.source,
                labelled.description,
                batch_methods,
                chosen,
            )
            batch = review_store(rs.database_url()).open_batch(
                name,
                source=f"gallery:{selection}",
                created_by=account.name,
                model_fingerprint=model.fingerprint,
                methods=batch_methods,
            )
        except ValueError as err:
            st.error(f"Not sent: {err}")
        else:
            if batch.source != f"gallery:{selection}":
                st.error(
                    f"A review batch named {name!r} already exists with other images; choose another "
                    "name. Nothing was sent."
                )
            else:
                ss["review_batch"] = {
                    "name": batch.name,
                    "source": batch.source,
                    "methods": batch.methods,
                }
                ss.pop(f"review_pos::{batch.name}", None)
                st.success(f"Sent {len(chosen):,} images to review as batch **{md(batch.name)}**.")
                st.page_link("pages/review.py", label="Open the review queue")


def download_table(filtered, labelled, model) -> None:
    """The filtered rows as a CSV download."""
    st.download_button(
        "Download the table (CSV)",
        lambda: gallery.to_csv(filtered, model),
        f"gallery_{labelled.id}.csv",
        "text/csv",
        key="gallery_csv",
        help="True and predicted class, confidence, correct, checks and review for each image.",
    )


def build_report(filtered, labelled, model, store, methods, params, model_source, outcome_word: str) -> None:
    """An HTML report of the filtered images (up to ``REPORT_LIMIT``) from the stored maps."""
    digest = hashlib.sha256("\n".join(filtered["name"]).encode()).hexdigest()[:12]
    report_outlines = False
    if len(filtered) > REPORT_LIMIT:
        st.caption(f"Reports take up to {REPORT_LIMIT} images; narrow the filters to build one.")
    else:
        report_outlines = st.checkbox(
            "With outlined regions",
            key="gallery_report_outlines",
            help="Each map also as the outline of the regions holding "
            f"{int(ss.get('outline_share', 30))} % of it, beside the heatmap.",
        )
        digest += "-outlines" if report_outlines else ""
    if len(filtered) <= REPORT_LIMIT and st.button(
        f"Build a report of these {len(filtered):,}", key="gallery_build_report", disabled=filtered.empty
    ):
        bar = st.progress(0.0, text="Building the report from the stored maps…")
        try:
            report = gallery.build_report(
                store,
                model,
                labelled,
                filtered,
                methods,
                params,
                model_source=model_source,
                title=f"Gallery: {labelled.description}, {outcome_word}",
                outline_share=int(ss.get("outline_share", 30)) / 100 if report_outlines else None,
                progress=lambda d, t, label: bar.progress(min(1.0, d / t), text=f"Report: {d} of {t} maps"),
            )
            ss["gallery_report"] = (digest, report.to_html().encode())
        except ValueError as err:
            st.error(f"No report: {err}")
        bar.empty()
    if ss.get("gallery_report", (None,))[0] == digest:
        st.download_button(
            "Download the report (HTML)",
            ss["gallery_report"][1],
            f"gallery_report_{digest}.html",
            "text/html",
            key="gallery_report_download",
        )
