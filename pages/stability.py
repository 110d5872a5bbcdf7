"""Stability: do the maps stay put when the input barely changes and the prediction does not?"""

from __future__ import annotations

import dataclasses
import time

import pandas as pd
import plotly.express as px
import streamlit as st

import pages._defaults as defaults
import saliency_core as sc
from pages._detail import detail_settings
from pages._frame import require_frame
from pages._guard import report_error
from pages._images import UPLOAD_TYPES, decode, single_image
from pages._layout import colour_bar, map_rows
from pages._models import model_key
from pages._results import result_cache
from pages._run import cancellable, estimate_caption, finish_run, request_run, run_active
from pages._settings import page_setup
from pages._text import DISCLAIMER, map_alt, plain
from pages._verdicts import record_stability_verdict
from saliency_core.engine import estimate as es
from saliency_core.engine import render as rd
from saliency_core.engine.detail import smooth
from saliency_core.engine.safe_text import json_text, to_csv
from saliency_core.evaluation import stability as stab
from saliency_core.pipeline import method_params

GENERATED, SIMILAR = "Small changes made here", "Similar images I upload"
KIND_NAMES = {
    "noise": "pixel noise",
    "brightness": "brightness",
    "contrast": "contrast",
    "shift": "shift",
    "rotation": "rotation",
    "jpeg": "JPEG re-compression",
}
VERDICT_STYLE = {
    "stable": (st.success, ":material/check_circle:"),
    "unstable explanation": (st.warning, ":material/warning:"),
    "fragile prediction": (st.error, ":material/error:"),
}


@dataclasses.dataclass(frozen=True)
class Changes:
    """The generated changes asked for: how many copies, which kinds, how strong."""

    count: int
    kinds: tuple
    perturbation: stab.Perturbation


@dataclasses.dataclass(frozen=True)
class Limits:
    """The widget values that judge a map stable, unstable or its prediction fragile."""

    min_spearman: float
    min_overlap: float
    top_k: float
    max_drop: float


def intro() -> None:
    """Show the title, the one-line aim and how the check works."""
    st.title("Stability across similar inputs")
    st.markdown(
        "Check whether the maps stay put when the photo changes a little and the prediction does not. "
        "**Pick a photo and press Check stability.**"
    )
    with st.expander("How it works"):
        st.markdown(
            "The image is changed a little (noise, brightness, contrast, a few pixels of shift, a small "
            "rotation, JPEG re-compression) or compared with similar images you upload. A trustworthy map "
            "stays put when the prediction does. Shifts and rotations are undone before comparing, and only "
            "the part visible in both images is compared. " + DISCLAIMER
        )


def similar_images(source: str) -> list:
    """Show the uploader of similar images when they are compared; stop until one decodes."""
    similar = []
    if source == SIMILAR:
        files = st.file_uploader(
            "Similar images (frames of one product, say)",
            type=UPLOAD_TYPES,
            accept_multiple_files=True,
            help="They are compared pixel for pixel after the model's resize and crop, so "
            "the object should sit at the same place and scale.",
        )
        for f in files or []:
            try:
                similar.append((f.name, decode(f.getvalue(), f.name)))
            except ValueError as err:  # one bad file never hides the others
                st.error(plain(err))
        if not similar:
            st.info("Upload one or more similar images, or compare with small changes made here.")
            st.stop()
    return similar


