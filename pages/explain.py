"""Explain: upload or pick photos, compare each method's overlay next to the prediction."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from dataclasses import dataclass, field

import pandas as pd
import streamlit as st

import pages._defaults as defaults
import pages._qualification as qualification
import saliency_core as sc
from pages._detail import detail_settings
from pages._explain_figures import interactive_map, prediction_chart
from pages._frame import require_frame
from pages._guard import report_error
from pages._images import UPLOAD_TYPES, crop_key, decode, png_bytes, region_labels
from pages._layout import colour_bar, map_rows
from pages._maps import cached_explain, is_cached
from pages._method_settings import setting_widget
from pages._models import model_key
from pages._run import cancellable, estimate_caption
from pages._settings import page_methods, page_model, settings
from pages._text import DISCLAIMER, map_alt, plain, prediction_words
from pages._verdicts import sanity_verdict
from saliency_core import pipeline
from saliency_core.engine import estimate as es
from saliency_core.engine import render as rd
from saliency_core.engine.convergence import SETTLED, describe
from saliency_core.engine.images import image_notes
from saliency_core.engine.plans import describe as describe_plan
from saliency_core.engine.plans import time_share
from saliency_core.engine.safe_text import ZipNames, file_name, json_text, to_csv
from saliency_core.engine.samples import sample_images
from saliency_core.pipeline import method_params
from saliency_core.report import confidence_words

MAX_SAMPLES = sc.METHODS["smoothgrad"].settings["max_samples"]  # the SmoothGrad family's limit
ASK_ABOVE = 10.0  # seconds: longer runs wait for a click after their estimate
UNSURE_BELOW = 0.6  # top-class probability under which the page says the model is unsure

ss = st.session_state


@dataclass
class Display:
    """What *Target class and display* chose: the class each map explains and how maps are drawn."""

    target_mode: str
    rank: int
    by_name: int | None
    colormap: str
    sign: str
    alpha: float
    shared: bool
    clip: float
    display: str
    outline_share: int

    def target_for(self, item: dict) -> int:
        """The class explained for ``item``: its top class, the one at the chosen rank, or the one named."""
        if self.target_mode == "Top-5 rank":
            return item["prediction"][min(int(self.rank), len(item["prediction"])) - 1][0]
        if self.target_mode == "Class by name":
            return int(self.by_name)
        return item["prediction"][0][0]

    def sign_for(self, method: str) -> str:
        return self.sign if sc.METHODS[method].signed else "absolute"

    def cmap_for(self, s: str) -> str:
        return "balance" if s == "signed" else self.colormap


@dataclass
class MapPlan:
    """The maps not cached yet, their estimate in seconds, and whether this run computes them."""

    jobs: list[tuple[dict, str]]
    signature: str
    seconds: float
    compute: bool
    finished: int = 0  # jobs finished so far in this run


@dataclass
class Drawing:
    """How each map is drawn: the display choices, a shared colour scale per method, the maps as drawn."""

    model: object
    view: Display
    scales: dict = field(default_factory=dict)
    shown: dict[int, rd.Shown] = field(default_factory=dict)  # id(explanation) -> the map as drawn

    def as_drawn(self, exp: sc.Explanation) -> rd.Shown:
        """The map drawn for ``exp``: averaged maps at their reproducible detail (render.shown_map)."""
        if id(exp) not in self.shown:
            self.shown[id(exp)] = rd.shown_map(exp.saliency, exp.method, exp.diagnostics, **detail_settings())
        return self.shown[id(exp)]

    def draw(self, exp: sc.Explanation) -> rd.Rendered:
        s = self.view.sign_for(exp.method)
        return rd.render(
            self.as_drawn(exp).saliency,
            exp.image,
            sign=s,
            colormap=self.view.cmap_for(s),
            alpha=self.view.alpha,
            clip_percentile=self.view.clip,
            scale=self.scales.get(exp.method),
            target_label=exp.target_label,
            meaning=sc.METHODS[exp.method].meaning,
        )

    def outline(self, exp: sc.Explanation, item) -> rd.Outlined:
        labels = region_labels(crop_key(self.model, item["hash"]), item["crop"])
        return rd.render_outline(
            exp.saliency,
            exp.image,
            labels,
            share=self.view.outline_share / 100,
            signed=sc.METHODS[exp.method].signed,
            target_label=exp.target_label,
        )


@dataclass
class Batch:
    """What the ZIP of everything collects: its files by member name and every photo's table rows."""

    files: dict[str, bytes] = field(default_factory=dict)
    names: ZipNames = field(default_factory=ZipNames)
    rows: list[dict] = field(default_factory=list)

    def add(self, name: str, data: bytes) -> None:
        self.files[self.names.add(name)] = data


