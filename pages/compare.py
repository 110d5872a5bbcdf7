"""Compare models: what changed between the accepted model (A) and the candidate (B)?"""

from __future__ import annotations

import hashlib

import streamlit as st

import pages._qualification as qualification
import saliency_core as sc
from pages._detail import detail_settings
from pages._frame import require_frame
from pages._guard import report_error
from pages._images import UPLOAD_TYPES, unreadable
from pages._maps import cached_explain
from pages._models import get_model, model_key
from pages._settings import settings
from pages._text import DISCLAIMER, plain
from saliency_core.engine import render as rd
from saliency_core.engine.detail import smooth
from saliency_core.engine.safe_text import json_text, to_csv
from saliency_core.engine.samples import sample_images
from saliency_core.evaluation import compare as cmp
from saliency_core.evaluation import compare_labels as cmp_labels
from saliency_core.evaluation import map_agreement

SHOW_ALL, SHOW_CHANGED, SHOW_MOVED = "All images", "Prediction changed", "Maps moved most"


def introduction() -> None:
    """The title, what the page answers, and how it works."""
    st.title("Compare two model versions")
    st.markdown(
        "See what changed between the model version you accepted and a candidate: which predictions "
        "changed, and where each model looks. **Pick model A and model B, choose the images, then press "
        "Compare the models.**"
    )
    with st.expander("How it works"):
        st.markdown(
            "Both models run on the same images with the same methods (chosen in the sidebar). You get how "
            "many predictions changed (and which way, when you give the true classes), how far the saliency "
            "maps moved per method, set against how much a map moves anyway when only the random seed "
            "changes, and for each image the two maps side by side on the same colour scale. " + DISCLAIMER
        )


# ---- models A and B ---------------------------------------------------------------------------------
def choose_models(cfg) -> tuple:
    """Models A and B with their facts; the page stops when one cannot be used or their classes differ."""
    qualification.status_of(cfg.model)  # which methods are qualified for the sidebar's model
    choices = st.session_state.get("model_choices") or {"demo": "demo"}
    options = list(choices)
    first = options.index(cfg.model) if cfg.model in options else 0
    c1, c2 = st.columns(2)
    source_a = c1.selectbox(
        "Model A (accepted)",
        options,
        index=first,
        key="compare_model_a",
        format_func=lambda s: choices.get(s, s),
        help="The version that was accepted before.",
    )
    source_b = c2.selectbox(
        "Model B (candidate)",
        options,
        index=(first + 1) % len(options),
        key="compare_model_b",
        format_func=lambda s: choices.get(s, s),
        help="The retrained version to accept or not.",
    )
    models = {}
    for tag, source in (("A", source_a), ("B", source_b)):
        try:
            models[tag] = get_model(source)
        except ValueError as err:
            st.error(f"Model {tag} cannot be used. {plain(err)}")
    if len(models) < 2:
        st.stop()
    model_a, model_b = models["A"], models["B"]
    for col, m in ((c1, model_a), (c2, model_b)):
        col.caption(
            f"{len(m.labels)} classes · input {m.input_size} px · weights sha256 `{m.fingerprint[:12]}…`"
        )
    difference = cmp_labels.class_difference(model_a.labels, model_b.labels)
    if difference:
        st.error(plain(difference))
        st.stop()
    if model_a.fingerprint == model_b.fingerprint:
        st.info(
            "Model A and model B have identical weights (the same fingerprint): the comparison should find "
            "no change, which makes it a check of the comparison itself."
        )
    return model_a, model_b


def shared_methods(cfg, model_a, model_b) -> list[str]:
    """The sidebar's methods that both models can run (the others with the reason); stops if none."""
    usable_a, usable_b = sc.available_methods(model_a), sc.available_methods(model_b)
    methods = []
    for m in cfg.methods:
        why = usable_a.get(m) or usable_b.get(m)
        if why:
            st.warning(f"**{sc.METHODS[m].label}** is left out: it {why}.")
        else:
            methods.append(m)
    if not methods:
        st.info(
            "Choose at least one saliency method in the sidebar that both models can run, then press "
            "**Apply**."
        )
        st.stop()
    return methods


