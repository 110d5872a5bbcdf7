"""Validate: maps against expert annotations over a data set, beside maps that ignore the model."""
from __future__ import annotations

import json
import time

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from PIL import Image, ImageDraw

import saliency_core as sc
from saliency_core.evaluation import annotations as an
from saliency_core.engine import render as rd
from saliency_core.evaluation import validate as va
from saliency_core.evaluation.data import DEMO_DESCRIPTION, demo_dataset, pasted_objects
from saliency_core.evaluation import faithfulness as fa
from saliency_core.evaluation import localisation as lo
from saliency_core.engine.safe_text import to_csv
from pages._common import (DISCLAIMER, page_methods, page_model, plain, report_error, require_frame,
                           settings)

require_frame()

IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"]
DEMO = "Demo: 5 photos, hand-drawn boxes"
PASTED = "Synthetic benchmark: pasted objects"
UPLOAD = "My data set (upload)"
STEPS = {"0.5 % (close to Petsiuk et al.'s 224 px; slow)": 0.005, "1 %": 0.01, "2 %": 0.02, "5 %": 0.05,
         "10 %": 0.1, "20 % (quick look)": 0.2}
REPLACEMENT_NAMES = {"mean": "the image's mean colour", "blurred": "a blurred copy (Gaussian, sigma 5)",
                     "black": "black"}
BASELINE_COLOUR = "#9e9e9e"

st.title("Validate against expert annotations")
st.caption("Each method's map is scored against the regions experts marked, over a whole data set, and "
           "with deletion / insertion curves that ask whether the model depends on the highlighted pixels. "
           "Two maps that ignore the model run beside the methods: a centred Gaussian (centre bias) and "
           "random noise. A method that does not beat them is not showing where the model looks. "
           + DISCLAIMER)

cfg = settings()
model = page_model(cfg)
methods = page_methods(model, cfg)

# ---- the data set --------------------------------------------------------------------------------
source = st.radio("Data set", [DEMO, PASTED, UPLOAD], horizontal=True, key="validate_source")
dataset = None
if source == DEMO:
    st.caption(DEMO_DESCRIPTION + " The boxes are in `saliency_core/evaluation/data/demo_boxes.csv`.")
    dataset = demo_dataset()
elif source == PASTED:
    c1, c2 = st.columns(2)
    count = c1.number_input("Number of images", 10, 1000, 60, 10, key="validate_pasted_n",
                            help="Generated one at a time from the seed while the run goes; none is stored.")
    seed = c2.number_input("Seed of the layout", 0, 2**31 - 1, 0, key="validate_pasted_seed")
    dataset = pasted_objects(int(count), int(seed))
    st.caption(plain(dataset.description) + " It tests whether a map finds a known object on a background, not "
               "whether it agrees with human judgement on natural photos.")
else:
    st.markdown("A **ZIP** with images and annotations, **or** images plus annotation files. Annotations: CSV "
                "boxes `image,x_min,y_min,x_max,y_max[,label]` (pixel edges of the original image), Pascal VOC "
                "XML, COCO JSON, or mask PNGs named like their image (in a ZIP: in a `masks/` folder or named "
                "`<image>_mask.png`). Images and annotations are matched by file name without suffix.")
    c1, c2, c3 = st.columns(3)
    archive = c1.file_uploader("ZIP of images and annotations", type=["zip"], key="validate_zip")
    pictures = c2.file_uploader("Images", type=IMAGE_TYPES, accept_multiple_files=True, key="validate_images",
                                disabled=archive is not None)
    notes = c3.file_uploader("Annotation files", type=["csv", "xml", "json", "png", "bmp", "tif", "tiff"],
                             accept_multiple_files=True, key="validate_annotations",
                             help="Every image file here is read as a mask.", disabled=archive is not None)
    try:
        if archive is not None:
            dataset = an.dataset_from_zip(archive.getvalue(), name=archive.name)
        elif pictures or notes:
            dataset = an.dataset_from_files([(f.name, f.getvalue()) for f in pictures or []],
                                            [(f.name, f.getvalue()) for f in notes or []])
    except ValueError as err:
        st.error(f"The upload cannot be read: {plain(err)}")
    except Exception as err:  # noqa: BLE001  a reader bug must not take the page down
        report_error("The upload", err)
    if dataset is None:
        st.info("Upload a ZIP, or images and their annotation files, to begin.")