def intro() -> None:
    """The title, what the page does, and the caution to read before trusting a map."""
    st.title("Explain a prediction")
    st.markdown(
        "See which parts of a photo drove the model's decision, one map per method. **Upload a photo or "
        "pick a sample photo; the maps appear below.**"
    )
    with st.expander("Read this before trusting a map"):
        st.markdown(
            DISCLAIMER + " Methods and their settings are in the sidebar; a change there applies when you "
            "press **Apply**."
        )


def load_settings():
    """The sidebar's settings and model, and which methods are qualified for it."""
    cfg = settings()
    model = page_model(cfg)
    cfg.methods = page_methods(model, cfg)
    qualification.status(model)  # which methods are qualified for this model
    return cfg, model


def choose_images(model) -> list[tuple[str, bytes]]:
    """The uploader and the sample photos: the (name, bytes) of each chosen image; stops when none."""
    left, right = st.columns([3, 2])
    with left:
        uploads = st.file_uploader(
            "Upload images",
            type=UPLOAD_TYPES,
            accept_multiple_files=True,
            help="PNG, JPEG, WebP, BMP, GIF or TIFF (an animated file: its first frame). "
            f"Each is resized and centre-cropped to {model.input_size} px, as the model "
            "sees it.",
        )
    with right:
        samples = sample_images()
        picked = st.multiselect(
            "…or try sample photos",
            list(samples),
            default=[] if uploads else list(samples)[: defaults.EXPLAIN_SAMPLES],
        )

    sources: list[tuple[str, bytes]] = [(f.name, f.getvalue()) for f in uploads or []]
    sources += [(name, open(samples[name], "rb").read()) for name in picked]
    # the Report page offers the same images (samples by name, uploads with their bytes)
    ss["explain_chosen"] = [(f.name, None, f.getvalue()) for f in uploads or []] + [
        (n, n, None) for n in picked
    ]
    if not sources:
        st.info("Upload an image or pick a sample photo to begin.")
        st.stop()
    return sources


def target_widgets(col, model):
    """The first column of *Target class and display*: the mode, the rank and the class by name."""
    top_words = "Most probable class" if model.multilabel else "Predicted class"
    target_mode = col.radio(
        "Explain the score of",
        [top_words, "Top-5 rank", "Class by name"],
        key="explain_target_mode",
        help="A multi-label model can predict several classes at once: choose any of them by rank or by name."
        if model.multilabel
        else None,
    )
    rank = col.number_input("Rank (1 = predicted)", 1, 5, 1, disabled=target_mode != "Top-5 rank")
    by_name = col.selectbox(
        "Class",
        range(len(model.labels)),
        format_func=lambda i: model.labels[i],
        index=None,
        placeholder="Type or pick a class…",
        disabled=target_mode != "Class by name",
    )
    return target_mode, rank, by_name


