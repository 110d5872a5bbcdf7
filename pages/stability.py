"""Stability: do the maps stay put when the input barely changes and the prediction does not?"""
from __future__ import annotations

import dataclasses
import json
import time

import pandas as pd
import plotly.express as px
import streamlit as st

import saliency_core as sc
from saliency_core import render as rd
from saliency_core.metrics import stability as stab
from pages._common import (DISCLAIMER, UPLOAD_TYPES, computed, decode, method_params, model_key,
                           page_methods, page_model, record_stability_verdict, report_error, require_frame,
                           settings, single_image)

GENERATED, SIMILAR = "Small changes made here", "Similar images I upload"
KIND_NAMES = {"noise": "pixel noise", "brightness": "brightness", "contrast": "contrast", "shift": "shift",
              "rotation": "rotation", "jpeg": "JPEG re-compression"}
VERDICT_STYLE = {"stable": (st.success, "✅"), "unstable explanation": (st.warning, "⚠️"),
                 "fragile prediction": (st.error, "⛔")}
PER_ROW = 5

require_frame()

st.title("Stability across similar inputs")
st.caption("The image is changed a little (noise, brightness, contrast, a few pixels of shift, a small "
           "rotation, JPEG re-compression) or compared with similar images you upload. A trustworthy map "
           "stays put when the prediction does. Shifts and rotations are undone before comparing, and only "
           "the part visible in both images is compared. " + DISCLAIMER)

cfg = settings()
model = page_model(cfg)
methods = page_methods(model, cfg)

# ---- the image and its variants -------------------------------------------------------------------
name, image, image_hash = single_image(UPLOAD_TYPES)

source = st.radio("Compare with", [GENERATED, SIMILAR], horizontal=True)
similar = []
if source == SIMILAR:
    files = st.file_uploader("Similar images (frames of one product, say)", type=UPLOAD_TYPES,
                             accept_multiple_files=True,
                             help="They are compared pixel for pixel after the model's resize and crop, so "
                                  "the object should sit at the same place and scale.")
    for f in files or []:
        try:
            similar.append((f.name, decode(f.getvalue(), f.name)))
        except ValueError as err:   # one bad file never hides the others
            st.error(f"{err}")
    if not similar:
        st.info("Upload one or more similar images, or compare with small changes made here.")
        st.stop()

with st.form("stability_settings"):
    if source == GENERATED:
        c1, c2 = st.columns([1, 2])
        count = c1.number_input("Number of variants (K)", 1, stab.MAX_VARIANTS, 8,
                                help="The kinds are used in turn: noise, brightness, contrast, shift, "
                                     "rotation, JPEG, noise again with new draws...")
        kinds = c2.multiselect("Kinds of change", stab.KINDS, default=list(stab.KINDS),
                               format_func=KIND_NAMES.get)
        with st.expander("Strength of the changes"):
            d1, d2, d3 = st.columns(3)
            pixel_noise = d1.slider("Pixel noise (std., fraction of the pixel range)", 0.0, 0.2, 0.02, 0.005)
            brightness = d1.slider("Brightness change (±)", 0.0, 0.5, 0.1, 0.05)
            contrast = d2.slider("Contrast change (±)", 0.0, 0.5, 0.1, 0.05)
            shift = d2.slider("Shift (pixels)", 1, 32, 4)
            rotation = d3.slider("Rotation (degrees, ±)", 0.5, 15.0, 3.0, 0.5)
            quality = d3.slider("JPEG quality", 10, 95, 75, 5)
            noise_seed = d3.number_input("Seed of the noise", 0, 2**31 - 1, 0)
    st.markdown("**Verdict thresholds**")
    t1, t2, t3, t4 = st.columns(4)
    defaults = stab.StabilityThresholds()
    min_spearman = t1.slider("Stable if the mean rank correlation is at least", 0.0, 1.0,
                             defaults.min_spearman, 0.05,
                             help="Spearman rank correlation of |map| with the original's map, averaged over "
                                  "the variants; 1 = same ordering of pixels, 0 = unrelated.")
    min_overlap = t2.slider("… and the mean top-k overlap at least", 0.0, 1.0, defaults.min_top_k_overlap, 0.05,
                            help="Share of the original's most salient pixels that stay most salient. "
                                 "Unrelated maps score about the top-k share.")
    top_k = t3.slider("Top-k share of pixels", 0.01, 0.5, defaults.top_k, 0.01)
    max_drop = t4.slider("Fragile if the class changes or its probability drops by more than", 0.0, 1.0,
                         defaults.max_confidence_drop, 0.05, format="%.2f")
    submitted = st.form_submit_button("Check stability", type="primary")

