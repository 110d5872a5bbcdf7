"""Review page, the summary of a batch: counts, agreement between reviewers, time per decision, the
admin's records and the CSV exports."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._text import plain
from saliency_core.engine.safe_text import file_name
from saliency_core.review import store as rs
from saliency_core.review.auth import Account
from saliency_core.review.identity import can
from saliency_core.review.schema import DECISION_LABELS
from saliency_core.review.summary import summarize
from saliency_core.review.summary import to_csv as decisions_csv


def show_counts(summary, item_count: int) -> None:
    """Items decided, decisions and reviewers, and the decisions of each reviewer."""
    c1, c2, c3 = st.columns(3)
    c1.metric("Items decided", f"{summary.items} of {item_count}")
    c2.metric("Decisions", summary.decisions)
    c3.metric("Reviewers", len(summary.by_reviewer))
    rows = [
        {"reviewer": r, **{DECISION_LABELS[d]: n for d, n in counts.items()}, "total": sum(counts.values())}
        for r, counts in sorted(summary.by_reviewer.items())
    ]
    rows.append(
        {
            "reviewer": "all",
            **{DECISION_LABELS[d]: n for d, n in summary.by_decision.items()},
            "total": summary.decisions,
        }
    )
    st.markdown("**Decisions by reviewer**")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="review_counts")


def show_agreement_and_time(summary) -> None:
    """Agreement between reviewers (Cohen's kappa) beside the median time per decision."""
    left, right = st.columns(2)
    with left:
        st.markdown("**Agreement between reviewers** (Cohen's kappa over items both decided)")
        if summary.agreement:
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "reviewers": f"{a.reviewer_a} / {a.reviewer_b}",
                            "shared items": a.items,
                            "agreed": a.agreed,
                            "kappa": "undefined (one category only)" if a.kappa is None else f"{a.kappa:.2f}",
                        }
                        for a in summary.agreement
                    ]
                ),
                hide_index=True,
                key="review_kappa",
            )
        else:
            st.caption("No item has been decided by two reviewers yet.")
    with right:
        st.markdown("**Median time per decision**")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "decision": DECISION_LABELS[d],
                        "median seconds": round(s, 1),
                        "decisions": summary.by_decision[d],
                    }
                    for d, s in summary.median_seconds.items()
                ]
            ),
            hide_index=True,
            key="review_median",
        )
        st.caption(
            "Seconds from the item's maps appearing to the decision click, summed over the visits "
            "that changed the decision."
        )


def show_admin_records(store: rs.ReviewStore, every: list, batch_name: str) -> None:
    """For admins: every decision of the batch with its note, the batch's audit log, and both exports."""
    with st.expander("All decisions with notes (admin)"):
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "item": d.item_name,
                        "reviewer": d.reviewer,
                        "decision": d.label,
                        "note": d.note,
                        "seconds": round(d.seconds, 1),
                        "decided (UTC)": f"{d.decided_at:%Y-%m-%d %H:%M:%S}",
                        "version": d.version,
                    }
                    for d in every
                ]
            ),
            hide_index=True,
            key="review_all",
        )
    with st.expander("Audit log of this batch (admin)"):
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "when (UTC)": f"{e.at:%Y-%m-%d %H:%M:%S}",
                        "by": e.actor,
                        "reviewer": e.reviewer,
                        "item": e.item_name,
                        "action": e.action,
                        "from": e.old_decision or "",
                        "to": e.new_decision,
                        "old note": e.old_note or "",
                        "new note": e.new_note,
                    }
                    for e in store.audit_log(batch=batch_name)
                ]
            ),
            hide_index=True,
            key="review_audit",
        )
    e1, e2 = st.columns(2)
    e1.download_button(
        "Export this batch (CSV)",
        decisions_csv(every),
        file_name(f"{batch_name}_decisions.csv"),
        "text/csv",
        key="export_batch",
    )
    e2.download_button(
        "Export every batch (CSV)",
        decisions_csv(store.decisions()),
        "all_decisions.csv",
        "text/csv",
        key="export_all",
    )


def show_summary(store: rs.ReviewStore, account: Account, batch_name: str, item_count: int) -> None:
    """The batch's summary: counts, agreement, time per decision, and the exports this role may take."""
    st.header("Summary")
    try:
        every = store.decisions(batch=batch_name)
        names = [b.name for b in store.batches()]
    except ValueError as err:
        st.error(plain(err))
        st.stop()
    summary = summarize(every)
    show_counts(summary, item_count)
    show_agreement_and_time(summary)
    if can(account, "oversee"):
        show_admin_records(store, every, batch_name)
    else:
        own = [d for d in every if d.reviewer == account.name]
        st.download_button(
            "Export your decisions in this batch (CSV)",
            decisions_csv(own),
            file_name(f"{batch_name}_{account.name}_decisions.csv"),
            "text/csv",
            key="export_mine",
        )
        st.caption("Other reviewers' notes and the full export are for admins.")
    if len(names) > 1:
        st.caption(f"{len(names)} batches in the database; open another from the Batch panel above.")