# ---- images (and their true classes) ---------------------------------------------------------------
def choose_images() -> tuple[list[tuple[str, bytes]], tuple[str, bytes] | None]:
    """The images to compare on, as (name, bytes), and an optional labels CSV (name, bytes).
    The one place images come from: uploads or the sample photos."""
    left, right = st.columns([3, 2])
    with left:
        uploads = st.file_uploader(
            "Upload images", type=UPLOAD_TYPES, accept_multiple_files=True, key="compare_uploads"
        )
    with right:
        samples = sample_images()
        picked = st.multiselect(
            "…and/or sample photos",
            list(samples),
            key="compare_samples",
            default=[] if uploads else list(samples),
        )
    labels = st.file_uploader(
        "True classes (optional): CSV with the columns image,label",
        type=["csv"],
        key="compare_labels",
        help="One row per image: its file name and the true class (a class name of the "
        "models, or its index). With it, changed predictions are told apart: fixed, "
        "broken, or changed between two wrong classes.",
    )
    sources = [(f.name, f.getvalue()) for f in uploads or []]
    for name in picked:
        try:
            with open(samples[name], "rb") as f:
                sources.append((name, f.read()))
        except OSError as err:
            st.error(f"{plain(name)}: the sample photo cannot be read ({err.strerror or err}).")
    return sources, ((labels.name, labels.getvalue()) if labels is not None else None)


def true_classes(labels_file, model_a) -> tuple:
    """The labels CSV read against model A's classes, as (labels, problems); its problems listed."""
    labels, problems = None, []
    if labels_file is not None:
        try:
            labels, problems = cmp_labels.read_labels(labels_file[1], model_a.labels, where=labels_file[0])
        except ValueError as err:
            st.error(plain(err))
    if problems:
        with st.expander(f"{len(problems)} problem(s) in the labels file; those rows are left out"):
            for problem in problems:
                st.text(problem)
    return labels, problems


def check_sources(sources: list) -> None:
    """Stops when there is no image; warns about each image that will be left out."""
    if not sources:
        st.info("Upload images or pick sample photos to compare the two models on.")
        st.stop()
    for why in unreadable(sources):
        st.warning(f"Will be left out of the comparison: {plain(why)}")


def request_key(model_a, model_b, methods, params, sources, labels_file) -> str:
    """A digest of everything a comparison depends on: a stored result is shown only for the same."""
    return hashlib.sha256(
        repr(
            (
                model_key(model_a),
                model_key(model_b),
                methods,
                sorted(params.items()),
                [(n, hashlib.sha256(d).hexdigest()) for n, d in sources],
                labels_file and hashlib.sha256(labels_file[1]).hexdigest(),
            )
        ).encode()
    ).hexdigest()


# ---- the run ----------------------------------------------------------------------------------------
def compare_button(sources, methods, params) -> None:
    """What will be computed, in words, and the Compare button."""
    averaging = [sc.METHODS[m].label for m in methods if sc.METHODS[m].averaging]
    st.write(
        f"{len(sources)} image(s) × {len(methods)} method(s): "
        f"{', '.join(sc.METHODS[m].label for m in methods)}."
        + (
            f" {', '.join(averaging)} also run a second time on model A with seed {int(params['seed']) + 1}, "
            "to show how much a map moves by chance."
            if averaging
            else ""
        )
    )
    # a flag set in the callback survives require_frame()'s rerun, which a button's click value does not
    st.button(
        "Compare the models", type="primary", on_click=lambda: st.session_state.update(compare_requested=True)
    )


def run_comparison(model_a, model_b, sources, methods, params, labels, problems, request) -> None:
    """The comparison with its progress bar and Cancel, stored in the session as it fills in."""
    st.session_state["compare_cancel"] = False
    bar = st.progress(0.0, text="Starting…")
    stop = st.empty()
    stop.button(
        "Cancel",
        on_click=lambda: st.session_state.update(compare_cancel=True),
        help="Stops after the image in progress; the summary then covers the images done.",
    )

    def progress(done, total, label):
        bar.progress(min(1.0, done / max(total, 1)), text=f"{plain(label)} ({done}/{total} maps)")

    def keep(result):  # kept as it fills in: a Cancel that stops this run still shows what was done
        st.session_state["compare_result"] = (request, result)

    try:
        cmp.compare_models(
            model_a,
            model_b,
            sources,
            cmp.CompareSettings(methods, params),
            labels,
            label_problems=problems,
            explain_fn=cached_explain,
            progress=progress,
            cancel=lambda: st.session_state.get("compare_cancel", False),
            on_start=keep,
        )
    except Exception as err:
        st.session_state.pop("compare_result", None)  # a failed run leaves no half result behind
        report_error("Comparison", err)
    finally:
        bar.empty()
        stop.empty()


