"""Gallery: a labelled set's predictions and maps; filter to the mistakes, open each explanation.

Nothing is computed until the reviewer opens a set. Results are stored as each image finishes
(saliency_core.gallery), so a cancelled, interrupted or repeated run keeps what was done and
computes only what is missing; reopening a set shows its stored results at once.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import streamlit as st

import pages._qualification as qualification
import pages._signin as signin
import saliency_core as sc
from pages._frame import require_frame
from pages._gallery_exports import build_report, download_table, send_to_review
from pages._gallery_figures import accuracy_figure, confusion_figure, session_figure
from pages._gallery_item import show_item
from pages._gallery_reasons import (
    REASON_LABELS,
    annotations_for,
    digest,
    group_filter,
    reason_counts,
    scored_rows,
    shortcut_groups,
    show_mapping,
)
from pages._gallery_results import results_table
from pages._gallery_text import md, shown
from pages._settings import page_model, settings
from pages._text import DISCLAIMER
from saliency_core import gallery
from saliency_core.evaluation.labelled import (
    DEMO_DESCRIPTION,
    LabelledSet,
    demo_set,
    open_folder,
    open_zip,
    read_mapping,
)
from saliency_core.evaluation.labels import read_label_map
from saliency_core.gallery import reasons as gr
from saliency_core.review import store as rs
from saliency_core.review.identity import can

FOLDER_ENVS = ("SALIENCY_GALLERY_DIR", "SALIENCY_REVIEW_DIR")  # server folders of labelled sets
RAY_ENV = "SALIENCY_RAY_ADDRESS"  # large runs on this Ray cluster
COLUMNS = 6  # tiles per row
REPORT_LIMIT = 100  # images in one report
OUTCOME = {"All images": "all", "Mistakes only": "incorrect", "Correct only": "correct"}
ORDER = {
    "File name": "name",
    "Confident mistakes first": "confident mistakes first",
    "Least confident first": "least confident first",
    "Most confident first": "most confident first",
}
SHARE_ORDER = {
    "Least inside the part first": "share inside, lowest first",
    "Most inside the part first": "share inside, highest first",
}
FLAGS = {"Any": None, "With a warning": True, "Without a warning": False}
FAST = ["gradcam", "gradient"]
ss = st.session_state
require_frame()

st.title("Gallery")
st.markdown(
    "Find where the model is wrong on a set of images whose true classes are known, how sure it was, "
    "and what it looked at. **Open the demo set, or choose a data set and press Open and compute.**"
)
with st.expander("How it works"):
    st.markdown(
        "Every image is predicted and the chosen methods' maps are computed once and stored, so reopening "
        "the set is instant. The confusion matrix and the filters pick which images the grid shows; open "
        "any image for its full explanation, send the filtered set to the review queue, or export it. "
        + DISCLAIMER
    )

cfg = settings()
model = page_model(cfg)
usable = sc.available_methods(model)
qualification.status(model)  # which methods are qualified for this model


def flash(kind: str, text: str) -> None:
    ss["gallery_flash"] = (kind, text)


@st.cache_resource(show_spinner=False)
def result_store(path: str) -> gallery.ResultStore:
    return gallery.ResultStore(path)


@st.cache_resource(show_spinner=False)
def review_store(url: str) -> rs.ReviewStore:
    return rs.ReviewStore(url)


try:
    store = result_store(str(gallery.gallery_path()))
except ValueError as err:
    st.error(f"The gallery cannot store results: {err}")
    st.stop()


# ---- which set ------------------------------------------------------------------------------------
def folder_root() -> Path | None:
    for env in FOLDER_ENVS:
        value = os.environ.get(env, "").strip()
        if value and Path(value).is_dir():
            return Path(value)
    return None


def folder_choices() -> list[str]:
    root = folder_root()
    if root is None:
        return []
    return ["."] + sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def folder_path(rel: str) -> Path:
    """``rel`` under the configured folder; ValueError if it leaves it or is missing."""
    root = folder_root()
    if root is None:
        raise ValueError(f"No server folder is configured ({' or '.join(FOLDER_ENVS)}).")
    base = root.resolve()
    path = (base / rel).resolve()
    if (path != base and base not in path.parents) or not path.is_dir():
        raise ValueError(f"The folder {rel!r} is not available (expected a folder inside {root}).")
    return path


SOURCES = {"Demo set": "demo", "Server folder": "folder", "Upload a ZIP": "zip"}
source_labels = [k for k in SOURCES if k != "Server folder" or folder_choices()]
method_options = qualification.offered(model, [m for m in sc.METHODS if not usable.get(m)])


def _request(kind: str, methods: list[str]) -> dict | None:
    methods = [m for m in methods if m in method_options]
    if not methods:
        flash("error", "Choose at least one saliency method.")
        return None
    request = {"kind": kind, "methods": methods, "params": dict(cfg.params), "model": cfg.model}
    if kind == "folder":
        request["folder"] = ss.get("go_folder") or "."
    if kind == "zip":
        upload = ss.get("go_zip")
        if upload is None:
            flash("error", "Choose a ZIP file to upload first.")
            return None
        data = upload.getvalue()
        ss["gallery_zip"] = (upload.name, data)
        request["zip"] = (upload.name, hashlib.sha256(data).hexdigest())
    if kind in ("folder", "zip"):
        files = [(f.name, f.getvalue()) for f in ss.get("go_annotations") or []]
        ss["gallery_annotation_files"] = files
        request["annotations"] = digest(files) if files else None
        mapping = ss.get("go_labels_map")
        ss["gallery_labels_map"] = (mapping.name, mapping.getvalue()) if mapping is not None else None
        request["labels_map"] = digest([ss["gallery_labels_map"]]) if mapping is not None else None
    return request


def start(request: dict | None) -> None:
    if request is None:
        return
    ss["gallery_request"] = request
    ss["gallery_running"] = True
    for key in ("gallery_stopped", "gallery_open", "gallery_report", "gallery_last_run"):
        ss.pop(key, None)
    ss["gf_page"] = 1


def open_demo() -> None:
    start(_request("demo", qualification.default_methods(model, method_options, FAST) or method_options[:1]))


def open_watermark_demo() -> None:
    """The shortcut demo: the demo set with watermarked tripods, on the demo-watermark model."""
    ss["model_choice"] = "demo-watermark"
    request = _request("demo-watermark", [m for m in FAST if m in method_options] or method_options[:1])
    if request is not None:
        request["model"] = "demo-watermark"
    start(request)


def open_chosen() -> None:
    start(_request(SOURCES[ss.get("go_source", source_labels[0])], list(ss.get("go_methods", []))))


def cancel_run() -> None:
    ss["gallery_running"] = False
    ss["gallery_stopped"] = True


def continue_run() -> None:
    ss["gallery_running"] = True
    ss.pop("gallery_stopped", None)


def gallery_decisions() -> list:
    """Review decisions in batches sent from the gallery that the signed-in reviewer may see:
    their own, or everyone's for an admin. Empty when nobody is signed in."""
    account = signin.current_account()
    if account is None:
        return []
    try:
        review = review_store(rs.database_url())
        return [
            d
            for b in review.batches()
            if b.source.startswith("gallery:")
            for d in review.decisions(batch=b.name)
            if can(account, "oversee") or d.reviewer == account.name
        ]
    except ValueError as err:
        st.caption(f"Review decisions cannot be read: {err}")
        return []


