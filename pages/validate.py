"""Validate: maps against expert annotations over a data set, beside maps that ignore the model."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from PIL import Image, ImageDraw

import pages._defaults as defaults
import saliency_core as sc
from pages._frame import require_frame
from pages._guard import report_error
from pages._layout import GRID_CSS, colour_bar
from pages._run import cancellable, estimate_caption, finish_run, request_run, run_active
from pages._settings import page_setup
from pages._text import DISCLAIMER, map_alt, plain
from saliency_core.engine import estimate as es
from saliency_core.engine import render as rd
from saliency_core.engine.safe_text import json_text, to_csv
from saliency_core.evaluation import annotations as an
from saliency_core.evaluation import faithfulness as fa
from saliency_core.evaluation import localisation as lo
from saliency_core.evaluation import validate as va
from saliency_core.evaluation.data import DEMO_DESCRIPTION, demo_dataset, pasted_objects
from saliency_core.pipeline import method_params

IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"]
DEMO = "Demo: 5 photos, hand-drawn boxes"
PASTED = "Synthetic benchmark: pasted objects"
UPLOAD = "My data set (upload)"
STEPS = defaults.VALIDATE_STEPS
REPLACEMENT_NAMES = {
    "mean": "the image's mean colour",
    "blurred": "a blurred copy (Gaussian, sigma 5)",
    "black": "black",
}
BASELINE_COLOUR = "#9e9e9e"
MARKERS = ["circle", "square", "diamond", "triangle-up", "cross", "star", "pentagon", "hexagram"]
DASHES = ["solid", "dash", "dashdot", "longdash", "longdashdot", "dot"]


@dataclass
class Measures:
    """The measure widgets' values for this run of the script."""

    tolerance: int
    top_k: float
    interval: str
    measure_on: str
    faithful: bool
    step_name: str
    deletion: str
    insertion: str


def intro() -> None:
    """The title, what the page does and how it works."""
    st.title("Validate against expert annotations")
    st.markdown(
        "Check, over a whole set of annotated photos, whether each method's map points at what experts "
        "marked. **Pick a data set and press Run validation.**"
    )
    with st.expander("How it works"):
        st.markdown(
            "Each method's map is scored against the regions experts marked, and with deletion / insertion "
            "curves that ask whether the model depends on the highlighted pixels. Two maps that ignore the "
            "model run beside the methods: a centred Gaussian (centre bias) and random noise. A method that "
            "does not beat them is not showing where the model looks. " + DISCLAIMER
        )


# ---- the data set --------------------------------------------------------------------------------
def choose_dataset():
    """The data set radio: the demo set, the pasted-objects benchmark or an upload (None until one)."""
    source = st.radio("Data set", [DEMO, PASTED, UPLOAD], horizontal=True, key="validate_source")
    if source == DEMO:
        st.caption(DEMO_DESCRIPTION + " The boxes come with the app.")
        return demo_dataset()
    if source == PASTED:
        c1, c2 = st.columns(2)
        count = c1.number_input(
            "Number of images",
            10,
            1000,
            60,
            10,
            key="validate_pasted_n",
            help="Generated one at a time from the seed while the run goes; none is stored.",
        )
        seed = c2.number_input("Seed of the layout", 0, 2**31 - 1, 0, key="validate_pasted_seed")
        dataset = pasted_objects(int(count), int(seed))
        st.caption(
            plain(dataset.description) + " It tests whether a map finds a known object on a background, not "
            "whether it agrees with human judgement on natural photos."
        )
        return dataset
    return upload_dataset()


def upload_dataset():
    """The upload fields and the data set read from them (None until a readable upload came)."""
    st.markdown(
        "A **ZIP** with images and annotations, **or** images plus annotation files. Annotations: CSV "
        "boxes `image,x_min,y_min,x_max,y_max[,label]` (pixel edges of the original image), Pascal VOC "
        "XML, COCO JSON, or mask PNGs named like their image (in a ZIP: in a `masks/` folder or named "
        "`<image>_mask.png`). Images and annotations are matched by file name without suffix."
    )
    c1, c2, c3 = st.columns(3)
    archive = c1.file_uploader("ZIP of images and annotations", type=["zip"], key="validate_zip")
    pictures = c2.file_uploader(
        "Images",
        type=IMAGE_TYPES,
        accept_multiple_files=True,
        key="validate_images",
        disabled=archive is not None,
    )
    notes = c3.file_uploader(
        "Annotation files",
        type=["csv", "xml", "json", "png", "bmp", "tif", "tiff"],
        accept_multiple_files=True,
        key="validate_annotations",
        help="Every image file here is read as a mask.",
        disabled=archive is not None,
    )
    dataset = None
    try:
        if archive is not None:
            dataset = an.dataset_from_zip(archive.getvalue(), name=archive.name)
        elif pictures or notes:
            dataset = an.dataset_from_files(
                [(f.name, f.getvalue()) for f in pictures or []],
                [(f.name, f.getvalue()) for f in notes or []],
            )
    except ValueError as err:
        st.error(f"The upload cannot be read: {plain(err)}")
    except Exception as err:  # a reader bug must not take the page down
        report_error("The upload", err)
    if dataset is None:
        st.info("Upload a ZIP, or images and their annotation files, to begin.")
    return dataset