def stored_result(request: str) -> cmp.Comparison:
    """The session's comparison for this request; the page stops when there is none."""
    stored = st.session_state.get("compare_result")
    if stored is None or stored[0] != request:
        st.info("Nothing is computed until you press **Compare the models**.")
        st.stop()
    return stored[1]


# ---- summary -----------------------------------------------------------------------------------------
def summary(result: cmp.Comparison) -> None:
    """What changed, in words, and the per-method table; stops when no image was compared."""
    st.header("Summary")
    if result.cancelled:
        st.warning(
            f"Cancelled: {len(result.images)} of {result.total} images were compared; the summary covers "
            "those."
        )
    for _name, message in result.skipped:
        st.error(plain(message))
    with st.container(border=True):
        for line in result.summary_lines():
            st.markdown(plain(line))
    if not result.images:
        st.stop()
    methods_table = result.methods_table()
    if not methods_table.empty:
        st.dataframe(methods_table, hide_index=True)
        st.caption(
            "Rank correlation: Spearman correlation of the two maps' |values| (1 = the same order of pixels, "
            "0 = unrelated). Overlap: share of the strongest 10 % of pixels that are strongest in both maps "
            f"(unrelated maps: about 10 %). Intervals: {result.settings.record()['interval']}. A vs A (other "
            "seed): model A against itself with another seed, what moves by chance; deterministic methods "
            "give the same map every run."
        )


# ---- every image ---------------------------------------------------------------------------------------
def every_image(result: cmp.Comparison):
    """The table of every image (filtered by the Show radio) and the downloads; stops when empty."""
    st.header("Every image")
    table = result.table()
    show = st.radio(
        "Show",
        [SHOW_ALL, SHOW_CHANGED, SHOW_MOVED],
        horizontal=True,
        key="compare_show",
        help="Click a column heading to sort.",
    )
    if show == SHOW_CHANGED:
        table = table[table["prediction"] != cmp.UNCHANGED]
    elif show == SHOW_MOVED:
        table = table[table["map moved most"]]
    st.dataframe(table, hide_index=True)
    c1, c2 = st.columns(2)
    c1.download_button("Table (CSV)", to_csv(result.table()), "comparison.csv", "text/csv")
    c2.download_button(
        "Summary, settings and both model cards (JSON)",
        json_text(result.record(), indent=2),
        "comparison.json",
        "application/json",
    )
    if table.empty:
        st.info("No image in this view.")
        st.stop()
    return table


# ---- one image: both maps on one colour scale, and their difference ------------------------------
def one_image(result: cmp.Comparison, table) -> None:
    """The chosen image: both predictions, then per method both maps and their difference."""
    by_name = {item.name: item for item in result.images}
    chosen = st.selectbox("Look at one image", list(table["image"]), key="compare_image")
    item = by_name[chosen]
    a_top, b_top = item.top_a, item.top_b
    st.markdown(
        f"**Model A** predicts {plain(a_top[1])} ({a_top[2]:.0%}); **model B** predicts {plain(b_top[1])} "
        f"({b_top[2]:.0%}): prediction **{item.change}**"
        + (f" (true class: {plain(item.truth_label)})" if item.truth_label else "")
        + "."
    )
    for m in result.methods:
        meta = sc.METHODS[m]
        if m in item.errors:
            st.error(f"**{meta.label}**: {plain(item.errors[m])}")
        if m not in item.saliency_a or m not in item.saliency_b:
            continue
        method_maps(item, m)