def display_options(model) -> Display:
    """*Target class and display*: which class to explain, colour map, sign, opacity, scale, outline."""
    with st.expander("Target class and display", expanded=ss.get("explain_target_mode") == "Class by name"):
        c1, c2, c3, c4 = st.columns(4)
        target_mode, rank, by_name = target_widgets(c1, model)
        colormap = c2.selectbox("Colour map", rd.SEQUENTIAL, help="Perceptually uniform colour maps.")
        sign = c2.radio(
            "Signed methods show",
            ["absolute", "positive", "signed"],
            help="Integrated Gradients and gradient x input can be negative (evidence against "
            "the class). The other methods are drawn as magnitudes.",
        )
        alpha = c3.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05)
        shared = c3.checkbox(
            "One colour scale for all images",
            value=False,
            help="Makes map strength comparable across images of one method.",
        )
        clip = c4.slider(
            "Clip at percentile",
            90.0,
            100.0,
            99.0,
            0.5,
            help="Values above this percentile get the top colour, so one extreme pixel "
            "does not wash out the rest.",
        )
        display = c4.radio(
            "Show each map as",
            ["Heatmap", "Outline"],
            horizontal=True,
            key="display",
            help="Outline: the image is cut into regions of similar colour, and the regions "
            "holding the chosen share of the map are outlined; the rest is dimmed.",
        )
        outline_share = c4.slider(
            "Outline holds this share of the map",
            5,
            95,
            30,
            5,
            format="%d %%",
            key="outline_share",
            disabled=display != "Outline",
            help="The densest regions are taken until they hold this share of the "
            "map's total (positive part for signed methods).",
        )
    return Display(target_mode, rank, by_name, colormap, sign, alpha, shared, clip, display, outline_share)


def settle_options(cfg) -> None:
    """*Sample until the map settles*, for averaging methods; a ticked box goes into ``cfg.params``."""
    averaging = [m for m in cfg.methods if sc.METHODS[m].averaging]
    if not averaging:
        return
    with st.expander("Sample until the map settles", expanded=False), st.form("settle"):
        st.checkbox(
            "Keep adding noisy samples until the map has settled",
            value=False,
            key="until_settled",
            help="Starts at the sidebar's sample count and adds samples (x1.25 at a time) until a re-run "
            f"with other random noise would agree at {SETTLED:.0%} or more (rank correlation) at "
            f"{sc.METHODS['smoothgrad'].defaults['settled_at']:g}-pixel detail, or the maximum below is "
            "reached. Applies to " + ", ".join(sc.METHODS[m].label for m in averaging) + ".",
        )
        setting_widget("max_samples", MAX_SAMPLES)
        st.form_submit_button("Apply")
    if st.session_state.get("until_settled"):
        # never below the sidebar's count: that is where the first check happens
        cfg.params.update(
            until_settled=True,
            max_samples=max(
                int(st.session_state.get("max_samples", MAX_SAMPLES.default)), int(cfg.params["samples"])
            ),
        )


def wait_for_class(view: Display) -> None:
    """Stop, saying so, while *Class by name* has no class picked: nothing is computed before the choice."""
    if view.target_mode == "Class by name" and view.by_name is None:
        st.info(
            "Pick the class to explain under **Target class and display**. Nothing is computed until then.",
            icon=":material/touch_app:",
        )
        st.stop()


def predict(model, sources: list[tuple[str, bytes]]) -> list[dict]:
    """Decode each image and predict its top classes; a file that fails is reported, the others go on."""
    images = []
    for name, data in sources:
        try:
            image = decode(data, name)
            crop = model.crop(image)
            x = model.preprocess(image)
            images.append(
                {
                    "id": len(images),
                    "name": name,
                    "image": image,
                    "hash": sc.image_hash(image),
                    "crop": crop,
                    "prediction": model.predict(x, k=5),
                    "predicted": model.predicted_set(x),
                    "notes": image_notes(image),
                }
            )
        except Exception as err:  # one bad file never hides the others
            report_error(name, err)
    return images