if submitted:
    settings_used = {"source": source, "top_k": float(top_k), "for": (model_key(model), image_hash)}
    if source == GENERATED:
        settings_used.update(count=int(count), kinds=tuple(kinds), perturbation=stab.Perturbation(
            pixel_noise=float(pixel_noise), brightness=float(brightness), contrast=float(contrast), shift=int(shift),
            rotation=float(rotation), jpeg_quality=int(quality), seed=int(noise_seed)))
    st.session_state["stability_request"] = settings_used
request = st.session_state.get("stability_request")
if request is None or request["source"] != source or request["for"] != (model_key(model), image_hash):
    st.info("Set the changes and thresholds, then press **Check stability**.")
    st.stop()
thresholds = stab.StabilityThresholds(min_spearman=float(min_spearman), min_top_k_overlap=float(min_overlap),
                                      max_confidence_drop=float(max_drop), top_k=request["top_k"])

if source == GENERATED:
    try:
        variants = stab.make_variants(model, image, request["count"], request["perturbation"], request["kinds"])
    except ValueError as err:
        st.error(f"The variants could not be made: {err}")
        st.stop()
    variant_key = (request["count"], request["kinds"], dataclasses.astuple(request["perturbation"]))
else:
    variants = stab.similar_variants(model, similar)
    variant_key = tuple(sc.image_hash(i) for _, i in similar)
params = {m: method_params(m, cfg["params"]) for m in methods}
key = ("stability", *model_key(model), image_hash, tuple(methods), variant_key, request["top_k"],
       tuple((m, tuple(sorted(p.items()))) for m, p in params.items()))

# ---- compute (cached), then judge with the current thresholds ----------------------------------------
def run_check() -> stab.StabilityResult:
    bar = st.progress(0.0, text=f"Computing {len(methods)} x {len(variants) + 1} maps…")
    started = time.perf_counter()

    def progress(done, total):
        bar.progress(min(1.0, done / total), text=f"Computing maps: batch {done} of {total}")

    try:
        return stab.stability_check(model, image, methods, variants=variants, params=cfg["params"],
                                    progress=progress, thresholds=stab.StabilityThresholds(top_k=request["top_k"]))
    finally:
        bar.empty()
        st.toast(f"Stability checked in {time.perf_counter() - started:.1f} s")


try:
    result = computed(key, run_check).with_thresholds(thresholds)
except Exception as err:
    report_error("Stability check", err)
    st.stop()
for m, message in result.errors.items():
    st.error(f"**{sc.METHODS[m].label}** could not be computed: {message}")
if not result.summary:
    st.stop()

# ---- verdicts -----------------------------------------------------------------------------------------
top = result.prediction[0]
steady = sum(v.steady for v in result.variants)
st.markdown(f"**Prediction on the original:** {top[1]} ({top[2]:.1%}). Every map explains **{result.target_label}**; "
            f"the prediction held under {steady} of {len(result.variants)} variants.")
pct = f"{thresholds.top_k:.0%}"
table = pd.DataFrame([{
    "method": sc.METHODS[m].label, "verdict": s.verdict,
    "mean rank correlation": round(s.mean["spearman_abs"], 3),
    f"mean top-{pct} overlap": round(s.mean["top_k_overlap"], 3),
    "mean SSIM": round(s.mean["ssim"], 3),
    "worst rank correlation": round(s.worst["spearman_abs"], 3)} for m, s in result.summary.items()])