def describe_dataset(dataset) -> None:
    """How many images were found, which will be skipped and why, and a warning when too few."""
    if dataset is None:
        return
    st.caption(
        f"{len(dataset)} annotated image(s) found"
        + (
            f"; {len(dataset.skipped)} item(s) will be skipped, with the reasons below"
            if dataset.skipped
            else ""
        )
        + "."
    )
    if dataset.skipped:  # the reasons are known now: say them before any run
        with st.expander(f"Items that will be skipped ({len(dataset.skipped)})", expanded=not len(dataset)):
            st.dataframe(
                [{"Item": s.item, "Reason": s.reason} for s in dataset.skipped],
                hide_index=True,
                key="validate_skipped_early",
            )
    if len(dataset) < va.MIN_EXAMPLES:
        st.warning(
            f"Only {len(dataset)} annotated example(s): at least {va.MIN_EXAMPLES} are needed before the "
            "scores can support trust in a method.",
            icon=":material/warning:",
        )


# ---- measures (no form: nothing runs before Run validation, and the estimate follows the settings) ----
def choose_measures(model, cfg, methods) -> Measures:
    """The measure widgets: pointing tolerance, top share, interval, curves and their replacements."""
    if st.session_state.get("validate_step") not in STEPS:
        st.session_state["validate_step"] = defaults.VALIDATE_STEP
    c1, c2, c3 = st.columns(3)
    tolerance = c1.slider(
        "Pointing game tolerance (pixels)",
        0,
        40,
        int(lo.POINTING_TOLERANCE),
        help="A hit when the map's maximum lies within this distance of the region "
        f"(Zhang et al. 2016: 15 px), in pixels of the {model.input_size} px model input.",
    )
    top_k = c1.slider(
        "Share of the most relevant pixels compared with the region",
        0.01,
        0.5,
        lo.TOP_K,
        0.01,
        help="Intersection over union (IoU) of this share of the map's most relevant pixels with the "
        "marked region.",
    )
    interval = c1.radio(
        "95 % confidence interval",
        ["bootstrap", "t"],
        horizontal=True,
        format_func={"bootstrap": "bootstrap (2000 resamples)", "t": "Student t"}.get,
    )
    measure_on = c1.radio(
        "Score each map on",
        list(va.MEASURED_ON),
        horizontal=True,
        format_func={"raw": "the raw map", "shown": "the map as drawn"}.get,
        help="The raw map, pixel by pixel (the default), or the map as the pages draw it: averaged "
        "maps (SmoothGrad, RISE...) blurred to the detail a re-run with other random draws reproduces. "
        "The results table says which.",
    )
    faithful = c2.checkbox(
        "Deletion / insertion curves",
        value=defaults.VALIDATE_FAITHFULNESS,
        help="Petsiuk et al. 2018: remove (or restore) the most relevant pixels step by step and "
        "follow the class probability. One forward pass per step and map: the slow part.",
    )
    step_name = c2.selectbox(
        "Pixels changed per step", list(STEPS), key="validate_step", disabled=not faithful
    )
    deletion = c3.selectbox(
        "Deleted pixels become",
        fa.REPLACEMENTS,
        index=fa.REPLACEMENTS.index("mean"),
        format_func=REPLACEMENT_NAMES.get,
    )
    insertion = c3.selectbox(
        "Insertion starts from",
        fa.REPLACEMENTS,
        index=fa.REPLACEMENTS.index("blurred"),
        format_func=REPLACEMENT_NAMES.get,
    )
    st.caption(
        f"Methods: {', '.join(sc.METHODS[m].label for m in methods)} (sidebar); SmoothGrad with "
        f"{cfg.params['samples']} samples. Each map explains the predicted class. Maps are scored on their "
        "size (signed maps, such as Integrated Gradients and occlusion, on their positive part)."
    )
    return Measures(tolerance, top_k, interval, measure_on, faithful, step_name, deletion, insertion)