def change_controls() -> Changes:
    """Show the number, kinds and strength of the changed copies made here."""
    c1, c2 = st.columns([1, 2])
    count = c1.number_input(
        "Number of changed copies",
        1,
        stab.MAX_VARIANTS,
        key="stability_count",
        help="The kinds are used in turn: noise, brightness, contrast, shift, "
        "rotation, JPEG, noise again with new draws...",
    )
    kinds = c2.multiselect(
        "Kinds of change", stab.KINDS, default=list(stab.KINDS), format_func=KIND_NAMES.get
    )
    with st.expander("Strength of the changes"):
        d1, d2, d3 = st.columns(3)
        pixel_noise = d1.slider("Pixel noise (std., fraction of the pixel range)", 0.0, 0.2, 0.02, 0.005)
        brightness = d1.slider("Brightness change (±)", 0.0, 0.5, 0.1, 0.05)
        contrast = d2.slider("Contrast change (±)", 0.0, 0.5, 0.1, 0.05)
        shift = d2.slider("Shift (pixels)", 1, 32, 4)
        rotation = d3.slider("Rotation (degrees, ±)", 0.5, 15.0, 3.0, 0.5)
        quality = d3.slider("JPEG quality", 10, 95, 75, 5)
        noise_seed = d3.number_input("Seed of the noise", 0, 2**31 - 1, 0)
    perturbation = stab.Perturbation(
        pixel_noise=float(pixel_noise),
        brightness=float(brightness),
        contrast=float(contrast),
        shift=int(shift),
        rotation=float(rotation),
        jpeg_quality=int(quality),
        seed=int(noise_seed),
    )
    return Changes(count=int(count), kinds=tuple(kinds), perturbation=perturbation)


def limit_controls() -> Limits:
    """Show the thresholds that say when a map is stable and a prediction fragile."""
    st.markdown("**When is a map stable?**")
    t1, t2, t3, t4 = st.columns(4)
    limits = stab.StabilityThresholds()
    min_spearman = t1.slider(
        "Stable if the mean rank correlation is at least",
        0.0,
        1.0,
        limits.min_spearman,
        0.05,
        help="Spearman rank correlation of |map| with the original's map, averaged over "
        "the variants; 1 = same ordering of pixels, 0 = unrelated.",
    )
    min_overlap = t2.slider(
        "… and the mean share of top pixels kept at least",
        0.0,
        1.0,
        limits.min_top_k_overlap,
        0.05,
        help="Share of the original's most salient pixels that stay most salient (top-k "
        "overlap). Unrelated maps score about the top-k share.",
    )
    top_k = t3.slider("Share of pixels counted as top", 0.01, 0.5, limits.top_k, 0.01)
    max_drop = t4.slider(
        "Fragile if the class changes or its probability drops by more than",
        0.0,
        1.0,
        limits.max_confidence_drop,
        0.05,
        format="%.2f",
    )
    return Limits(float(min_spearman), float(min_overlap), float(top_k), float(max_drop))


def start() -> None:
    """Ask for a check with this run's widget values."""
    st.session_state["stability_new"] = True
    request_run("stability")


def estimate_and_start(model, methods: list, cfg, changes: Changes | None, similar: list) -> None:
    """Show the time estimate, the full-setting button and the Check stability button."""
    variants_planned = changes.count if changes else len(similar)
    maps = {m: method_params(m, cfg.params) for m in methods}
    estimate_caption(
        es.stability_seconds(es.pass_times(model), variants_planned, maps),
        f"This check ({len(methods)} methods × {variants_planned + 1} images)",
    )
    if changes and changes.count < defaults.STABILITY_FULL_VARIANTS:
        full = es.stability_seconds(es.pass_times(model), defaults.STABILITY_FULL_VARIANTS, maps)
        st.button(
            f"Use the full setting ({defaults.STABILITY_FULL_VARIANTS} changed copies, four of each kind: "
            f"{es.describe_seconds(full)})",
            icon=":material/tune:",
            key="stability_full",
            on_click=lambda: st.session_state.update(stability_count=defaults.STABILITY_FULL_VARIANTS),
        )
    st.button("Check stability", type="primary", icon=":material/play_arrow:", on_click=start)


def controls(source: str, similar: list, model, methods: list, cfg) -> tuple[Changes | None, Limits]:
    """Show the box of settings: the changes, the thresholds and the button that starts the check."""
    if st.session_state.get("stability_count") is None:
        st.session_state["stability_count"] = defaults.STABILITY_VARIANTS
    with st.container(border=True):
        changes = change_controls() if source == GENERATED else None
        limits = limit_controls()
        estimate_and_start(model, methods, cfg, changes, similar)
    return changes, limits


