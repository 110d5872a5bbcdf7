"""Explain: upload or pick photos, compare each method's overlay next to the prediction."""
from __future__ import annotations

import io
import json
import time
import zipfile

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import saliency_core as sc
from saliency_core import pipeline
from saliency_core.engine import render as rd
from saliency_core.engine.convergence import SETTLED, describe
from saliency_core.engine.images import image_notes
from saliency_core.engine.safe_text import ZipNames, file_name, to_csv
from saliency_core.engine.samples import sample_images
from pages._common import (DISCLAIMER, UPLOAD_TYPES, cached_explain, crop_key, decode, is_cached, method_params,
                           page_methods, page_model, plain, png_bytes, prediction_words, region_labels,
                           report_error, require_frame, sanity_verdict, settings)

require_frame()

st.title("Explain a prediction")
st.caption(DISCLAIMER)

cfg = settings()
model = page_model(cfg)
cfg["methods"] = page_methods(model, cfg)

# ---- images -------------------------------------------------------------------------------
left, right = st.columns([3, 2])
with left:
    uploads = st.file_uploader("Upload images", type=UPLOAD_TYPES, accept_multiple_files=True,
                               help="PNG, JPEG, WebP, BMP or TIFF. Each is resized and centre-cropped "
                                    f"to {model.input_size} px, as the model sees it.")
with right:
    samples = sample_images()
    picked = st.multiselect("…or try sample photos", list(samples),
                            default=[] if uploads else list(samples)[:1])

sources: list[tuple[str, bytes]] = [(f.name, f.getvalue()) for f in uploads or []]
sources += [(name, open(samples[name], "rb").read()) for name in picked]
if not sources:
    st.info("Upload an image or pick a sample photo to begin.")
    st.stop()

# ---- what to explain and how to draw it -----------------------------------------------------
with st.expander("Target class and display", expanded=False):
    c1, c2, c3, c4 = st.columns(4)
    top_words = "Most probable class" if model.multilabel else "Predicted class"
    target_mode = c1.radio("Explain the score of", [top_words, "Top-5 rank", "Class by name"],
                           help="A multi-label model can predict several classes at once: choose any of "
                                "them by rank or by name." if model.multilabel else None)
    rank = c1.number_input("Rank (1 = predicted)", 1, 5, 1, disabled=target_mode != "Top-5 rank")
    by_name = c1.selectbox("Class", range(len(model.labels)), format_func=lambda i: model.labels[i],
                           disabled=target_mode != "Class by name")
    colormap = c2.selectbox("Colour map", rd.SEQUENTIAL, help="Perceptually uniform colour maps.")
    sign = c2.radio("Signed methods show", ["absolute", "positive", "signed"],
                    help="Integrated Gradients and gradient x input can be negative (evidence against "
                         "the class). The other methods are drawn as magnitudes.")
    alpha = c3.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05)
    shared = c3.checkbox("One colour scale for all images", value=False,
                         help="Makes map strength comparable across images of one method.")
    clip = c4.slider("Clip at percentile", 90.0, 100.0, 99.0, 0.5,
                     help="Values above this percentile get the top colour, so one extreme pixel "
                          "does not wash out the rest.")
    display = c4.radio("Show each map as", ["Heatmap", "Outline"], horizontal=True, key="display",
                       help="Outline: the image is cut into regions of similar colour, and the regions "
                            "holding the chosen share of the map are outlined; the rest is dimmed.")
    outline_share = c4.slider("Outline holds this share of the map", 5, 95, 30, 5, format="%d %%",
                              key="outline_share", disabled=display != "Outline",
                              help="The densest regions are taken until they hold this share of the "
                                   "map's total (positive part for signed methods).")

averaging = [m for m in cfg["methods"] if sc.METHODS[m].averaging]
if averaging:
    with st.expander("Sample until the map settles", expanded=False), st.form("settle"):
        st.checkbox(
            "Keep adding noisy samples until the map has settled", value=False, key="until_settled",
            help="Starts at the sidebar's sample count and adds samples (x1.25 at a time) until a re-run with "
                 f"other random noise would agree at {SETTLED:.0%} or more (rank correlation and the strongest "
                 "10 % of pixels), or the maximum below is reached. Applies to "
                 + ", ".join(sc.METHODS[m].label for m in averaging) + ".")
        st.number_input("Most samples", 1, 2000, 1000, step=50, key="max_samples",
                        help="Each sample is one pass through the network; 1,000 take about 20 s on a CPU.")
        st.form_submit_button("Apply")
    if st.session_state.get("until_settled"):
        # never below the sidebar's count: that is where the first check happens
        cfg["params"].update(until_settled=True, max_samples=max(int(st.session_state.get("max_samples", 1000)),
                                                                 int(cfg["params"]["samples"])))

# ---- decode, predict --------------------------------------------------------------------------
images = []
for name, data in sources:
    try:
        image = decode(data, name)
        crop = model.crop(image)
        x = model.preprocess(image)
        images.append({"id": len(images), "name": name, "image": image, "hash": sc.image_hash(image),
                       "crop": crop, "prediction": model.predict(x, k=5), "predicted": model.predicted_set(x),
                       "notes": image_notes(image)})
    except Exception as err:  # one bad file never hides the others
        report_error(name, err)