if dataset is not None:
    st.caption(f"{len(dataset)} annotated image(s) found"
               + (f"; {len(dataset.skipped)} item(s) will be skipped (listed after the run)" if dataset.skipped else "")
               + ".")
    if len(dataset) < va.MIN_EXAMPLES:
        st.warning(f"Only {len(dataset)} annotated example(s): at least {va.MIN_EXAMPLES} are needed before the "
                   "scores can support trust in a method.", icon="⚠️")

# ---- measures ------------------------------------------------------------------------------------
with st.form("validate_settings"):
    c1, c2, c3 = st.columns(3)
    tolerance = c1.slider("Pointing game tolerance (pixels)", 0, 40, int(lo.POINTING_TOLERANCE),
                          help="A hit when the map's maximum lies within this distance of the region "
                               f"(Zhang et al. 2016: 15 px), in pixels of the {model.input_size} px model input.")
    top_k = c1.slider("Top-k share for the IoU", 0.01, 0.5, lo.TOP_K, 0.01,
                      help="IoU of this share of the most relevant pixels with the region.")
    faithful = c2.checkbox("Deletion / insertion curves", value=True,
                           help="Petsiuk et al. 2018: remove (or restore) the most relevant pixels step by step "
                                "and follow the class probability. Two forward passes per step and map: the slow "
                                "part of the run.")
    step_name = c2.selectbox("Pixels per step", list(STEPS), index=3)
    deletion = c3.selectbox("Deleted pixels become", fa.REPLACEMENTS, index=fa.REPLACEMENTS.index("mean"),
                            format_func=REPLACEMENT_NAMES.get)
    insertion = c3.selectbox("Insertion starts from", fa.REPLACEMENTS, index=fa.REPLACEMENTS.index("blurred"),
                             format_func=REPLACEMENT_NAMES.get)
    interval = c1.radio("95 % confidence interval", ["bootstrap", "t"], horizontal=True,
                        format_func={"bootstrap": "bootstrap (2000 resamples)", "t": "Student t"}.get)
    st.caption(f"Methods: {', '.join(sc.METHODS[m].label for m in methods)} (sidebar); SmoothGrad with "
               f"{cfg['params']['samples']} samples, noise {cfg['params']['noise']:.2f}, seed {cfg['params']['seed']}. "
               "Each map explains the predicted class. Unsigned maps are scored on |saliency|, signed ones "
               "(Integrated Gradients, gradient x input, occlusion) on their positive part.")
    # a flag set in the callback survives require_frame()'s rerun, which a button's click value does not
    st.form_submit_button("Run validation", type="primary", disabled=dataset is None or not len(dataset),
                          on_click=lambda: st.session_state.update(validate_requested=True))

if st.session_state.pop("validate_requested", False) and dataset is not None:
    options = va.ValidationSettings(
        methods=methods, params=cfg["params"], tolerance=float(tolerance), top_k=float(top_k),
        faithfulness=bool(faithful), step_fraction=STEPS[step_name], deletion_replacement=deletion,
        insertion_replacement=insertion, seed=int(cfg["params"]["seed"]), interval=interval)
    bar = st.progress(0.0, text=f"Scoring {len(dataset)} images…")

    def progress(done, total, eta):
        left = f" · about {eta:.0f} s left" if eta is not None and done < total else ""
        bar.progress(done / max(total, 1), text=f"{done} of {total} images done{left}")

    try:
        result = va.run_validation(model, dataset, options, progress=progress)
        st.session_state["validation_result"] = result
        st.session_state["validation_when"] = time.strftime("%H:%M:%S")
        st.toast(f"{result.images} image(s) scored in {result.seconds:.1f} s")
    except Exception as err:
        report_error("Validation", err)
    finally:
        bar.empty()

result: va.ValidationResult | None = st.session_state.get("validation_result")
if result is None:
    st.info("Choose the data set and the measures, then press **Run validation**.")
    st.stop()

# ---- results ---------------------------------------------------------------------------------------
st.divider()
st.subheader("Results")
st.caption(f"Run at {st.session_state.get('validation_when', '?')} on: {plain(result.description)}. "
           f"{result.images} of {result.total} image(s) scored in {result.seconds:.1f} s "
           f"({result.seconds / max(result.images, 1):.2f} s per image); model {plain(result.model['name'])}, "
           f"weights sha256 `{result.model['fingerprint'][:12]}…`.")