def review_decisions(image_hash: str) -> None:
    """This image's review decisions (notes for admins), as plain text."""
    account = signin.current_account()
    for d in gallery_decisions():
        if d.item_hash == image_hash:
            st.text(
                f"Review ({d.batch}): {d.label} by {d.reviewer}, {d.decided_at:%Y-%m-%d %H:%M} UTC"
                + (f" · note: {d.note}" if d.note and can(account, "oversee") else "")
            )


# ---- arriving from the review queue: the image of a batch the gallery sent ---------------------------------
focus = ss.get("gallery_focus")
if focus is not None:

    def close_focus() -> None:
        ss.pop("gallery_focus", None)

    selection = store.selection(focus["selection"])
    found = next(
        (it for it in store.selection_items(focus["selection"]) if it["hash"] == focus["hash"]), None
    )
    if selection is None or found is None:
        st.warning("This review item is no longer in the gallery's results.")
        st.button("Close", on_click=close_focus, key="gallery_focus_close")
    else:
        st.caption(f"From review batch **{md(selection['name'])}** ({md(selection['description'])}).")
        merged = {k: v for p in selection["methods"].values() for k, v in p.items()}
        show_item(
            model,
            store,
            found["name"],
            found["label"],
            found["classes"],
            lambda: found["data"],
            found["hash"],
            [m for m in selection["methods"] if m in method_options],
            merged,
            close_focus,
            "focus",
            review_decisions,
        )