def asked_request(source: str, model, image_hash: str, changes: Changes | None, limits: Limits) -> dict:
    """Keep the settings of a pressed Check stability; stop while none fits this model and image."""
    if st.session_state.pop("stability_new", False):  # this run's widget values
        settings_used = {"source": source, "top_k": limits.top_k, "for": (model_key(model), image_hash)}
        if changes:
            settings_used.update(count=changes.count, kinds=changes.kinds, perturbation=changes.perturbation)
        st.session_state["stability_request"] = settings_used
    request = st.session_state.get("stability_request")
    if request is None or request["source"] != source or request["for"] != (model_key(model), image_hash):
        finish_run("stability")
        st.info("Nothing is computed until you press **Check stability**.")
        st.stop()
    return request


def variants_for(request: dict, model, image, similar: list) -> tuple[list, tuple]:
    """Make the changed copies (or take the similar images) and the key that names them."""
    if request["source"] == GENERATED:
        try:
            variants = stab.make_variants(
                model, image, request["count"], request["perturbation"], request["kinds"]
            )
        except ValueError as err:
            finish_run("stability")
            st.error(f"The variants could not be made: {plain(err)}")
            st.stop()
        return variants, (request["count"], request["kinds"], dataclasses.astuple(request["perturbation"]))
    return stab.similar_variants(model, similar), tuple(sc.image_hash(i) for _, i in similar)


def run_check(key: tuple, partial, model, image, methods: list, variants: list, cfg, top_k: float):
    """Compute the maps of a requested check with a progress bar and Cancel; cache the result."""
    started = time.perf_counter()
    try:
        with cancellable("stability", f"Computing {len(methods)} x {len(variants) + 1} maps…") as bar:

            def progress(done, total):
                bar.progress(min(1.0, done / total), text=f"Computing maps: batch {done} of {total}")

            def keep(so_far):  # what a Cancel keeps
                st.session_state["stability_partial"] = (key, so_far)

            result = stab.stability_check(
                model,
                image,
                methods,
                variants=variants,
                params=cfg.params,
                progress=progress,
                done=partial,
                on_result=keep,
                thresholds=stab.StabilityThresholds(top_k=top_k),
            )
        result_cache().put(key, result)
        st.session_state.pop("stability_partial", None)
        st.caption(f":material/timer: Stability checked in {time.perf_counter() - started:.1f} s.")
    except Exception as err:
        report_error("Stability check", err)
        st.stop()
    finally:
        finish_run("stability")
    return result


def checked(request: dict, model, image, image_hash: str, methods: list, cfg, similar: list):
    """Show the check being computed, or what a stopped one kept; stop while there is nothing to show."""
    # finished runs are cached for every session; a stopped one is kept in this session
    variants, variant_key = variants_for(request, model, image, similar)
    params = {m: method_params(m, cfg.params) for m in methods}
    key = (
        "stability",
        *model_key(model),
        image_hash,
        tuple(methods),
        variant_key,
        request["top_k"],
        tuple((m, tuple(sorted(p.items()))) for m, p in params.items()),
    )
    result = result_cache().get(key)
    stored = st.session_state.get("stability_partial")
    partial = stored[1] if stored and stored[0] == key else None
    if result is None and run_active("stability"):
        result = run_check(key, partial, model, image, methods, variants, cfg, request["top_k"])
    if result is None and partial is not None:
        result = partial
        left = [sc.METHODS[m].label for m in methods if m not in partial.summary and m not in partial.errors]
        st.warning(
            f"Stopped after {len(partial.summary)} of {len(methods)} methods: the results below cover those.",
            icon=":material/pause_circle:",
        )
        st.button(
            f"Go on with {', '.join(left)}",
            icon=":material/play_arrow:",
            key="stability_go_on",
            on_click=request_run,
            args=("stability",),
        )
    if result is None:
        st.info("Press **Check stability** to compute the maps for these settings.")
        st.stop()
    return result