def plan_maps(model, cfg, view: Display, images: list[dict]) -> MapPlan:
    """The maps still missing: their estimate, and a button when they wait for a click or were stopped."""
    jobs = [
        (item, m)
        for item in images
        for m in cfg.methods
        if not is_cached(model, item["hash"], m, view.target_for(item), method_params(m, cfg.params))
    ]
    signature = hashlib.sha256(
        repr(
            (
                model_key(model),
                [(i["hash"], view.target_for(i)) for i in images],
                cfg.methods,
                sorted(cfg.params.items()),
            )
        ).encode()
    ).hexdigest()
    if ss.pop("explain__cancelled", False):  # Cancel was pressed: keep what was done, compute no more
        ss["explain_paused"] = ss.get("explain_signature")
        ss["explain__running"] = False
    seconds = (
        sum(es.map_seconds(es.pass_times(model), m, cfg.params) * time_share(model, m) for _, m in jobs)
        if jobs
        else 0.0
    )
    paused = ss.get("explain_paused") == signature
    compute = bool(jobs) and not paused and (seconds <= ASK_ABOVE or ss.get("explain_confirmed") == signature)
    if jobs and not compute:
        if paused:
            st.warning("Stopped: the maps computed so far are shown below.", icon=":material/pause_circle:")
        estimate_caption(seconds, f"Computing the {len(jobs)} map(s) still missing")
        st.button(
            f"Compute {len(jobs)} map(s)",
            type="primary",
            icon=":material/play_arrow:",
            key="explain_go",
            on_click=lambda s=signature: ss.update(explain_confirmed=s, explain_paused=None),
        )
    return MapPlan(jobs, signature, seconds, compute)


def run_images(model, cfg, view: Display, images, plan: MapPlan, live, bar=None) -> dict:
    """The pipeline on each photo: every method when computing, else only the maps already cached."""
    results: dict[int, pipeline.ImageResult] = {}
    for item in images:
        target = view.target_for(item)
        wanted = (
            cfg.methods
            if plan.compute
            else [
                m
                for m in cfg.methods
                if is_cached(model, item["hash"], m, target, method_params(m, cfg.params))
            ]
        )

        def progress(done, total, item=item):
            if bar is not None:
                bar.progress(
                    min(1.0, (plan.finished + done / total) / len(plan.jobs)),
                    text=f"{plain(item['name'])}: {done}/{total}",
                )

        def preview(done, total, saliency, item=item):  # anytime SmoothGrad, RISE
            r = rd.render(
                saliency, item["crop"], colormap=view.colormap, alpha=view.alpha, clip_percentile=view.clip
            )
            live.image(
                r.overlay,
                width=260,
                alt=f"Map of {item['name']} while it is computed",
                caption=f"{plain(item['name'])}: running result after {done} of {total} (still computing)",
            )

        def one_done(method, item=item):
            if (item, method) in plan.jobs:
                plan.finished += 1

        result = results[item["id"]] = pipeline.explain_image(
            model,
            item["image"],
            item["name"],
            wanted,
            cfg.params,
            target,
            explain_fn=cached_explain,
            progress=progress,
            preview=preview,
            on_map=one_done,
        )
        for m, message in result.errors.items():
            report_error(f"{item['name']} · {sc.METHODS[m].label}", ValueError(message))
        for m, crashed in result.crashes.items():
            report_error(f"{item['name']} · {sc.METHODS[m].label}", RuntimeError(crashed["message"]))
    return results


def compute_maps(model, cfg, view: Display, images: list[dict]) -> dict[int, pipeline.ImageResult]:
    """Each photo's maps: the cached ones, and the missing ones with an estimate, progress and Cancel."""
    plan = plan_maps(model, cfg, view, images)
    live = st.empty()
    started = time.perf_counter()
    if plan.compute:
        ss["explain_signature"] = plan.signature
        text = f"Computing {len(plan.jobs)} map(s), {es.describe_seconds(plan.seconds)}…"
        with cancellable("explain", text) as bar:
            results = run_images(model, cfg, view, images, plan, live, bar)
        ss["explain_confirmed"] = None
        st.caption(
            f":material/timer: {len(plan.jobs)} map(s) computed in {time.perf_counter() - started:.1f} s."
        )
    else:
        results = run_images(model, cfg, view, images, plan, live)
    live.empty()
    return results