def target_for(item) -> int:
    if target_mode == "Top-5 rank":
        return item["prediction"][min(int(rank), len(item["prediction"])) - 1][0]
    if target_mode == "Class by name":
        return int(by_name)
    return item["prediction"][0][0]


# ---- maps: the pipeline, with cached maps; a progress bar while any is computed ----------------
jobs = [(item, m) for item in images for m in cfg["methods"]
        if not is_cached(model, item["hash"], m, target_for(item), method_params(m, cfg["params"]))]
bar = st.progress(0.0, text="Computing maps…") if jobs else None
live = st.empty()
started, finished = time.perf_counter(), 0
results: dict[int, pipeline.ImageResult] = {}
for item in images:
    def progress(done, total, item=item):
        if bar is not None:
            bar.progress(min(1.0, (finished + done / total) / len(jobs)),
                         text=f"{plain(item['name'])}: {done}/{total}")

    def preview(done, total, saliency, item=item):  # anytime SmoothGrad
        r = rd.render(saliency, item["crop"], colormap=colormap, alpha=alpha, clip_percentile=clip)
        live.image(r.overlay, width=260,
                   caption=f"{plain(item['name'])}: running average of {done} of {total} samples (still computing)")

    def one_done(method, item=item):
        global finished
        if (item, method) in jobs:
            finished += 1

    result = results[item["id"]] = pipeline.explain_image(
        model, item["image"], item["name"], cfg["methods"], cfg["params"], target_for(item),
        explain_fn=cached_explain, progress=progress, preview=preview, on_map=one_done)
    for m, message in result.errors.items():
        report_error(f"{item['name']} · {sc.METHODS[m].label}", ValueError(message))
    for m, crashed in result.crashes.items():
        report_error(f"{item['name']} · {sc.METHODS[m].label}", RuntimeError(crashed["message"]))
if bar is not None:
    bar.empty()
    st.toast(f"{len(jobs)} map(s) computed in {time.perf_counter() - started:.1f} s")
live.empty()


def sign_for(method: str) -> str:
    return sign if sc.METHODS[method].signed else "absolute"


def cmap_for(s: str) -> str:
    return "balance" if s == "signed" else colormap


scales = {}
if shared:
    for m in cfg["methods"]:
        maps = [results[i["id"]].maps[m].saliency for i in images if m in results[i["id"]].maps]
        if maps:
            scales[m] = rd.shared_scale(maps, sign=sign_for(m), clip_percentile=clip)


def draw(exp: sc.Explanation) -> rd.Rendered:
    s = sign_for(exp.method)
    return rd.render(exp.saliency, exp.image, sign=s, colormap=cmap_for(s), alpha=alpha,
                     clip_percentile=clip, scale=scales.get(exp.method), target_label=exp.target_label,
                     meaning=sc.METHODS[exp.method].meaning)


def outline(exp: sc.Explanation, item) -> rd.Outlined:
    labels = region_labels(crop_key(model, item["hash"]), item["crop"])
    return rd.render_outline(exp.saliency, exp.image, labels, share=outline_share / 100,
                             signed=sc.METHODS[exp.method].signed, target_label=exp.target_label)


def prediction_chart(prediction, target: int) -> go.Figure:
    df = pd.DataFrame(prediction, columns=["index", "class", "probability"])
    df["explained"] = df["index"] == target
    fig = px.bar(df[::-1], x="probability", y="class", orientation="h", range_x=[0, 1],
                 color="explained", color_discrete_map={True: "#d95f02", False: "#7570b3"},
                 text=df[::-1]["probability"].map(lambda p: f"{p:.1%}"))
    title = "probability"
    if model.multilabel:  # each class on its own: a line at the threshold, no sum to 100 %
        fig.add_vline(x=model.threshold, line_dash="dash", line_color="#444",
                      annotation_text=f"threshold {model.threshold:.0%}", annotation_position="top")
        title = "probability of each class on its own"
    fig.update_layout(height=230, margin=dict(l=0, r=0, t=10, b=0), showlegend=False,
                      xaxis_title=title, yaxis_title=None)
    return fig