def method_maps(item, m: str) -> None:
    """One method's maps of both models on one colour scale, their difference, and how far they agree."""
    meta = sc.METHODS[m]
    a_top, b_top = item.top_a, item.top_b
    sign = "signed" if meta.signed else "absolute"
    a_map, b_map = item.saliency_a[m], item.saliency_b[m]
    scores = item.agreement.get(m)
    # drawn at the detail they are compared at (the coarser reproducible detail), unless the
    # sidebar asks for full detail
    px = 0.0 if detail_settings()["full_detail"] else float((scores or {}).get("detail_px") or 0.0)
    if px:
        a_map, b_map = smooth(a_map, px), smooth(b_map, px)
    b_grid = map_agreement.align(b_map, a_map.shape)
    scale = rd.shared_scale([a_map, b_grid], sign=sign)
    fixed = scale if scale > 0 else None
    ra = rd.render(a_map, item.crop_a, sign=sign, scale=fixed, meaning=meta.meaning)
    rb = rd.render(b_map, item.crop_b, sign=sign, scale=fixed, meaning=meta.meaning)
    rdiff = rd.render(
        map_agreement.map_difference(a_map, b_map, scale, sign), item.crop_a, sign="signed", scale=1.0
    )
    with st.container(border=True):
        st.subheader(meta.label)
        cols = st.columns(3)
        cols[0].image(
            ra.overlay,
            caption=f"Model A: explains {plain(a_top[1])}",
            width="stretch",
            alt=f"Model A's {meta.label} map on {item.name}, explaining {a_top[1]}",
        )
        cols[1].image(
            rb.overlay,
            caption=f"Model B: explains {plain(b_top[1])}",
            width="stretch",
            alt=f"Model B's {meta.label} map on {item.name}, explaining {b_top[1]}, on the same colour "
            "scale as model A's",
        )
        cols[2].image(
            rdiff.overlay,
            caption="Difference, B minus A",
            width="stretch",
            alt=f"Difference of the two {meta.label} maps on {item.name}: red where model B's map is "
            "stronger, blue where model A's is",
        )
        ticks = "  ·  ".join(label for _, label in ra.colorbar_ticks)
        for col in cols[:2]:
            col.image(rd.colorbar_image(ra), width="stretch", alt="Colour bar of both models' maps")
            col.caption(ticks)
        cols[2].image(rd.colorbar_image(rdiff), width="stretch", alt="Colour bar of the difference")
        cols[2].caption(
            "No difference: the two maps are the same on their shared scale."
            if rdiff.near_zero
            else "Red = stronger in B, blue = stronger in A, light grey = the same (difference of the two "
            "maps on their shared scale, −1 to 1)."
        )
        st.caption(
            plain(ra.legend) + " Both models' maps use this one scale, so equal colours mean equal values."
        )
        if scores:
            st.caption(agreement_words(item, m, scores, px))


def agreement_words(item, m: str, scores: dict, px: float) -> str:
    """How far the two maps agree (and model A with itself under another seed), in words."""
    at = scores.get("detail_px") or 0.0
    where = f" at {at:g}-pixel detail" if at else ""
    text = (
        f"Rank correlation{where} {scores['spearman']:.2f}, {100 * scores['top_overlap']:.0f} % "
        "of the strongest 10 % of pixels shared."
    )
    if at and "spearman_raw" in scores:
        raw_share = 100 * scores["top_overlap_raw"]
        text += f" Pixel by pixel: {scores['spearman_raw']:.2f} and {raw_share:.0f} %."
    if px:
        text += f" Both maps are drawn at {px:g}-pixel detail, the finest that re-runs reproduce."
    seed = item.seed_agreement.get(m)
    if seed:
        text += (
            f" Model A against itself with another seed{where}: {seed['spearman']:.2f} and "
            f"{100 * seed['top_overlap']:.0f} %."
        )
    if item.changed:
        text += " The two maps explain different classes."
    return text


require_frame()
introduction()
cfg = settings()
model_a, model_b = choose_models(cfg)
methods = shared_methods(cfg, model_a, model_b)
sources, labels_file = choose_images()
labels, problems = true_classes(labels_file, model_a)
check_sources(sources)
request = request_key(model_a, model_b, methods, cfg.params, sources, labels_file)
compare_button(sources, methods, cfg.params)
if st.session_state.pop("compare_requested", False):
    run_comparison(model_a, model_b, sources, methods, cfg.params, labels, problems, request)
result = stored_result(request)
summary(result)
one_image(result, every_image(result))