def points(fraction: float) -> int:
    """Points on a deletion / insertion curve that changes ``fraction`` of the pixels per step."""
    return int(np.ceil(1 / fraction)) + 1


def seconds_for(model, cfg, methods, fraction: float | None, images: int) -> float:
    """Estimated seconds to validate ``images`` images (curves with ``fraction`` per step, or none)."""
    maps = {m: method_params(m, cfg.params) for m in methods}
    return es.validation_seconds(
        es.pass_times(model), images, maps, curve_points=points(fraction) if fraction else 0
    )


def show_estimate(model, cfg, methods, dataset, measures: Measures) -> None:
    """How long this run will take, and a button for the full curve setting with its own estimate."""
    faithful, step_name = measures.faithful, measures.step_name
    images_in_run = len(dataset) if dataset is not None else 0
    if dataset is not None and len(dataset):
        estimate = seconds_for(model, cfg, methods, STEPS[step_name] if faithful else None, images_in_run)
        estimate_caption(
            estimate,
            f"This run ({images_in_run} images × {len(methods)} maps"
            + (f", {points(STEPS[step_name])} points per curve)" if faithful else ")"),
        )
        if faithful and step_name != defaults.VALIDATE_FULL_STEP:
            full = seconds_for(model, cfg, methods, STEPS[defaults.VALIDATE_FULL_STEP], images_in_run)
            st.button(
                f"Use the full setting ({defaults.VALIDATE_FULL_STEP.split(' (')[0]} steps as in Petsiuk et "
                f"al.: {es.describe_seconds(full)})",
                icon=":material/tune:",
                key="validate_full",
                on_click=lambda: st.session_state.update(validate_step=defaults.VALIDATE_FULL_STEP),
            )


def start() -> None:
    """Run validation's callback: the next script run starts a new run."""
    st.session_state["validate_new"] = True
    request_run("validate")


def offer_run(model, cfg, methods, dataset, measures: Measures) -> None:
    """The Run validation button; on its press, a new run with this script's widget values."""
    st.button(
        "Run validation",
        type="primary",
        icon=":material/play_arrow:",
        disabled=dataset is None or not len(dataset),
        on_click=start,
    )
    if st.session_state.pop("validate_new", False) and dataset is not None:  # this run's widget values
        options = va.ValidationSettings(
            methods=methods,
            params=cfg.params,
            tolerance=float(measures.tolerance),
            top_k=float(measures.top_k),
            faithfulness=bool(measures.faithful),
            step_fraction=STEPS[measures.step_name],
            deletion_replacement=measures.deletion,
            insertion_replacement=measures.insertion,
            seed=int(cfg.params["seed"]),
            interval=measures.interval,
            measure_on=measures.measure_on,
        )
        try:
            st.session_state["validate_run"] = va.ValidationRun(model, dataset, options)
            st.session_state["validation_when"] = time.strftime("%H:%M:%S")
        except ValueError as err:
            finish_run("validate")
            report_error("Validation", err)


def go_on_with_run(model) -> va.ValidationRun | None:
    """Score the images of the run in progress, with a progress bar; the run, or None when it failed."""
    run: va.ValidationRun | None = st.session_state.get("validate_run")
    if run_active("validate") and run is not None:
        try:
            with cancellable("validate", f"Scoring {run.total} images…") as bar:

                def progress(done, total, eta):
                    left = f" · about {eta:.0f} s left" if eta is not None and done < total else ""
                    bar.progress(done / max(total, 1), text=f"{done} of {total} images done{left}")

                va.run_validation(model, run.dataset, run.settings, progress=progress, run=run)
            finish_run("validate")
        except Exception as err:
            finish_run("validate")
            st.session_state.pop("validate_run", None)  # a failed run leaves no half result
            run = None
            report_error("Validation", err)
    return run


