"""The gallery's table of results: the set's rows with their stored predictions, and the stability /
sanity verdicts computed on other pages as flags."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

import saliency_core as sc
from pages._verdicts import has_stability_verdicts, sanity_verdict, stability_verdict
from saliency_core import gallery

ss = st.session_state


def results_table(store, model, labelled, methods, params) -> pd.DataFrame:
    """The set's rows with their stored results (read again only when the store changed), and
    the stability / sanity verdicts computed on other pages as flags."""
    key = (
        labelled.id,
        gallery.model_key(model),
        tuple(methods),
        json.dumps(params, sort_keys=True, default=str),
        store.version(),
    )
    cached = ss.get("gallery_rows")
    if cached is None or cached[0] != key:
        cached = ss["gallery_rows"] = (key, gallery.table(store, model, labelled, methods, params))
    rows = cached[1]
    sanity = {m: v for m in methods if (v := sanity_verdict(model, m)) is not None}
    if not (sanity or has_stability_verdicts()):
        return rows
    flags, checks = [""] * len(rows), [""] * len(rows)
    for i, h in enumerate(rows["image_hash"]):
        bad, good = [], []
        for m in methods:
            label = sc.METHODS[m].label
            if m in sanity and sanity[m].image_hash == h:
                (good if sanity[m].passed else bad).append(
                    f"{label}: {'passes' if sanity[m].passed else 'fails'} the sanity check"
                )
            found = stability_verdict(model, h, m) if h else None
            if found is not None:
                (good if found[0] == "stable" else bad).append(f"{label}: {found[0]}")
        flags[i], checks[i] = "; ".join(bad), "; ".join(good)
    return rows.assign(flags=flags, checks=checks)
