"""The gallery's full view of one image: the crop, every method's stored map with its colour bar and
legend (or as outlines), the checks' verdicts, the top 5 and the review decisions.

Nothing is computed here: maps come from the result store (saliency_core.gallery)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

import saliency_core as sc
from pages._detail import drawn
from pages._gallery_text import md, shown
from pages._images import crop_key, region_labels
from pages._verdicts import sanity_verdict, stability_verdict
from saliency_core import gallery
from saliency_core.engine import render as rd
from saliency_core.pipeline import RenderOptions

ss = st.session_state


def show_item(
    model,
    store,
    name: str,
    label: str,
    classes,
    read,
    image_hash: str,
    methods,
    params,
    on_close,
    key,
    decisions,
) -> None:
    """One image in full (``read()`` gives its bytes); ``decisions(image_hash)`` draws its review
    decisions."""
    with st.container(border=True, key=f"gallery_{key}"):
        head, close = st.columns([6, 1], vertical_alignment="center")
        head.markdown(f"### {md(name)}")
        close.button("Close", on_click=on_close, key=f"gallery_{key}_close", width="stretch")
        try:
            crop = model.crop(sc.load_image(read(), name=name))
        except ValueError as err:
            crop = None
            st.error(str(err))
        top5, maps, missing = gallery.explanations(store, model, image_hash, methods, params, crop)
        if not top5:
            st.info("This image has no stored result for the current model.")
            return
        predicted, predicted_label, confidence = top5[0]
        verdict = ":green-badge[Correct]" if predicted in classes else ":red-badge[Mistake]"
        st.markdown(
            f"True class **{md(label)}** · predicted **{md(predicted_label)}** ({confidence:.1%}) · {verdict}"
        )
        display, outline_share = map_display(key)
        cols = st.columns(len(methods) + 2)
        if crop is not None:
            cols[0].image(
                crop,
                caption="What the model sees",
                width="stretch",
                alt=f"{name} as the model sees it: resized and centre-cropped",
            )
        for col, m in zip(cols[1:], methods):
            with col:
                if m not in maps:
                    st.caption(f"{sc.METHODS[m].label}: no map ({md(missing.get(m, ''))})")
                    continue
                picture = crop if crop is not None else maps[m].image
                if display == "Outline":
                    outline_map(model, m, maps[m], picture, image_hash, name, outline_share)
                else:
                    heatmap(m, maps[m], picture, name)
                method_checks(model, m, image_hash)
        with cols[-1]:
            top_five(top5, classes, predicted_label, key)
        decisions(image_hash)


def map_display(key) -> tuple[str, int]:
    """The reviewer's choice: heatmaps, or outlines holding a share (%) of each map."""
    view, share = st.columns([2, 3])
    display = view.radio(
        "Show each map as",
        ["Heatmap", "Outline"],
        horizontal=True,
        key=f"gallery_{key}_view",
        help="Outline: the image is cut into regions of similar colour, and the regions "
        "holding the chosen share of the map are outlined; the rest is dimmed.",
    )
    outline_share = (
        share.slider(
            "Outline holds this share of the map",
            5,
            95,
            int(ss.get("outline_share", 30)),
            5,
            format="%d %%",
            key=f"gallery_{key}_share",
        )
        if display == "Outline"
        else 30
    )
    return display, outline_share


def outline_map(model, m: str, exp, picture, image_hash: str, name: str, outline_share: int) -> None:
    """Method ``m``'s map as the outlines of the regions holding ``outline_share`` % of it."""
    meta = sc.METHODS[m]
    o = rd.render_outline(
        exp.saliency,
        picture,
        region_labels(crop_key(model, image_hash), picture),
        share=outline_share / 100,
        signed=meta.signed,
        target_label=exp.target_label,
    )
    st.image(
        o.overlay,
        caption=meta.label,
        width="stretch",
        alt=f"{meta.label} map of {name} as outlines: the regions holding {outline_share} % "
        f"of the map for the class {exp.target_label}; the rest dimmed.",
    )
    st.caption(md(o.legend))


def heatmap(m: str, exp, picture, name: str) -> None:
    """Method ``m``'s map over the image with its colour bar and legend; averaged maps at their
    reproducible detail."""
    meta, options = sc.METHODS[m], RenderOptions()
    as_shown = drawn(exp)
    r = rd.render(
        as_shown.saliency,
        picture,
        sign=options.sign_for(m),
        alpha=options.alpha,
        clip_percentile=options.clip_percentile,
        target_label=exp.target_label,
        meaning=meta.meaning,
    )
    st.image(
        r.overlay,
        caption=meta.label,
        width="stretch",
        alt=f"{meta.label} map of {name} over the image: {r.legend}",
    )
    st.image(rd.colorbar_image(r), width="stretch", alt=f"colour bar: {r.legend}")
    st.caption(
        "  ·  ".join(tick for _, tick in r.colorbar_ticks)
        + f"\n\n{md(r.legend)}"
        + (f"\n\n{md(as_shown.words)}" if as_shown.words else "")
    )
    if r.near_zero:
        st.info("This map is zero (or numerically negligible) everywhere.")


def method_checks(model, m: str, image_hash: str) -> None:
    """The method's caution and the sanity and stability verdicts recorded on other pages."""
    meta = sc.METHODS[m]
    if meta.caution:
        st.warning(meta.caution, icon="⚠️")
    sanity = sanity_verdict(model, m)
    if sanity is not None:
        (st.caption if sanity.passed else st.warning)(md(sanity.summary))
    stable = stability_verdict(model, image_hash, m)
    if stable is not None:
        (st.caption if stable[0] == "stable" else st.warning)(md(f"Stability: {stable[0]}. {stable[1]}"))


def top_five(top5, classes, predicted_label: str, key) -> None:
    """The top 5 classes as bars, true classes in green."""
    frame = pd.DataFrame(top5, columns=["index", "class", "probability"])
    frame["class"] = frame["class"].map(shown)
    frame["true class"] = frame["index"].isin(list(classes))
    chart = px.bar(
        frame[::-1],
        x="probability",
        y="class",
        orientation="h",
        range_x=[0, 1],
        color="true class",
        color_discrete_map={True: "#1b9e77", False: "#7570b3"},
        text=frame[::-1]["probability"].map(lambda p: f"{p:.1%}"),
    )
    chart.update_layout(
        height=230,
        margin=dict(l=0, r=0, t=10, b=0),
        showlegend=False,
        xaxis_title="probability",
        yaxis_title=None,
    )
    st.markdown("**Top 5** (green: a true class)")
    st.plotly_chart(chart, key=f"gallery_{key}_top5", config={"displayModeBar": False})
    st.caption(
        f"Maps explain the predicted class **{md(predicted_label)}**; shown from the stored "
        "results, nothing recomputed."
    )