def run_result(run: va.ValidationRun | None) -> va.ValidationResult:
    """A stopped run's note and Go on button; the result so far (the page stops when there is none)."""
    if run is not None and not run.finished:
        left = run.total - run.done
        st.warning(
            f"Stopped after {run.done} of {run.total} images: the results below cover those.",
            icon=":material/pause_circle:",
        )
        st.button(
            f"Go on with the other {left} image(s)",
            icon=":material/play_arrow:",
            key="validate_go_on",
            on_click=request_run,
            args=("validate",),
        )
    cached = st.session_state.get("validation_result")
    if run is not None and run.done and (cached is None or cached[0] is not run or cached[1] != run.done):
        st.session_state["validation_result"] = (run, run.done, run.result())
        cached = st.session_state["validation_result"]
    result: va.ValidationResult | None = cached[2] if cached and cached[0] is run else None
    if result is None:
        st.info("Choose the data set and the measures, then press **Run validation**.")
        st.stop()
    return result


# ---- results ---------------------------------------------------------------------------------------
def results_header(result: va.ValidationResult) -> None:
    """When the run ran, its warnings and skipped items (the page stops when no image was scored)."""
    st.divider()
    st.subheader("Results")
    st.caption(
        f"Run at {st.session_state.get('validation_when', '?')}: {result.images} of {result.total} image(s) "
        f"scored in {result.seconds:.1f} s. Data set: {plain(result.description)}"
    )
    for w in result.warnings:
        st.warning(plain(w), icon=":material/warning:")
    if result.skipped:
        with st.expander(f"Skipped items ({len(result.skipped)})", expanded=True):
            st.caption("Left out of the scores, with the reason; the rest of the run went on.")
            st.dataframe(
                result.skipped_table().rename(columns={"item": "Item", "reason": "Reason"}),
                hide_index=True,
                key="validate_skipped",
            )
    if not result.rows:
        st.error("No image could be scored; see the skipped items above.")
        st.stop()


def summary_table(result: va.ValidationResult):
    """The average score per method with its interval, and the details of the run; the summary."""
    summary = result.summary()
    st.markdown(
        "**Average score per method, with its 95 % confidence interval** (maps that ignore the model last)"
    )
    st.dataframe(
        result.summary_table().rename(
            columns={"method": "Method", "n images": "Images", "measured on": "Scored on"}
        ),
        hide_index=True,
        key="validate_summary",
    )
    settings_used = result.settings
    with st.expander("Details of this run"):
        st.caption(
            f"{va.interval_description(settings_used)}. Pointing game tolerance "
            f"{settings_used.tolerance:g} px; IoU of the top {settings_used.top_k:.0%} pixels"
            + (
                f"; deletion / insertion: {settings_used.step_pixels(result.model['input_size'])} px "
                f"({settings_used.step_fraction:.1%}) per step, deleted pixels become "
                f"{REPLACEMENT_NAMES[settings_used.deletion_replacement]}, insertion starts from "
                f"{REPLACEMENT_NAMES[settings_used.insertion_replacement]}; score = softmax probability of "
                "the explained class"
                if settings_used.faithfulness
                else "; deletion / insertion not computed"
            )
            + ". Higher is better for every measure except the deletion AUC. Unsigned maps are scored on "
            f"|saliency|, signed ones on their positive part. Model {plain(result.model['name'])}, weights "
            f"sha256 {result.model['fingerprint']}."
        )
    return summary


def verdicts_against_centre(result: va.ValidationResult, summary) -> None:
    """One line per method: the measures on which it clearly beats (or loses to) the centre baseline."""
    verdicts = []
    for m in [m for m in result.methods if m not in va.BASELINES]:
        part = summary[(summary["method"] == m) & summary["gain_vs_centre"].notna()]
        beats = [va.METRICS[r.metric][0] for r in part.itertuples() if r.beats_centre]
        worse = [va.METRICS[r.metric][0] for r in part.itertuples() if r.gain_ci_high < 0]
        text = f"**{va.label_of(m)}**: " + (
            f"beats the centre-bias baseline on {', '.join(beats)}"
            if beats
            else "does not clearly beat the centre-bias baseline on any measure"
        )
        if worse:
            text += f"; clearly worse on {', '.join(worse)}"
        verdicts.append(text + ".")
    st.markdown("\n".join(f"- {v}" for v in verdicts))
    st.caption(
        "Clearly better / worse: the 95 % interval of the per-image difference to the centre baseline "
        "excludes zero."
    )