request = ss.get("gallery_request")
with st.expander("Data set and methods", expanded=request is None):
    st.markdown(
        "A **labelled set** is a folder (or ZIP) with one sub-folder per class, named like the "
        "model's classes (e.g. `tabby/`, `espresso/`), or a `labels.csv` with columns `file,label`. "
        "An optional `classes.json` maps your labels to the model's classes."
    )
    with st.form("gallery_set_form", border=False):
        st.radio("Images", source_labels, horizontal=True, key="go_source")
        if "Server folder" in source_labels:
            st.selectbox(
                "Folder",
                folder_choices(),
                key="go_folder",
                help=f"Folders under {folder_root()} on the server.",
            )
        st.file_uploader(
            "ZIP of a labelled set",
            type=["zip"],
            key="go_zip",
            help="One sub-folder per class inside, or labels.csv next to the images.",
        )
        st.file_uploader(
            "Annotations (optional)",
            type=["csv", "xml", "json", "zip", "png"],
            accept_multiple_files=True,
            key="go_annotations",
            help="Where the object is in each image, matched by file name: CSV boxes, Pascal VOC XML, "
            "COCO JSON, mask PNGs or a ZIP of these (as on the Validate page). Adds 'right answer, "
            "looked elsewhere'.",
        )
        st.file_uploader(
            "Label mapping (optional)",
            type=["csv", "json"],
            key="go_labels_map",
            help="CSV rows label,class (a model class name or index) or classes.json: settles labels that "
            "fit no class or several.",
        )
        st.multiselect(
            "Methods",
            method_options,
            default=qualification.default_methods(model, method_options, FAST),
            key="go_methods",
            format_func=lambda n: sc.METHODS[n].label,
            help="Maps computed for every image. Gradient and Grad-CAM take a fraction of a second "
            "per image; SmoothGrad takes its number of samples times longer. Parameters come "
            "from the sidebar.",
        )
        st.form_submit_button("Open and compute", type="primary", on_click=open_chosen)
if request is None:
    st.info(
        "Nothing is computed until you open a set. The demo set has 32 images with known classes "
        "(some of which the demo model gets wrong)."
    )
    st.button("Open the demo set", type="primary", on_click=open_demo, key="gallery_demo")
    st.caption(DEMO_DESCRIPTION)
    st.button("Open the shortcut demo", on_click=open_watermark_demo, key="gallery_demo_watermark")
    st.caption(
        "The demo set plus 12 tripods, 7 of them with a small checkerboard watermark in the corner, on the "
        "demo model variant built to use that watermark (demo-watermark): shows 'right answer, looked "
        "elsewhere' and a flagged shortcut group."
    )
    st.stop()

if "gallery_flash" in ss:
    kind, text = ss.pop("gallery_flash")
    {"success": st.success, "info": st.info, "warning": st.warning}.get(kind, st.error)(text)

if request.get("model") != cfg.model:
    st.warning(
        "The sidebar's model changed since this set was opened; results are shown for the model now "
        "chosen. Press **Open and compute** to compute what this model lacks."
    )
methods = [m for m in request["methods"] if m in method_options]
params = request["params"]
if not methods:
    st.error("None of this set's methods can run on the current model; choose others and open the set again.")
    st.stop()