def shared_scales(view: Display, cfg, images: list[dict], results: dict) -> dict:
    """One colour scale per method over all photos, when *One colour scale for all images* is ticked."""
    scales = {}
    if view.shared:
        for m in cfg.methods:
            maps = [results[i["id"]].maps[m].saliency for i in images if m in results[i["id"]].maps]
            if maps:
                scales[m] = rd.shared_scale(maps, sign=view.sign_for(m), clip_percentile=view.clip)
    return scales


def card_head(model, item: dict, target: int, probability: float | None) -> None:
    """A photo's head: the crop the model sees, its prediction in words and the top-5 chart."""
    top = item["prediction"][0]
    head = st.columns([1, 2], gap="medium")
    head[0].image(
        item["crop"],
        caption="What the model sees",
        width="stretch",
        alt=f"{item['name']} as the model sees it: the centre crop, {model.input_size} pixels square",
    )
    with head[1]:
        st.markdown(prediction_words(model, item["predicted"]))
        if not model.multilabel and top[2] < UNSURE_BELOW:
            st.warning(
                f"The model is **unsure** about this photo: its top class has only {top[2]:.0%}. Read "
                "the maps as an explanation of a weak guess.",
                icon=":material/help:",
            )
        elif not model.multilabel:
            st.caption(f"The model is {confidence_words(top[2])} about its top class.")
        st.plotly_chart(
            prediction_chart(model, item["prediction"], target),
            key=f"pred-{item['id']}",
            config={"displayModeBar": False},
            alt="Bar chart of the model's five most likely classes with their probabilities, "
            "the most likely at the top; the explained class is hatched orange.",
        )
        st.caption(
            f"Maps explain **{plain(model.labels[target])}**."
            + (
                f" The model gives it {probability:.1%}."
                if probability is not None and target != top[0]
                else ""
            )
            + (
                " Probabilities are each class's own sigmoid; they need not add up to 100 %."
                if model.multilabel
                else ""
            )
        )


def map_image(drawing: Drawing, item: dict, exp: sc.Explanation, r: rd.Rendered, probability):
    """One method's map as a heatmap (with its colour bar) or as outlines: the image shown and its legend."""
    meta = sc.METHODS[exp.method]
    if drawing.view.display == "Outline":
        o = drawing.outline(exp, item)
        shown, legend = o.overlay, o.legend
        st.image(
            shown,
            caption=meta.label,
            width="stretch",
            alt=f"{meta.label} map of {item['name']} as outlines: the regions holding "
            f"{drawing.view.outline_share} % of the map for the class {exp.target_label}; "
            "the rest dimmed.",
        )
        st.caption(f"{plain(legend)}\n\n*{meta.description}*")
    else:
        shown, legend = r.overlay, r.legend
        st.image(
            shown,
            caption=meta.label,
            width="stretch",
            alt=map_alt(meta.label, item["name"], exp.target_label, probability),
        )
        colour_bar(
            r,
            alt=f"Colour scale of the {meta.label} map: dark = low, bright = high influence",
        )
        st.caption(f"{plain(r.words)}\n\n*{meta.description}*")
    return shown, legend