st.dataframe(table, hide_index=True)
for m, s in result.summary.items():
    record_stability_verdict(model, image_hash, m, s.verdict, s.reason)   # the Gallery's flags
    show, icon = VERDICT_STYLE[s.verdict]
    show(f"**{sc.METHODS[m].label}: {s.verdict}.** {s.reason}", icon=icon)
st.caption(f"Thresholds: stable if the mean rank correlation (Spearman of |map|) is at least "
           f"{thresholds.min_spearman:.2f} and the mean top-{pct} overlap at least "
           f"{thresholds.min_top_k_overlap:.2f}; fragile prediction if the class changes or its probability "
           f"drops by more than {thresholds.max_confidence_drop:.0%} under any variant.")

rows = pd.DataFrame(result.rows())
rows["method"] = rows["method"].map(lambda n: sc.METHODS[n].label)
rows["prediction"] = rows["steady"].map({True: "held", False: "changed or dropped"})
fig = px.scatter(rows, x="variant", y="spearman_abs", color="method", symbol="prediction",
                 symbol_map={"held": "circle", "changed or dropped": "x"},
                 category_orders={"variant": list(dict.fromkeys(v.name for v in result.variants))},
                 hover_data=["top1", "top1_probability", "top_k_overlap", "ssim"])
fig.add_hline(y=thresholds.min_spearman, line_dash="dash", line_color="grey",
              annotation_text=f"threshold {thresholds.min_spearman:.2f}")
fig.update_traces(marker_size=11)
fig.update_layout(height=340, margin=dict(l=0, r=0, t=10, b=0), yaxis_range=[-0.2, 1.05],
                  yaxis_title="rank correlation with the original's map", xaxis_title=None)
st.plotly_chart(fig, key="stability-chart")

# ---- grid: each variant's overlay and scores ----------------------------------------------------------
for n, (m, s) in enumerate(result.summary.items()):
    meta = sc.METHODS[m]
    with st.expander(f"{meta.label}: {s.verdict} · each variant's map", expanded=n == 0):
        tiles = [("original", result.image, result.saliency[m], top, None)]
        tiles += [(v.name, v.image, v.saliency[m], v.prediction, v.scores[m]) for v in result.variants]
        legend = None
        for row in range(0, len(tiles), PER_ROW):
            cols = st.columns(PER_ROW)
            for col, (title, picture, saliency, prediction, scores) in zip(cols, tiles[row:row + PER_ROW]):
                r = rd.render(saliency, picture, target_label=result.target_label, meaning=meta.meaning)
                legend = legend or r
                caption = f"{title} · {prediction[1]} ({prediction[2]:.0%})"
                if scores:
                    caption += (f" · ρ {scores['spearman_abs']:.2f} · top-{pct} {scores['top_k_overlap']:.2f}"
                                f" · SSIM {scores['ssim']:.2f}")
                col.image(r.overlay, caption=caption, width="stretch")
        st.image(rd.colorbar_image(legend, width=400))
        st.caption(f"Original's map: {legend.legend} Each variant's map is scaled to its own 99th percentile "
                   "the same way. ρ = Spearman rank correlation of |map| with the original's map, compared "
                   "where both images show the same pixels.")

# ---- export -----------------------------------------------------------------------------------------------
export = pd.DataFrame(result.rows())
export.insert(0, "image", name)
export["model_fingerprint"] = model.fingerprint
c1, c2 = st.columns(2)
c1.download_button("Scores per variant (CSV)", export.to_csv(index=False), "stability.csv", "text/csv")
c2.download_button("Verdicts and settings (JSON)",
                   json.dumps({"image": name, "model": model.describe(), **result.record()}, indent=2, default=str),
                   "stability.json", "application/json")