def labelled_set(req: dict) -> LabelledSet:
    """The set of ``req``, opened once per session (its files are hashed when opened)."""
    key = (
        req["kind"],
        req.get("folder"),
        req.get("zip"),
        req.get("labels_map"),
        hashlib.sha256("\n".join(model.labels).encode()).hexdigest(),
    )
    cache = ss.setdefault("gallery_sets", {})
    if key not in cache:
        cache.clear()
        with st.spinner("Reading the set's files…"):
            mapping = None
            if req.get("labels_map") and ss.get("gallery_labels_map"):
                name, data = ss["gallery_labels_map"]
                mapping = (
                    read_mapping(data, name) if name.lower().endswith(".json") else read_label_map(data, name)
                )
            if req["kind"] in ("demo", "demo-watermark"):
                cache[key] = demo_set(model.labels, watermark=req["kind"] == "demo-watermark")
            elif req["kind"] == "folder":
                cache[key] = open_folder(folder_path(req["folder"]), model.labels, mapping=mapping)
            else:
                name, data = ss.get("gallery_zip", (None, None))
                if data is None or hashlib.sha256(data).hexdigest() != req["zip"][1]:
                    raise ValueError("The uploaded ZIP is no longer here; upload it again and press Open.")
                cache[key] = open_zip(data, name, model.labels, mapping=mapping)
    return cache[key]


try:
    labelled = labelled_set(request)
except ValueError as err:
    ss["gallery_running"] = False
    st.error(f"This set cannot be opened: {err}")
    st.stop()

status = st.container()  # the run's progress bar goes here (the run itself is at the end of the page)
show_mapping(labelled, model)
st.caption(
    f"**{md(labelled.description)}** · {len(labelled):,} images · methods: "
    + ", ".join(sc.METHODS[m].label for m in methods)
    + (
        f" · SmoothGrad {params['samples']} samples, noise {params['noise']:.2f}, seed {params['seed']}"
        if "smoothgrad" in methods
        else ""
    )
)


# ---- the table of results ------------------------------------------------------------------------------
rows = results_table(store, model, labelled, methods, params)
decided = {}
for d in gallery_decisions():
    decided.setdefault(d.item_hash, []).append(f"{d.label} ({d.reviewer})")
if decided:
    rows = rows.assign(review=rows["image_hash"].map(lambda h: "; ".join(decided.get(h, []))))
annotations, unmatched = annotations_for(labelled, request, ss.get("gallery_annotation_files"))
scored_method = ss.get("gf_method") if ss.get("gf_method") in methods else methods[0]
if annotations:
    rows = scored_rows(store, model, labelled, rows, annotations, methods, params, scored_method)
done = rows[rows["status"] == "done"]

if not ss.get("gallery_running"):
    todo = int((~rows["complete"].astype(bool)).sum())
    complete = int((rows["complete"].astype(bool) & (rows["status"] != "unreadable")).sum())
    if ss.get("gallery_stopped"):
        with status:
            st.info(
                f"Stopped. {complete:,} of {len(labelled):,} images have every map and are kept"
                + (f"; {todo:,} still need computing." if todo else ".")
            )
            st.button("Continue computing", on_click=continue_run, key="gallery_continue")
    elif todo:
        with status:
            st.info(
                f"{todo:,} of {len(labelled):,} images have no stored result for these methods and "
                "parameters yet."
            )
            st.button("Compute them", on_click=continue_run, key="gallery_continue")
if "gallery_last_run" in ss:
    st.caption(ss["gallery_last_run"])

# ---- left out ------------------------------------------------------------------------------------------
bad_rows = rows.loc[rows["status"].isin(["unreadable", "duplicate"]), ["name", "reason"]]
left_out = pd.concat(
    [
        pd.DataFrame(
            [{"file or label": p.item, "why": p.reason} for p in labelled.problems],
            columns=["file or label", "why"],
        ),
        bad_rows.set_axis(["file or label", "why"], axis=1),
    ],
    ignore_index=True,
)
if len(left_out):
    with st.expander(f"{len(left_out):,} files or labels could not be used (the rest of the set is shown)"):
        st.dataframe(left_out.head(5000), hide_index=True, key="gallery_left_out")
        if len(left_out) > 5000:
            st.caption(f"The first 5,000 of {len(left_out):,} are listed; download them all below.")
        st.download_button(
            "Download this list (CSV)",
            lambda: gallery.safe_csv(left_out),
            "left_out.csv",
            "text/csv",
            key="gallery_left_out_csv",
        )