def map_notes(drawing: Drawing, exp: sc.Explanation, r: rd.Rendered) -> None:
    """Under a map: near-zero, completeness gap, the detail drawn, how to settle it, convergence details."""
    meta = sc.METHODS[exp.method]
    if r.near_zero:
        st.info("This map is zero (or numerically negligible) everywhere.")
    gap = exp.diagnostics.get("completeness_gap_relative")
    if gap is not None:
        st.caption(f"Completeness gap {gap:.1%} (attributions vs score difference).")
    readout = exp.diagnostics.get("convergence")
    drawn = drawing.as_drawn(exp)
    if drawn.words:
        icon = ":material/blur_on:" if drawn.detail_px else ":material/grid_on:"
        if drawn.unsettled:
            icon = ":material/hourglass_top:"
        elif isinstance(readout, dict) and readout.get("verdict") == "unknown":
            icon = ":material/help:"
        st.caption(f"{icon} {drawn.words}")
    if drawn.unsettled and "until_settled" in meta.defaults:
        st.caption(
            ":material/arrow_upward: Sample until settled: tick **Keep adding noisy samples "
            "until the map has settled** under *Sample until the map settles* above."
        )
    elif drawn.unsettled and "masks" in meta.settings:
        st.caption(
            f":material/arrow_upward: Raise **{meta.settings['masks'].label}** above for a "
            "map a re-run reproduces."
        )
    if isinstance(readout, dict):
        details = " ".join(filter(None, [describe(readout)[1], describe_plan(exp.diagnostics.get("plan"))]))
        if details:
            with st.expander("Convergence details"):
                st.caption(details)


def map_downloads(item, exp, r, shown, probability, stem: str, display: str, batch: Batch, several: bool):
    """A map's two PNG downloads (captioned, and the bare overlay or outline), also put in the ZIP."""
    m = exp.method
    meta = sc.METHODS[m]
    png = png_bytes(rd.captioned_overlay(r, meta.label, exp.target_label, probability, item["name"]))
    bare = png_bytes(shown)
    suffix = f", image {item['id'] + 1}" if several else ""
    st.download_button(
        f"{meta.label} map{suffix} (PNG)",
        png,
        f"{stem}_{m}.png",
        "image/png",
        key=f"png-{item['id']}-{m}",
        icon=":material/download:",
        wrap=True,
        help="The map with its colour bar, the method, the class and the confidence.",
    )
    what = "outline" if display == "Outline" else "overlay"
    st.download_button(
        f"{meta.label} {what} only{suffix} (PNG)",
        bare,
        f"{stem}_{m}_{what}.png",
        "image/png",
        key=f"bare-{item['id']}-{m}",
        type="tertiary",
        wrap=True,
        help=f"The bare {what}, without colour bar or words.",
    )
    batch.add(f"{stem}_{m}.png", png)
    batch.add(f"{stem}_{m}_{what}.png", bare)


def row_cautions(model, row: list[str], item: dict) -> None:
    """Under a row of maps, full width: each method's caution, its sanity verdict on this photo included."""
    for m in row:
        meta = sc.METHODS[m]
        qualification.mark_qualified(model, m)  # qualified for this model (the record in force)
        verdict = sanity_verdict(model, m, item["hash"])  # computed on this photo only
        parts = ([meta.caution] if meta.caution else []) + qualification.caution(model, m)
        if verdict is not None and not verdict.passed:
            parts.append(plain(verdict.summary))
        if parts:
            st.warning(f"**{meta.label}:** " + " ".join(parts), icon=":material/warning:")
        if verdict is not None and verdict.passed:
            st.caption(f":material/check_circle: **{meta.label}:** {plain(verdict.summary)}")


def image_downloads(model, item, result, records, rendered, stem: str, batch: Batch, several: bool) -> None:
    """A photo's JSON (predictions and settings) and CSV (one row per map), also put in the ZIP."""
    top = item["prediction"][0]
    js = pipeline.dumps(
        result.record({m: {"legend": rendered[m].legend, "scale": rendered[m].scale} for m in result.maps})
    )
    rows = [
        {
            "image": item["name"],
            "method": r_["method"],
            "target": r_["target"],
            "target_label": r_["target_label"],
            "params": json_text(r_["params"]),
            "top1": top[1],
            "top1_probability": top[2],
            **(
                {"predicted": "; ".join(label for _, label, _ in item["predicted"])}
                if model.multilabel
                else {}
            ),
            "model_fingerprint": model.fingerprint,
        }
        for r_ in records
    ]
    d1, d2, _ = st.columns([1, 1, 2])
    d1.download_button(
        f"Predictions and settings{' of image ' + str(item['id'] + 1) if several else ''} (JSON)",
        js,
        f"{stem}.json",
        "application/json",
        key=f"json-{item['id']}",
        icon=":material/download:",
        wrap=True,
    )
    d2.download_button(
        f"Table{' of image ' + str(item['id'] + 1) if several else ''} (CSV)",
        to_csv(pd.DataFrame(rows)),
        f"{stem}.csv",
        "text/csv",
        key=f"csv-{item['id']}",
        icon=":material/download:",
        wrap=True,
    )
    batch.add(f"{stem}.json", js.encode())
    batch.rows += rows