def interactive_map(exp: sc.Explanation, r: rd.Rendered, key: str) -> None:
    """Plotly heatmap of the values drawn in ``r``: zoom, hover for each pixel's value."""
    if r.near_zero:
        st.info(r.legend)
        return
    values = {"absolute": abs(exp.saliency), "positive": exp.saliency.clip(min=0),
              "negative": (-exp.saliency).clip(min=0)}.get(r.sign, exp.saliency)
    zmin = -r.scale if r.sign == "signed" else 0.0
    title = "|saliency|" if r.sign == "absolute" else "saliency"
    fig = go.Figure(go.Heatmap(z=values, colorscale=rd.plotly_colorscale(r.colormap), zmin=zmin, zmax=r.scale,
                               colorbar=dict(title=title), hovertemplate="x %{x}, y %{y}: %{z:.4g}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    fig.update_layout(height=520, margin=dict(l=0, r=0, t=10, b=0))
    st.plotly_chart(fig, key=key)
    st.caption(plain(r.legend))


batch_files: dict[str, bytes] = {}
zip_names = ZipNames()
batch_rows: list[dict] = []
for item in images:
    target = target_for(item)
    with st.container(border=True):
        st.subheader(plain(item["name"]))
        for note in item["notes"]:
            st.info(plain(note), icon="🎞️")
        result = results[item["id"]]
        methods = list(result.maps)
        cols = st.columns([1] * (len(methods) + 1) + [1.6])
        cols[0].image(item["crop"], caption="What the model sees", width="stretch")
        records, rendered = [], {}
        stem = file_name(f'{item["id"] + 1:02d}_' + item["name"].rsplit(".", 1)[0], limit=80)
        for col, m in zip(cols[1:], methods):
            exp = result.maps[m]
            r = rendered[m] = draw(exp)
            meta = sc.METHODS[m]
            with col:
                if display == "Outline":
                    o = outline(exp, item)
                    shown, legend = o.overlay, o.legend
                    st.image(shown, caption=meta.label, width="stretch")
                    st.caption(f"{plain(legend)}\n\n*{meta.description}*")
                else:
                    shown, legend = r.overlay, r.legend
                    st.image(shown, caption=meta.label, width="stretch")
                    st.image(rd.colorbar_image(r), width="stretch")
                    ticks = "  ·  ".join(label for _, label in r.colorbar_ticks)
                    st.caption(f"{plain(ticks)}\n\n{plain(legend)}\n\n*{meta.description}*")
                if r.near_zero:
                    st.info("This map is zero (or numerically negligible) everywhere.")
                if meta.caution:
                    st.warning(meta.caution, icon="⚠️")
                verdict = sanity_verdict(model, m)  # shown once the Sanity check page computed it
                if verdict is not None:
                    if verdict.passed:
                        st.caption(f"✅ {plain(verdict.summary)}")
                    else:
                        st.warning(plain(verdict.summary), icon="⛔")
                gap = exp.diagnostics.get("completeness_gap_relative")
                if gap is not None:
                    st.caption(f"Completeness gap {gap:.1%} (attributions vs score difference).")
                readout = exp.diagnostics.get("convergence")
                if isinstance(readout, dict):
                    words, details = describe(readout)
                    icon = {"settled": "✅", "still changing": "⏳"}.get(readout.get("verdict"), "❔")
                    st.caption(f"{icon} {words}")
                    if details:
                        with st.expander("Convergence details"):
                            st.caption(details)
                png = png_bytes(shown)
                st.download_button("PNG", png, f"{stem}_{m}.png", "image/png", key=f"png-{item['id']}-{m}")
                batch_files[zip_names.add(f"{stem}_{m}.png")] = png
            records.append({**exp.record(), "legend": legend, "scale": r.scale})
        with cols[-1]:
            st.markdown(prediction_words(model, item["predicted"]))
            st.plotly_chart(prediction_chart(item["prediction"], target), key=f"pred-{item['id']}",
                            config={"displayModeBar": False})
            st.caption(f"Maps explain **{plain(model.labels[target])}**."
                       + (" Probabilities are each class's own sigmoid; they need not add up to 100 %."
                          if model.multilabel else ""))
            js = pipeline.dumps(result.record({m: {"legend": rendered[m].legend, "scale": rendered[m].scale}
                                               for m in methods}))
            st.download_button("Predictions & parameters (JSON)", js, f"{stem}.json", "application/json",
                               key=f"json-{item['id']}")
            rows = [{"image": item["name"], "method": r_["method"], "target": r_["target"],
                     "target_label": r_["target_label"], "params": json.dumps(r_["params"]),
                     "top1": item["prediction"][0][1], "top1_probability": item["prediction"][0][2],
                     **({"predicted": "; ".join(label for _, label, _ in item["predicted"])}
                        if model.multilabel else {}),
                     "model_fingerprint": model.fingerprint} for r_ in records]
            st.download_button("Table (CSV)", to_csv(pd.DataFrame(rows)), f"{stem}.csv",
                               "text/csv", key=f"csv-{item['id']}")
            batch_files[zip_names.add(f"{stem}.json")] = js.encode()
            batch_rows += rows
        if methods:
            with st.expander("Interactive map (zoom, hover for values)"):
                m = st.selectbox("Method", methods, format_func=lambda n: sc.METHODS[n].label,
                                 key=f"inter-{item['id']}")
                interactive_map(result.maps[m], rendered[m], key=f"heat-{item['id']}-{m}")

if batch_rows:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in batch_files.items():
            z.writestr(name, data)
        z.writestr(zip_names.add("maps.csv"), to_csv(pd.DataFrame(batch_rows)))
    st.download_button("Download everything (ZIP: overlays, JSON, CSV)", buf.getvalue(),
                       "saliency_maps.zip", "application/zip", type="primary")