# ---- the page's sections once a result is stored ----------------------------------------------------
def summary_in_words() -> None:
    """The share predicted correctly, the mistakes and the surest mistake, in words."""
    correct = int(done["correct"].astype(bool).sum())
    mistakes = done[~done["correct"].astype(bool)].sort_values("confidence", ascending=False)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Images with a result", f"{len(done):,} of {len(rows):,}")
    c2.metric(
        "Predicted correctly", f"{correct / len(done):.0%}", help=f"{correct:,} of {len(done):,} images"
    )
    c3.metric("Mistakes", f"{len(mistakes):,}")
    c4.metric("Left out", f"{len(left_out):,}")
    words = f"The model gets **{correct:,} of {len(done):,}** images right ({correct / len(done):.0%})."
    if not mistakes.empty:
        worst = mistakes.iloc[0]
        words += (
            f" Its surest mistake: **{md(worst['name'])}** (a {md(worst['label'])}) taken for "
            f"**{md(worst['predicted_class'])}** with {worst['confidence']:.0%} confidence."
        )
    st.markdown(words)


def confusion_and_accuracy() -> None:
    """The clickable confusion matrix (a click filters the grid) and the accuracy per true class."""
    summary = ss.get("gallery_summary")
    if summary is None or summary[0] is not ss["gallery_rows"]:  # again only when the rows were read again
        summary = ss["gallery_summary"] = (
            ss["gallery_rows"],
            gallery.confusion(rows),
            gallery.class_accuracy(rows),
        )
    counts, accuracy = summary[1], summary[2]
    ss["gallery_rest"] = counts.attrs.get("rest", [])
    ss["gallery_labels"] = [*counts.index, *counts.columns]

    def pick_cell() -> None:
        event = ss.get("gallery_confusion")
        points = (
            (event or {}).get("selection", {}).get("points", [])
            if isinstance(event, dict)
            else getattr(getattr(event, "selection", None), "points", [])
        )
        if not points:
            return
        labels = {shown(v): v for v in [*ss.get("gallery_labels", []), gallery.OTHER_REST]}
        true, predicted = labels.get(points[0].get("y")), labels.get(points[0].get("x"))
        if true is None or predicted is None:
            return
        ss["gf_true"] = [true]
        ss["gf_pred"] = list(ss.get("gallery_rest", [])) if predicted == gallery.OTHER_REST else [predicted]
        ss["gf_outcome"] = "All images"
        ss["gf_page"] = 1

    left, right = st.columns([3, 2])
    with left:
        st.markdown(
            "**Confusion matrix**: rows are the true classes, columns what the model predicted; the "
            "diagonal holds the correct predictions. Click a square to show those images below."
        )
        fig = session_figure(("confusion", counts.to_json()), lambda: confusion_figure(counts))
        st.plotly_chart(
            fig,
            key="gallery_confusion",
            on_select=pick_cell,
            selection_mode="points",
            config={"displayModeBar": False},
        )
    with right:
        per = accuracy[accuracy["label"] != "all"]
        bars = session_figure(("accuracy", per.to_json()), lambda: accuracy_figure(per))
        st.markdown("**Accuracy per true class**")
        st.plotly_chart(bars, key="gallery_accuracy", config={"displayModeBar": False})
        if annotations:
            reason_counts(rows, ss.get("gf_threshold", int(gr.THRESHOLD * 100)) / 100, scored_method)
    with st.expander("The same numbers as tables"):
        st.dataframe(counts, key="gallery_counts_table")
        st.dataframe(
            accuracy.assign(accuracy=accuracy["accuracy"].map(lambda a: f"{a:.0%}")),
            hide_index=True,
            key="gallery_accuracy_table",
        )


def open_item() -> None:
    """The image opened from the grid, in full, above the grid."""

    def close_item() -> None:
        ss.pop("gallery_open", None)

    opened = ss.get("gallery_open")
    if opened is not None and opened in set(rows["name"]):
        item = next(it for it in labelled.items if it.name == opened)
        h = rows.loc[rows["name"] == opened, "image_hash"].iloc[0]
        show_item(
            model,
            store,
            item.name,
            item.label,
            item.classes,
            item.read,
            h,
            methods,
            params,
            close_item,
            "item",
            review_decisions,
        )


