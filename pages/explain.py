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
from saliency_core import render as rd
from saliency_core.samples import sample_images
from pages._common import (DISCLAIMER, UPLOAD_TYPES, crop_key, decode, explanation, is_cached, method_params,
                           page_methods, page_model, png_bytes, region_labels, report_error, require_frame,
                           sanity_verdict, settings)

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
    target_mode = c1.radio("Explain the score of", ["Predicted class", "Top-5 rank", "Class by name"])
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

# ---- decode, predict --------------------------------------------------------------------------
images = []
for name, data in sources:
    try:
        image = decode(data, name)
        crop = model.crop(image)
        x = model.preprocess(image)
        images.append({"id": len(images), "name": name, "image": image, "hash": sc.image_hash(image),
                       "crop": crop, "prediction": model.predict(x, k=5)})
    except Exception as err:  # one bad file never hides the others
        report_error(name, err)


def target_for(item) -> int:
    if target_mode == "Top-5 rank":
        return item["prediction"][min(int(rank), len(item["prediction"])) - 1][0]
    if target_mode == "Class by name":
        return int(by_name)
    return item["prediction"][0][0]


# ---- compute missing maps with a progress bar -----------------------------------------------------
jobs = [(item, m) for item in images for m in cfg["methods"]
        if not is_cached(model, item["hash"], m, target_for(item), method_params(m, cfg["params"]))]
if jobs:
    bar = st.progress(0.0, text="Computing maps…")
    live = st.empty()
    started = time.perf_counter()
    for n, (item, m) in enumerate(jobs):
        label = f"{item['name']} · {sc.METHODS[m].label}"

        def progress(done, total, n=n, label=label):
            bar.progress(min(1.0, (n + done / total) / len(jobs)), text=f"{label}: {done}/{total}")

        def preview(done, total, saliency, item=item, label=label):  # anytime SmoothGrad, RISE
            r = rd.render(saliency, item["crop"], colormap=colormap, alpha=alpha, clip_percentile=clip)
            live.image(r.overlay, width=260,
                       caption=f"{label}: running result after {done} of {total} (still computing)")

        bar.progress(n / len(jobs), text=label)
        try:
            explanation(model, item["image"], item["hash"], m, target_for(item),
                        method_params(m, cfg["params"]), progress, preview)
        except Exception as err:
            report_error(label, err)
    bar.empty()
    live.empty()
    st.toast(f"{len(jobs)} map(s) computed in {time.perf_counter() - started:.1f} s")

# ---- draw -----------------------------------------------------------------------------------
results = {}
for item in images:
    for m in cfg["methods"]:
        try:
            results[item["id"], m] = explanation(model, item["image"], item["hash"], m, target_for(item),
                                                    method_params(m, cfg["params"]))
        except Exception:
            pass  # already reported above


def sign_for(method: str) -> str:
    return sign if sc.METHODS[method].signed else "absolute"


def cmap_for(s: str) -> str:
    return "balance" if s == "signed" else colormap


scales = {}
if shared:
    for m in cfg["methods"]:
        maps = [results[i["id"], m].saliency for i in images if (i["id"], m) in results]
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
    fig.update_layout(height=230, margin=dict(l=0, r=0, t=10, b=0), showlegend=False,
                      xaxis_title="probability", yaxis_title=None)
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
    st.caption(r.legend)


batch_files: dict[str, bytes] = {}
batch_rows: list[dict] = []
for item in images:
    target = target_for(item)
    with st.container(border=True):
        st.subheader(item["name"])
        methods = [m for m in cfg["methods"] if (item["id"], m) in results]
        cols = st.columns([1] * (len(methods) + 1) + [1.6])
        cols[0].image(item["crop"], caption="What the model sees", width="stretch")
        records, rendered = [], {}
        stem = f'{item["id"] + 1:02d}_' + item["name"].rsplit(".", 1)[0].replace(" ", "_")
        for col, m in zip(cols[1:], methods):
            exp = results[item["id"], m]
            r = rendered[m] = draw(exp)
            meta = sc.METHODS[m]
            with col:
                if display == "Outline":
                    o = outline(exp, item)
                    shown, legend = o.overlay, o.legend
                    st.image(shown, caption=meta.label, width="stretch")
                    st.caption(f"{legend}\n\n*{meta.description}*")
                else:
                    shown, legend = r.overlay, r.legend
                    st.image(shown, caption=meta.label, width="stretch")
                    st.image(rd.colorbar_image(r), width="stretch")
                    ticks = "  ·  ".join(label for _, label in r.colorbar_ticks)
                    st.caption(f"{ticks}\n\n{legend}\n\n*{meta.description}*")
                if r.near_zero:
                    st.info("This map is zero (or numerically negligible) everywhere.")
                if meta.caution:
                    st.warning(meta.caution, icon="⚠️")
                verdict = sanity_verdict(model, m)  # shown once the Sanity check page computed it
                if verdict is not None:
                    if verdict.passed:
                        st.caption(f"✅ {verdict.summary}")
                    else:
                        st.warning(verdict.summary, icon="⛔")
                gap = exp.diagnostics.get("completeness_gap_relative")
                if gap is not None:
                    st.caption(f"Completeness gap {gap:.1%} (attributions vs score difference).")
                png = png_bytes(shown)
                st.download_button("PNG", png, f"{stem}_{m}.png", "image/png", key=f"png-{item['id']}-{m}")
                batch_files[f"{stem}_{m}.png"] = png
            records.append({"image": item["name"], **exp.record(), "legend": legend, "scale": r.scale})
        with cols[-1]:
            st.markdown(f"**Prediction:** {item['prediction'][0][1]} ({item['prediction'][0][2]:.1%})")
            st.plotly_chart(prediction_chart(item["prediction"], target), key=f"pred-{item['id']}",
                            config={"displayModeBar": False})
            st.caption(f"Maps explain **{model.labels[target]}**.")
            data = {"image": item["name"], "image_hash": item["hash"], "model": model.describe(),
                    "prediction": [dict(zip(("index", "label", "probability"), p)) for p in item["prediction"]],
                    "maps": records}
            js = json.dumps(data, indent=2)
            st.download_button("Predictions & parameters (JSON)", js, f"{stem}.json", "application/json",
                               key=f"json-{item['id']}")
            rows = [{"image": item["name"], "method": r_["method"], "target": r_["target"],
                     "target_label": r_["target_label"], "params": json.dumps(r_["params"]),
                     "top1": item["prediction"][0][1], "top1_probability": item["prediction"][0][2],
                     "model_fingerprint": model.fingerprint} for r_ in records]
            st.download_button("Table (CSV)", pd.DataFrame(rows).to_csv(index=False), f"{stem}.csv",
                               "text/csv", key=f"csv-{item['id']}")
            batch_files[f"{stem}.json"] = js.encode()
            batch_rows += rows
        if methods:
            with st.expander("Interactive map (zoom, hover for values)"):
                m = st.selectbox("Method", methods, format_func=lambda n: sc.METHODS[n].label,
                                 key=f"inter-{item['id']}")
                interactive_map(results[item["id"], m], rendered[m], key=f"heat-{item['id']}-{m}")

if batch_rows:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in batch_files.items():
            z.writestr(name, data)
        z.writestr("maps.csv", pd.DataFrame(batch_rows).to_csv(index=False))
    st.download_button("Download everything (ZIP: overlays, JSON, CSV)", buf.getvalue(),
                       "saliency_maps.zip", "application/zip", type="primary")