for w in result.warnings:
    st.warning(plain(w), icon="⚠️")
if result.skipped:
    with st.expander(f"Skipped items ({len(result.skipped)})", expanded=True):
        st.caption("Left out of the scores, with the reason; the rest of the run went on.")
        st.dataframe(result.skipped_table(), hide_index=True, key="validate_skipped")
if not result.rows:
    st.error("No image could be scored; see the skipped items above.")
    st.stop()

summary = result.summary()
st.markdown("**Mean and 95 % confidence interval per method**, baselines last")
st.dataframe(result.summary_table(), hide_index=True, key="validate_summary")
settings_used = result.settings
st.caption(f"{va.interval_description(settings_used)}. Pointing game tolerance {settings_used.tolerance:g} px; "
           f"IoU of the top {settings_used.top_k:.0%} pixels"
           + (f"; deletion / insertion: {settings_used.step_pixels(result.model['input_size'])} px "
              f"({settings_used.step_fraction:.1%}) per step, deleted pixels become "
              f"{REPLACEMENT_NAMES[settings_used.deletion_replacement]}, insertion starts from "
              f"{REPLACEMENT_NAMES[settings_used.insertion_replacement]}; score = softmax probability of the "
              "explained class" if settings_used.faithfulness else "; deletion / insertion not computed")
           + ". Higher is better for every measure except the deletion AUC. Unsigned maps are scored on "
             "|saliency|, signed ones on their positive part.")

verdicts = []
for m in [m for m in result.methods if m not in va.BASELINES]:
    part = summary[(summary["method"] == m) & summary["gain_vs_centre"].notna()]
    beats = [va.METRICS[r.metric][0] for r in part.itertuples() if r.beats_centre]
    worse = [va.METRICS[r.metric][0] for r in part.itertuples() if r.gain_ci_high < 0]
    text = f"**{va.label_of(m)}**: " + (f"beats the centre-bias baseline on {', '.join(beats)}" if beats
                                         else "does not clearly beat the centre-bias baseline on any measure")
    if worse:
        text += f"; clearly worse on {', '.join(worse)}"
    verdicts.append(text + ".")
st.markdown("\n".join(f"- {v}" for v in verdicts))
st.caption("Clearly better / worse: the 95 % interval of the per-image difference to the centre baseline "
           "excludes zero.")

# charts: mean with CI per measure; mean deletion / insertion curves
chart = summary.copy()
chart["kind"] = np.where(chart["method"].isin(list(va.BASELINES)), "baseline (ignores the model)", "method")
chart["plus"] = chart["ci_high"] - chart["mean"]
chart["minus"] = chart["mean"] - chart["ci_low"]
fig = px.bar(chart, x="method_label", y="mean", color="kind", facet_col="metric_label", facet_col_wrap=3,
             error_y="plus", error_y_minus="minus",
             color_discrete_map={"method": "#d95f02", "baseline (ignores the model)": BASELINE_COLOUR},
             hover_data={"n": True, "ci_low": ":.3f", "ci_high": ":.3f", "plus": False, "minus": False})
fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
fig.update_yaxes(matches=None, showticklabels=True, title=None)
fig.update_xaxes(title=None)
fig.update_layout(height=330 * ((len(result.metrics) + 2) // 3), margin=dict(l=0, r=0, t=30, b=0),
                  legend_title=None)
st.plotly_chart(fig, key="validate_chart")

if result.curves:
    curves = go.Figure()
    palette = px.colors.qualitative.Dark2
    for n, (m, c) in enumerate((m, result.curves[m]) for m in result.methods if m in result.curves):
        colour = BASELINE_COLOUR if m in va.BASELINES else palette[n % len(palette)]
        dash = "dot" if m == va.RANDOM else ("dash" if m == va.CENTRE else "solid")
        for mode, width in (("deletion", 2), ("insertion", 1)):
            curves.add_trace(go.Scatter(x=c["fractions"], y=c[mode], mode="lines", name=f"{va.label_of(m)}: {mode}",
                                        line=dict(color=colour, dash=dash, width=width)))
    curves.update_layout(height=360, margin=dict(l=0, r=0, t=10, b=0), xaxis_title="share of pixels changed",
                         yaxis_title="mean probability of the explained class", yaxis_range=[0, 1])
    st.plotly_chart(curves, key="validate_curves")
    st.caption("Deletion (thick): the probability should fall fast. Insertion (thin): it should rise fast. "
               "Means over the scored images.")

# ---- per image ----------------------------------------------------------------------------------------
st.markdown("**Per image** (click a column header to sort)")
table = result.per_image()
shown = ["image", "method_label", "top1_label", "top1_probability", "region_fraction"] + \
        [m for m in result.metrics if m in table] + ["seconds", "notes"]
c1, c2 = st.columns(2)
only = c1.multiselect("Methods", [va.label_of(m) for m in result.methods], key="validate_filter")
order = c2.selectbox("Sort by (worst first)", [m for m in result.metrics if m in table], key="validate_sort",
                     format_func=lambda k: va.METRICS[k][0])
view = table[table["method_label"].isin(only)] if only else table
st.dataframe(view[shown].sort_values(order, ascending=va.METRICS[order][1]), hide_index=True,
             key="validate_rows", column_config={
                 "method_label": "method", "top1_label": "prediction",
                 "top1_probability": st.column_config.NumberColumn("probability", format="%.2f"),
                 "region_fraction": st.column_config.NumberColumn("region share", format="%.2f"),
                 **{m: st.column_config.NumberColumn(va.METRICS[m][0], format="%.3f") for m in result.metrics}})

# ---- worst images ----------------------------------------------------------------------------------------


def annotation_picture(case: va.WorstCase) -> np.ndarray:
    """The crop with the region tinted and the box outlines drawn."""
    picture = case.crop.astype(np.float32)
    tint = np.array([0, 200, 80], dtype=np.float32)
    picture[case.region] = 0.55 * picture[case.region] + 0.45 * tint
    image = Image.fromarray(picture.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, y1, _ in case.boxes:
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=(0, 230, 90), width=2)
    return np.asarray(image)


if result.worst and any(result.worst.values()):
    st.markdown("**Worst images**: least relevance inside the annotated region, worst first")
    pick = st.selectbox("Method", [m for m in result.worst if result.worst[m]], format_func=va.label_of,
                        key="validate_worst_method")
    legend = None
    for case in result.worst[pick]:
        r = rd.render(case.saliency, case.crop, target_label=case.target_label,
                      meaning=sc.METHODS[pick].meaning if pick in sc.METHODS else None)
        legend = legend or r
        c0, c1, c2, c3 = st.columns([1, 1, 1, 1.4])
        c0.image(case.crop, caption="what the model sees", width="stretch")
        c1.image(annotation_picture(case), caption="annotation (green)", width="stretch")
        c2.image(r.overlay, width="stretch", caption=f"{va.label_of(pick)} map · " + (
            "zero everywhere" if r.near_zero else f"full colour at {r.scale:.3g} and above"))
        scores = " · ".join(f"{va.METRICS[k][0]} {v:.2f}" for k, v in case.scores.items()
                            if v is not None and np.isfinite(v))
        c3.markdown(f"**{plain(case.image)}**  \nPrediction: {plain(case.prediction[1])} ({case.prediction[2]:.0%}); "
                    f"the map explains **{plain(case.target_label)}**.  \n{scores}")
    if legend is not None:
        meaning = (sc.METHODS[pick].meaning if pick in sc.METHODS else "{score}").format(
            score="the explained class's score")
        st.image(rd.colorbar_image(legend, width=400))
        st.caption(f"Dark to bright = low to high. Brighter = {meaning}. Each map is drawn on its own scale, "
                   "clipped at its 99th percentile (the value under each map); what is drawn is what was scored: "
                   + ("the positive part of the signed map." if sc.METHODS[pick].signed else "|saliency|."))

# ---- export -----------------------------------------------------------------------------------------------
c1, c2, c3, c4 = st.columns(4)
c1.download_button("Per-image table (CSV)", to_csv(table), "validation_per_image.csv", "text/csv")
c2.download_button("Summary (CSV)", to_csv(summary), "validation_summary.csv", "text/csv")
c3.download_button("Skipped items (CSV)", to_csv(result.skipped_table()), "validation_skipped.csv",
                   "text/csv")
c4.download_button("Settings and summary (JSON)", json.dumps(result.record(), indent=2, default=str),
                   "validation.json", "application/json")