# ---- the grid: a fragment, so turning a page reruns (and redraws) the grid alone -------------
@st.fragment
def grid(filtered: pd.DataFrame, shown_method: str | None, decided: dict) -> None:
    pages = gallery.pages(filtered)
    ss["gf_page"] = min(max(int(ss.get("gf_page", 1)), 1), pages)
    p1, p2, p3 = st.columns([4, 1, 1], vertical_alignment="bottom")
    p1.markdown(f"**{len(filtered):,} of {len(done):,} images** match · page {ss['gf_page']} of {pages}")
    p2.number_input("Page", 1, pages, key="gf_page", label_visibility="collapsed")
    p3.caption(f"{gallery.PAGE_SIZE} per page")
    ss.setdefault("gallery_filters", {})["gf_page"] = ss["gf_page"]
    if filtered.empty:
        st.info("No image matches these filters. Press **Reset** to show every image.")
    page_rows = gallery.page_of(filtered, ss["gf_page"])
    for start_at in range(0, len(page_rows), COLUMNS):
        cols = st.columns(COLUMNS)
        for col, tile in zip(
            cols,
            gallery.tiles(store, model, page_rows.iloc[start_at : start_at + COLUMNS], shown_method, params),
        ):
            with col.container(border=True):
                if tile.jpeg:
                    st.image(tile.jpeg, width="stretch", alt=tile.alt)
                badge = ":green-badge[Correct]" if tile.correct else ":red-badge[Mistake]"
                reviewed = decided.get(tile.image_hash)
                st.markdown(
                    badge
                    + "  \n"
                    + "  \n".join(md(line) for line in tile.caption.split("\n\n"))
                    + (f"  \nReview: {md('; '.join(reviewed))}" if reviewed else "")
                )
                if st.button("Open", key=f"gopen_{tile.image_hash}", width="stretch"):
                    ss["gallery_open"] = tile.name
                    st.rerun(scope="app")  # the full view sits above the grid


def exports(filtered: pd.DataFrame) -> None:
    """Send the filtered images to review, download them as CSV, or build a report of them."""
    st.subheader(f"These {len(filtered):,} images")
    a1, a2, a3 = st.columns(3)
    outcome_word = {"all": "all", "incorrect": "mistakes", "correct": "correct"}[OUTCOME[ss["gf_outcome"]]]
    with a1:
        send_to_review(filtered, labelled, model, store, methods, params, outcome_word, review_store)
    with a2:
        download_table(filtered, labelled, model)
    with a3:
        build_report(filtered, labelled, model, store, methods, params, cfg.model, outcome_word)
    shortcut_groups(store, model, rows, methods, params)


if done.empty:
    if not ss.get("gallery_running"):
        st.info("No results yet for this set with these methods.")