def image_card(drawing: Drawing, cfg, item: dict, result, batch: Batch, several: bool) -> None:
    """One photo's card: its prediction, a map per method with notes and downloads, cautions, files."""
    model = drawing.model
    target = drawing.view.target_for(item)
    methods = list(result.maps)
    probability = {i: p for i, _, p in item["prediction"]}.get(target)
    with st.container(border=True):
        st.subheader(plain(item["name"]))
        for note in item["notes"]:
            st.info(plain(note), icon=":material/animation:")
        card_head(model, item, target, probability)
        records, rendered = [], {}
        stem = file_name(f"{item['id'] + 1:02d}_" + item["name"].rsplit(".", 1)[0], limit=80)
        missing = [
            sc.METHODS[m].label
            for m in cfg.methods
            if m not in result.maps and m not in result.errors and m not in result.crashes
        ]
        if missing:
            st.caption(f"Not computed yet: {', '.join(missing)}.")
        for row, cols in map_rows(methods, key=f"explain-{item['id']}"):
            for col, m in zip(cols, row):
                exp = result.maps[m]
                r = rendered[m] = drawing.draw(exp)
                with col:
                    shown, legend = map_image(drawing, item, exp, r, probability)
                    map_notes(drawing, exp, r)
                    map_downloads(
                        item, exp, r, shown, probability, stem, drawing.view.display, batch, several
                    )
                records.append({**exp.record(), "legend": legend, "scale": r.scale})
            row_cautions(model, row, item)
        image_downloads(model, item, result, records, rendered, stem, batch, several)
        if methods:
            with st.expander("Interactive map (zoom, hover for values)"):
                m = st.selectbox(
                    "Method", methods, format_func=lambda n: sc.METHODS[n].label, key=f"inter-{item['id']}"
                )
                interactive_map(
                    drawing.as_drawn(result.maps[m]).saliency,
                    drawing.view.alpha,
                    result.maps[m],
                    rendered[m],
                    key=f"heat-{item['id']}-{m}",
                )


def zip_download(batch: Batch) -> None:
    """One button for everything: every map, overlay, JSON and the table of all photos, in a ZIP."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in batch.files.items():
            z.writestr(name, data)
        z.writestr(batch.names.add("maps.csv"), to_csv(pd.DataFrame(batch.rows)))
    st.download_button(
        "Download everything (ZIP: maps, overlays, JSON, CSV)",
        buf.getvalue(),
        "saliency_maps.zip",
        "application/zip",
        type="primary",
        icon=":material/folder_zip:",
    )


def show_results(model, cfg, view: Display, images: list[dict], results: dict) -> None:
    """A card per photo with its maps, then the ZIP of everything."""
    drawing = Drawing(model, view, shared_scales(view, cfg, images, results))
    batch = Batch()
    for item in images:
        image_card(drawing, cfg, item, results[item["id"]], batch, several=len(images) > 1)
    if batch.rows:
        zip_download(batch)


require_frame()
intro()
cfg, model = load_settings()
sources = choose_images(model)
view = display_options(model)
settle_options(cfg)
wait_for_class(view)
images = predict(model, sources)
results = compute_maps(model, cfg, view, images)
show_results(model, cfg, view, images, results)