def judged(result, limits: Limits, top_k: float):
    """Re-judge the maps with the thresholds on screen; show each method that failed; stop if none is left."""
    thresholds = stab.StabilityThresholds(
        min_spearman=limits.min_spearman,
        min_top_k_overlap=limits.min_overlap,
        max_confidence_drop=limits.max_drop,
        top_k=top_k,
    )
    result = result.with_thresholds(thresholds)
    for m, message in result.errors.items():
        st.error(f"**{sc.METHODS[m].label}** could not be computed: {plain(message)}")
    if not result.summary:
        st.stop()
    return result, thresholds


def verdicts(result, thresholds, model, image_hash: str) -> None:
    """Show the prediction, the table of verdicts and one message per method."""
    top = result.prediction[0]
    steady = sum(v.steady for v in result.variants)
    st.markdown(
        f"**Prediction on the original:** {plain(top[1])} ({top[2]:.1%}). Every map explains "
        f"**{plain(result.target_label)}**; "
        f"the prediction held under {steady} of {len(result.variants)} changed copies."
    )
    pct = f"{thresholds.top_k:.0%}"
    table = pd.DataFrame(
        [
            {
                "Method": sc.METHODS[m].label,
                "Verdict": s.verdict,
                "Mean rank correlation": round(s.mean["spearman_abs"], 3),
                f"Mean share of top {pct} pixels kept": round(s.mean["top_k_overlap"], 3),
                "Mean structural similarity (SSIM)": round(s.mean["ssim"], 3),
                "Worst rank correlation": round(s.worst["spearman_abs"], 3),
            }
            for m, s in result.summary.items()
        ]
    )
    st.dataframe(table, hide_index=True)
    for m, s in result.summary.items():
        record_stability_verdict(model, image_hash, m, s.verdict, s.reason)  # the Gallery's flags
        show, icon = VERDICT_STYLE[s.verdict]
        show(f"**{sc.METHODS[m].label}: {s.verdict}.** {plain(s.reason)}", icon=icon)
    st.caption(
        f"Thresholds: stable if the mean rank correlation (Spearman of |map|) is at least "
        f"{thresholds.min_spearman:.2f} and the mean share of top-{pct} pixels kept at least "
        f"{thresholds.min_top_k_overlap:.2f}; fragile prediction if the class changes or its probability "
        f"drops by more than {thresholds.max_confidence_drop:.0%} under any change."
    )


def chart(result, thresholds) -> None:
    """Show how closely each changed copy's map follows the original's, one marker per method."""
    rows = pd.DataFrame(result.rows())
    rows["method"] = rows["method"].map(lambda n: sc.METHODS[n].label)
    rows["prediction"] = rows["steady"].map({True: "held", False: "changed or dropped"})
    fig = px.scatter(
        rows,
        x="variant",
        y="spearman_abs",
        color="method",
        symbol="method",
        category_orders={"variant": list(dict.fromkeys(v.name for v in result.variants))},
        labels={
            "variant": "changed copy",
            "spearman_abs": "rank correlation",
            "method": "method",
            "top1": "prediction",
            "top1_probability": "probability",
            "top_k_overlap": "top pixels kept",
            "ssim": "SSIM",
        },
        hover_data=["prediction", "top1", "top1_probability", "top_k_overlap", "ssim"],
    )
    for v in rows.loc[~rows["steady"], "variant"].unique():
        fig.add_annotation(x=v, y=1.03, text="prediction changed", showarrow=False, font=dict(size=10))
    fig.add_hline(
        y=thresholds.min_spearman,
        line_dash="dash",
        line_color="grey",
        annotation_text=f"stable from {thresholds.min_spearman:.2f}",
    )
    fig.update_traces(marker_size=11)
    fig.update_layout(
        height=360,
        margin=dict(l=0, r=0, t=40, b=0),
        yaxis_range=[-0.2, 1.08],
        title="How closely each changed copy's map follows the original's",
        yaxis_title="rank correlation with the original's map",
        xaxis_title=None,
    )
    st.plotly_chart(
        fig,
        key="stability-chart",
        alt="Rank correlation of each changed copy's map with the original's, one marker shape per "
        "method; the dashed line is the stability threshold.",
    )