else:
    summary_in_words()
    confusion_and_accuracy()

    # ---- filters ---------------------------------------------------------------------------------------
    # Streamlit forgets a widget's value when a page without it runs: keep the filters across pages
    filter_keys = (
        "gf_outcome",
        "gf_true",
        "gf_pred",
        "gf_order",
        "gf_method",
        "gf_flags",
        "gf_page",
        "gf_reason",
        "gf_threshold",
    )
    for key, value in ss.get("gallery_filters", {}).items():
        if key not in ss and key in filter_keys:
            ss[key] = value
    if ss.get("gf_method", methods[0]) not in [*methods, None]:
        del ss["gf_method"]
    true_options = sorted(done["label"].unique())
    predicted_options = sorted(done["predicted_label"].unique())
    ss["gf_true"] = [v for v in ss.get("gf_true", []) if v in true_options]
    ss["gf_pred"] = [v for v in ss.get("gf_pred", []) if v in predicted_options]
    has_flags = bool((rows["flags"] != "").any() or (rows["checks"] != "").any())

    def reset_filters() -> None:
        for key in ("gf_true", "gf_pred"):
            ss[key] = []
        ss["gf_outcome"], ss["gf_order"], ss["gf_page"], ss["gf_flags"] = "All images", "File name", 1, "Any"
        ss["gf_reason"] = "All images"
        ss.pop("gf_group", None)
        ss["gf_conf_version"] = ss.get("gf_conf_version", 0) + 1  # a new slider, back at its full range
        ss["gallery_conf"] = (0, 100)

    def first_page() -> None:
        ss["gf_page"] = 1

    st.subheader("Images")
    f1, f2, f3 = st.columns([2, 3, 3])
    f1.radio("Show", list(OUTCOME), key="gf_outcome", on_change=first_page)
    f2.multiselect("True class", true_options, key="gf_true", on_change=first_page, placeholder="all classes")
    f3.multiselect(
        "Predicted as",
        predicted_options,
        key="gf_pred",
        on_change=first_page,
        placeholder="anything",
        help="'other: …' is a class of the model that none of the set's labels stands for.",
    )
    f4, f5, f6, f7 = st.columns([3, 2, 2, 1], vertical_alignment="bottom")
    low, high = ss["gallery_conf"] = f4.slider(
        "Confidence of the prediction (%)",
        0,
        100,
        tuple(ss.get("gallery_conf", (0, 100))),
        on_change=first_page,
        key=f"gf_conf{ss.get('gf_conf_version', 0)}",
    )
    orders = {**ORDER, **(SHARE_ORDER if annotations else {})}
    if ss.get("gf_order") not in orders:
        ss["gf_order"] = "File name"
    f5.selectbox("Order", list(orders), key="gf_order", on_change=first_page)
    shown_method = f6.selectbox(
        "Tiles show",
        [*methods, None],
        key="gf_method",
        format_func=lambda m: f"{sc.METHODS[m].label} overlay" if m else "the photo only",
    )
    f7.button("Reset", on_click=reset_filters, key="gf_reset", help="Show every image again.")
    flagged = None
    if has_flags:
        choice = st.radio(
            "Stability and sanity checks",
            list(FLAGS),
            horizontal=True,
            key="gf_flags",
            on_change=first_page,
            help="Checks run on the Stability and Sanity check pages for these images.",
        )
        flagged = FLAGS[choice]
    reason, threshold = "all", gr.THRESHOLD
    if annotations:
        r1, r2 = st.columns([3, 2])
        reason = REASON_LABELS[
            r1.radio(
                f"Right answer, right reason? ({sc.METHODS[scored_method].label} maps, {len(annotations):,} "
                "annotated images)",
                list(REASON_LABELS),
                horizontal=True,
                key="gf_reason",
                on_change=first_page,
                help="Looked at the part: at least the threshold's share of the map's relevance lies inside "
                "the annotated region. The maps scored are those the tiles show.",
            )
        ]
        threshold = (
            r2.slider(
                "Looked at the part from this share inside (%)",
                0,
                100,
                int(gr.THRESHOLD * 100),
                key="gf_threshold",
                on_change=first_page,
            )
            / 100
        )
        if unmatched:
            st.caption(f"{len(unmatched):,} images or annotations did not match (matched by file name).")
    ss["gallery_filters"] = {key: ss[key] for key in filter_keys if key in ss}
    filtered = gallery.filter_rows(
        rows,
        true_labels=ss["gf_true"],
        predicted_labels=ss["gf_pred"],
        outcome=OUTCOME[ss["gf_outcome"]],
        confidence=(low / 100, high / 100),
        flagged=flagged,
        order=orders[ss["gf_order"]],
        reason=reason,
        threshold=threshold,
    )
    filtered = group_filter(filtered)

    open_item()
    grid(filtered, shown_method, decided)
    exports(filtered)


# ---- the run: after the page is drawn, so what is stored stays visible ------------------------------------
if ss.get("gallery_running"):
    with status:
        bar = st.progress(0.0, text="Starting…")
        st.button(
            "Cancel",
            key="gallery_cancel",
            on_click=cancel_run,
            help="Stops after the image being computed; everything finished is kept.",
        )

        def progress(p: gallery.RunProgress) -> None:
            bar.progress(
                min(1.0, p.done / max(p.total, 1)), text=f"Computing predictions and maps: {p.words()}"
            )

        try:
            report = gallery.run(
                model,
                labelled,
                methods,
                params,
                store,
                progress=progress,
                ray_address=os.environ.get(RAY_ENV) or None,
                model_source=cfg.model,
            )
        except ValueError as err:
            ss["gallery_running"] = False
            st.error(f"The run stopped: {err}. What was finished is kept.")
            st.stop()
    ss["gallery_running"] = False
    text = (
        f"Last run: {report.computed:,} images computed in {report.seconds:.0f} s"
        + (f" ({report.rate:.2f} images/s)" if report.rate else "")
        + f", {report.stored:,} already stored, {len(report.failed):,} could not be read."
    )
    for problem in report.errors[:20]:
        text += f" {md(problem.item)}: {md(problem.reason)}."
    ss["gallery_last_run"] = text
    st.rerun()
