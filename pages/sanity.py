"""Sanity check: does each method's map change when the model's weights are destroyed?
(model parameter randomisation, Adebayo et al. 2018)"""
from __future__ import annotations

import json
import time

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import saliency_core as sc
from saliency_core.engine import render as rd
from saliency_core.evaluation import sanity as rz
from saliency_core.engine.safe_text import to_csv
from pages._common import (DISCLAIMER, UPLOAD_TYPES, computed, is_computed, method_params,
                           model_key, page_methods, page_model, plain, record_sanity_verdict,
                           report_error, require_frame, settings, single_image)

MEASURE_NAMES = {"spearman_abs": "Spearman of |map|", "spearman_signed": "Spearman of signed map",
                 "ssim": "SSIM", "hog": "HOG similarity"}
PER_ROW = 6

require_frame()

st.title("Sanity check: model randomisation")
st.caption("The weights of the model are re-initialised layer block by layer block, from the output "
           "down (Adebayo et al. 2018), and each map is computed again. A map that explains the model "
           "must change as the model is destroyed; a map that stays the same shows the image, not the "
           "model. The run works on a copy: the model used everywhere else is never changed. "
           + DISCLAIMER)

cfg = settings()
model = page_model(cfg)
methods = page_methods(model, cfg)
try:
    blocks = computed(("layer blocks", *model_key(model)), lambda: rz.layer_blocks(model))
except ValueError as err:
    st.error(f"The sanity check cannot run on this model: {plain(err)}")
    st.stop()

# ---- image and settings -------------------------------------------------------------------------
name, image, image_hash = single_image(UPLOAD_TYPES)

with st.form("sanity_settings"):
    c1, c2, c3 = st.columns(3)
    mode = c1.radio("Randomisation", rz.MODES, format_func=lambda m: {
        "cascading": "Cascading: from the logits down, cumulatively",
        "independent": "Independent: one block at a time"}[m])
    depth = c2.slider("Layer blocks to re-initialise (from the top)", 1, len(blocks), rz.default_depth(blocks),
                      help=f"This model has {len(blocks)} blocks: {plain(', '.join(b.name for b in blocks))}. The default, "
                           "the top half, leaves the prediction meaningless; re-initialising the first layers "
                           "too changes every map, so the curve matters more than its end there.")
    threshold = c3.slider("Pass if the final rank correlation is below", 0.05, 0.95, rz.DEFAULT_THRESHOLD, 0.05,
                          help="Spearman rank correlation of |map| with the trained model's map at the last "
                               "step (independent runs: the mean over the steps).")
    seed = c3.number_input("Seed of the random weights", 0, 2**31 - 1, 0)
    run = st.form_submit_button("Run the sanity check", type="primary")
if run:
    st.session_state["sanity_request"] = {"mode": mode, "depth": int(depth), "seed": int(seed),
                                          "for": (model_key(model), image_hash)}
request = st.session_state.get("sanity_request")
if request is None or request["for"] != (model_key(model), image_hash):   # no long run unasked
    st.info(f"Press **Run the sanity check**: {len(methods)} method(s) x {int(depth) + 1} maps each.")
    st.stop()


def run_key(method: str) -> tuple:
    return ("sanity", *model_key(model), image_hash, method, request["mode"], request["depth"], request["seed"],
            tuple(sorted(method_params(method, cfg["params"]).items())))


# ---- compute (cached per model, image, method and settings) -----------------------------------------
def compute(m: str, progress=None) -> rz.SanityResult:
    return computed(run_key(m), lambda: rz.sanity_check(
        model, image, [m], mode=request["mode"], depth=request["depth"], seed=request["seed"],
        params=method_params(m, cfg["params"]), threshold=threshold, image_name=name, progress=progress))


missing = [m for m in methods if not is_computed(run_key(m))]
if missing:
    bar = st.progress(0.0, text="Sanity check…")
    started = time.perf_counter()
    for n, m in enumerate(missing):
        label = sc.METHODS[m].label

        def progress(done, total, n=n, label=label):
            bar.progress(min(1.0, (n + done / total) / len(missing)), text=f"{label}: map {done} of {total}")

        try:
            compute(m, progress)
        except Exception as err:  # one method failing never hides the others
            report_error(f"{label} sanity check", err)
    bar.empty()
    st.toast(f"Sanity check done in {time.perf_counter() - started:.1f} s")

results = {}
for m in methods:
    if not is_computed(run_key(m)):
        continue   # failed above, already reported
    result = compute(m)
    if m in result.errors:
        st.error(f"**{sc.METHODS[m].label}** could not be computed at {plain(result.errors[m])}")
    else:
        results[m] = result
if not results:
    st.stop()