def method_grid(result, m: str, name: str) -> None:
    """Show one method's map on the original and on each changed copy, with its colour scale."""
    meta = sc.METHODS[m]
    tiles = [("original", result.image, result.saliency[m], result.prediction[0], None)]
    tiles += [(v.name, v.image, v.saliency[m], v.prediction, v.scores[m]) for v in result.variants]
    legend = None
    # drawn at the detail they are compared at (the coarsest over the copies; 0 for exact maps)
    detail_px = max(
        [float(v.scores[m].get("detail_px") or 0.0) for v in result.variants if m in v.scores] + [0.0]
    )
    detail_px = 0.0 if detail_settings()["full_detail"] else detail_px
    if detail_px:
        st.caption(
            f"Maps drawn and compared at {detail_px:g}-pixel detail, the finest that a re-run with other "
            "noise reproduces; the raw-pixel figures are in the table."
        )
    for row, cols in map_rows(tiles, key=f"stability-{m}"):
        for col, (title, picture, saliency, prediction, scores) in zip(cols, row):
            r = rd.render(
                smooth(saliency, detail_px), picture, target_label=result.target_label, meaning=meta.meaning
            )
            legend = legend or r
            caption = f"{plain(title)} · {plain(prediction[1])} ({prediction[2]:.0%})"
            if scores:
                caption += f" · follows the original {scores['spearman_abs']:.2f}"
            col.image(
                r.overlay,
                caption=caption,
                width="stretch",
                alt=map_alt(
                    meta.label,
                    f"{name} ({title})",
                    result.target_label,
                    prediction[2] if prediction[0] == result.target else None,
                ),
            )
    left, _ = st.columns([1, 2])
    with left:
        colour_bar(legend, alt=f"Colour scale of the {meta.label} maps: dark = low, bright = high influence")
    st.caption(
        f'{plain(legend.words)} Each map is drawn on its own scale. "Follows the original" is the '
        "rank correlation with the original's map (1 = same order of pixels), compared where both "
        "images show the same pixels."
    )


def grid(result, name: str) -> None:
    """Show each method's maps and scores over the changed copies, one expander per method."""
    for n, (m, s) in enumerate(result.summary.items()):
        label = sc.METHODS[m].label
        with st.expander(f"{label}: {s.verdict} · each changed copy's map", expanded=n == 0):
            method_grid(result, m, name)


def export(result, name: str, model) -> None:
    """Show the downloads: the scores per changed copy and the verdicts with their settings."""
    table = pd.DataFrame(result.rows())
    table.insert(0, "image", name)
    table["model_fingerprint"] = model.fingerprint
    c1, c2 = st.columns(2)
    c1.download_button(
        "Scores per changed copy (CSV)",
        to_csv(table),
        "stability.csv",
        "text/csv",
        icon=":material/download:",
        wrap=True,
    )
    c2.download_button(
        "Verdicts and settings (JSON)",
        json_text({"image": name, "model": model.describe(), **result.record()}, indent=2),
        "stability.json",
        "application/json",
        icon=":material/download:",
        wrap=True,
    )


require_frame()
intro()
cfg, model, methods = page_setup()
name, image, image_hash = single_image(UPLOAD_TYPES)
source = st.radio("Compare with", [GENERATED, SIMILAR], horizontal=True)
similar = similar_images(source)
changes, limits = controls(source, similar, model, methods, cfg)
request = asked_request(source, model, image_hash, changes, limits)
result = checked(request, model, image, image_hash, methods, cfg, similar)
result, thresholds = judged(result, limits, request["top_k"])
verdicts(result, thresholds, model, image_hash)
chart(result, thresholds)
grid(result, name)
export(result, name, model)