def score_chart(result: va.ValidationResult, summary) -> None:
    """Bar charts of the mean score with its interval, one per measure."""
    chart = summary.copy()
    chart["kind"] = np.where(chart["method"].isin(list(va.BASELINES)), "ignores the model", "method")
    chart["plus"] = chart["ci_high"] - chart["mean"]
    chart["minus"] = chart["mean"] - chart["ci_low"]
    fig = px.bar(
        chart,
        x="method_label",
        y="mean",
        color="kind",
        pattern_shape="kind",
        facet_col="metric_label",
        facet_col_wrap=3,
        error_y="plus",
        error_y_minus="minus",
        color_discrete_map={"method": "#d95f02", "ignores the model": BASELINE_COLOUR},
        pattern_shape_map={"method": "", "ignores the model": "/"},
        labels={"method_label": "method", "mean": "average score", "kind": ""},
        hover_data={"n": True, "ci_low": ":.3f", "ci_high": ":.3f", "plus": False, "minus": False},
    )
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_yaxes(matches=None, showticklabels=True, title=None)
    fig.update_xaxes(title=None)
    fig.update_layout(
        height=330 * ((len(result.metrics) + 2) // 3),
        margin=dict(l=0, r=0, t=60, b=0),
        title="Average score per measure and method (bars: 95 % interval)",
        legend_title=None,
    )
    st.plotly_chart(
        fig,
        key="validate_chart",
        alt="Bar charts, one per measure, of each method's average score with its 95 % interval; "
        "the maps that ignore the model are hatched grey.",
    )


def deletion_insertion_curves(result: va.ValidationResult) -> None:
    """The mean deletion and insertion curves per method, when they were computed."""
    if not result.curves:
        return
    from plotly.subplots import make_subplots

    curves = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("Deletion: should fall fast", "Insertion: should rise fast"),
        shared_yaxes=True,
    )
    palette = px.colors.qualitative.Dark2
    shown_methods = [m for m in result.methods if m in result.curves]
    for n, m in enumerate(shown_methods):
        c = result.curves[m]
        colour = BASELINE_COLOUR if m in va.BASELINES else palette[n % len(palette)]
        style = dict(color=colour, width=2, dash="dot" if m in va.BASELINES else DASHES[n % len(DASHES)])
        for col, mode in ((1, "deletion"), (2, "insertion")):
            curves.add_trace(
                go.Scatter(
                    x=c["fractions"],
                    y=c[mode],
                    mode="lines+markers",
                    name=va.label_of(m),
                    legendgroup=m,
                    showlegend=col == 1,
                    line=style,
                    marker=dict(symbol=MARKERS[n % len(MARKERS)], size=7, color=colour),
                ),
                row=1,
                col=col,
            )
    curves.update_xaxes(title_text="share of pixels changed")
    curves.update_yaxes(title_text="probability of the explained class", range=[0, 1], row=1, col=1)
    curves.update_layout(height=380, margin=dict(l=0, r=0, t=40, b=0))
    st.plotly_chart(
        curves,
        key="validate_curves",
        alt="Mean deletion and insertion curves per method: the probability of the explained class as "
        "the most relevant pixels are removed (left) or restored (right). Each method has its own "
        "line style and marker.",
    )
    st.caption(
        "Means over the scored images. A faithful map makes the deletion curve fall fast and the insertion "
        "curve rise fast."
    )


# ---- per image ----------------------------------------------------------------------------------------
def per_image_table(result: va.ValidationResult):
    """The per-image scores, filtered by method and sorted worst first; the whole table."""
    st.markdown("**Per image** (click a column header to sort)")
    table = result.per_image()
    words = {
        "image": "Image",
        "method_label": "Method",
        "top1_label": "Prediction",
        "top1_probability": "Confidence",
        "region_fraction": "Share of the photo marked",
        "seconds": "Seconds",
        "notes": "Notes",
        **{m: va.METRICS[m][0] for m in result.metrics},
    }
    shown = [c for c in words if c in table]
    c1, c2 = st.columns(2)
    only = c1.multiselect("Show methods", [va.label_of(m) for m in result.methods], key="validate_filter")
    order = c2.selectbox(
        "Sort by (worst first)",
        [m for m in result.metrics if m in table],
        key="validate_sort",
        format_func=lambda k: va.METRICS[k][0],
    )
    view = table[table["method_label"].isin(only)] if only else table
    st.dataframe(
        view[shown].sort_values(order, ascending=va.METRICS[order][1]).rename(columns=words),
        hide_index=True,
        key="validate_rows",
        column_config={
            "Confidence": st.column_config.NumberColumn(format="%.2f"),
            "Share of the photo marked": st.column_config.NumberColumn(format="%.2f"),
            "Seconds": st.column_config.NumberColumn(format="%.1f"),
            **{va.METRICS[m][0]: st.column_config.NumberColumn(format="%.3f") for m in result.metrics},
        },
    )
    return table


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