verdicts = {}
for m, result in results.items():
    verdicts[m] = result.verdicts(threshold)[m]
    record_sanity_verdict(model, verdicts[m])   # the Explain page's caution marks show it

# ---- summary ----------------------------------------------------------------------------------------
first = next(iter(results.values()))
top = first.prediction[0]
st.markdown(f"**Prediction of the trained model:** {plain(top[1])} ({top[2]:.1%}). Every map explains the score "
            f"of **{plain(first.target_label)}**, at every step.")
summary = pd.DataFrame([{
    "method": sc.METHODS[m].label, "verdict": "passes" if v.passed else "fails",
    "rank correlation at the end" if request["mode"] == "cascading" else "mean rank correlation":
        round(v.final_similarity, 3),
    "threshold": v.threshold, "blocks re-initialised": f"{v.blocks} of {v.total_blocks}"}
    for m, v in verdicts.items()])
st.dataframe(summary, hide_index=True)
st.caption("Rank correlation = Spearman correlation of |map| with the trained model's map; 1 = same ordering "
           "of pixels, 0 = unrelated. A method passes when its map has decorrelated from the trained "
           "model's (below the threshold).")


def curve_chart(result: rz.SanityResult, method: str, threshold: float) -> go.Figure:
    steps = result.steps
    x = ["trained"] + [s.block for s in steps[1:]]
    fig = go.Figure()
    for measure, title in MEASURE_NAMES.items():
        fig.add_trace(go.Scatter(x=x, y=[s.similarity[method][measure] for s in steps], mode="lines+markers",
                                 name=title))
    fig.add_hline(y=threshold, line_dash="dash", line_color="grey",
                  annotation_text=f"pass threshold {threshold:.2f}", annotation_position="bottom right")
    fig.update_layout(height=330, margin=dict(l=0, r=0, t=30, b=0), yaxis_range=[-0.5, 1.05],
                      yaxis_title="similarity to the trained model's map",
                      xaxis_title=("re-initialised down to" if result.mode == "cascading"
                                   else "block re-initialised (alone)"),
                      legend=dict(orientation="h", y=1.12))
    return fig


for m, result in results.items():
    meta, verdict = sc.METHODS[m], verdicts[m]
    with st.container(border=True):
        st.subheader(meta.label)
        if verdict.passed:
            st.success(plain(verdict.summary), icon="✅")
        else:
            st.warning(plain(verdict.summary), icon="⛔")
        if meta.caution:
            st.caption(f"Known limit: {meta.caution}")
        st.plotly_chart(curve_chart(result, m, verdict.threshold), key=f"curve-{m}")
        st.markdown("**Maps at each step** (each on its own colour scale, so the pattern stays visible "
                    "even where the values shrink):")
        steps = [s for s in result.steps if m in s.saliency]
        legend = None
        for row in range(0, len(steps), PER_ROW):
            cols = st.columns(PER_ROW)
            for col, step in zip(cols, steps[row:row + PER_ROW]):
                r = rd.render(step.saliency[m], result.image, target_label=result.target_label,
                              meaning=meta.meaning)
                legend = legend or r
                similarity = step.similarity[m]["spearman_abs"]
                title = "trained model" if step.index == 0 else f"{step.index}: {step.block}"
                col.image(r.overlay, width="stretch",
                          caption=f"{plain(title)} · predicts {plain(step.prediction[1])} ({step.prediction[2]:.0%}) · "
                                  f"ρ {similarity:.2f}" + (" · map is zero" if r.near_zero else ""))
        if legend is not None:
            st.image(rd.colorbar_image(legend, width=400))
            st.caption(f"Trained model's map: {plain(legend.legend)} The maps of the randomised models are scaled to "
                       "their own 99th percentile the same way. ρ = Spearman rank correlation of |map| with the "
                       "trained model's map.")
        notes = sorted({n for s in result.steps for n in s.notes})
        if notes:
            with st.expander("What was re-initialised other than by the layers' own reset_parameters()"):
                st.markdown("\n".join(f"- {plain(n)}" for n in notes))

# ---- export -------------------------------------------------------------------------------------------
rows = [{"image": name, "model_fingerprint": model.fingerprint, **row}
        for result in results.values() for row in result.rows()]
record = {"image": name, "model": model.describe(), "threshold": threshold,
          "runs": {m: {**r.record(), "verdicts": {k: v.record() for k, v in r.verdicts(threshold).items()}}
                   for m, r in results.items()}}
c1, c2 = st.columns(2)
c1.download_button("Similarities per step (CSV)", to_csv(pd.DataFrame(rows)), "sanity_check.csv",
                   "text/csv")
c2.download_button("Verdicts and settings (JSON)", json.dumps(record, indent=2, default=str), "sanity_check.json",
                   "application/json")