def worst_case_row(n: int, case: va.WorstCase, pick: str):
    """One worst image: the crop, the marked region, the map and the scores; the rendered map."""
    r = rd.render(
        case.saliency,
        case.crop,
        target_label=case.target_label,
        meaning=sc.METHODS[pick].meaning if pick in sc.METHODS else None,
    )
    with st.container(key=f"mapgrid-worst-{n}"):
        c0, c1, c2, c3 = st.columns(4, gap="medium")
    c0.image(
        case.crop,
        caption="What the model sees",
        width="stretch",
        alt=f"{case.image} as the model sees it",
    )
    c1.image(
        annotation_picture(case),
        caption="Marked region (green)",
        width="stretch",
        alt=f"{case.image} with the region the experts marked tinted green",
    )
    c2.image(
        r.overlay,
        width="stretch",
        caption=f"{va.label_of(pick)} map" + (" · zero everywhere" if r.near_zero else ""),
        alt=map_alt(va.label_of(pick), case.image, case.target_label),
    )
    scores = " · ".join(
        f"{va.METRICS[k][0]} {v:.2f}" for k, v in case.scores.items() if v is not None and np.isfinite(v)
    )
    c3.markdown(
        f"**{plain(case.image)}**  \nPrediction: {plain(case.prediction[1])} ({case.prediction[2]:.0%}); "
        f"the map explains **{plain(case.target_label)}**.  \n{scores}"
    )
    return r


def worst_images(result: va.ValidationResult) -> None:
    """The images where the map put least inside the marked region, for one chosen method."""
    if not (result.worst and any(result.worst.values())):
        return
    st.markdown("**Worst images**: the least of the map inside the marked region, worst first")
    pick = st.selectbox(
        "Method",
        [m for m in result.worst if result.worst[m]],
        format_func=va.label_of,
        key="validate_worst_method",
    )
    legend = None
    st.html(GRID_CSS)
    for n, case in enumerate(result.worst[pick]):
        r = worst_case_row(n, case, pick)
        legend = legend or r
    if legend is not None:
        meaning = (sc.METHODS[pick].meaning if pick in sc.METHODS else "{score}").format(
            score="the explained class's score"
        )
        left, _ = st.columns([1, 2])
        with left:
            colour_bar(
                legend,
                alt=f"Colour scale of the {va.label_of(pick)} maps: dark = low, bright = high influence",
            )
        st.caption(
            f"Brighter = {meaning}. Each map is drawn on its own scale; what is drawn is what was scored."
        )


# ---- export -----------------------------------------------------------------------------------------------
def downloads(result: va.ValidationResult, table, summary) -> None:
    """Download buttons: the per-image table, the summary, the skipped items and the record."""
    c1, c2, c3, c4 = st.columns(4)
    c1.download_button(
        "Per-image table (CSV)",
        to_csv(table),
        "validation_per_image.csv",
        "text/csv",
        icon=":material/download:",
        wrap=True,
    )
    c2.download_button(
        "Summary (CSV)",
        to_csv(summary),
        "validation_summary.csv",
        "text/csv",
        icon=":material/download:",
        wrap=True,
    )
    c3.download_button(
        "Skipped items (CSV)",
        to_csv(result.skipped_table()),
        "validation_skipped.csv",
        "text/csv",
        icon=":material/download:",
        wrap=True,
    )
    c4.download_button(
        "Settings and summary (JSON)",
        json_text(result.record(), indent=2),
        "validation.json",
        "application/json",
        icon=":material/download:",
        wrap=True,
    )


require_frame()
intro()
cfg, model, methods = page_setup()
dataset = choose_dataset()
describe_dataset(dataset)
measures = choose_measures(model, cfg, methods)
show_estimate(model, cfg, methods, dataset, measures)
offer_run(model, cfg, methods, dataset, measures)
result = run_result(go_on_with_run(model))
results_header(result)
summary = summary_table(result)
verdicts_against_centre(result, summary)
score_chart(result, summary)
deletion_insertion_curves(result)
table = per_image_table(result)
worst_images(result)
downloads(result, table, summary)
