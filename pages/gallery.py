"""Gallery: a labelled set's predictions and maps; filter to the mistakes, open each explanation.

Nothing is computed until the reviewer opens a set. Results are stored as each image finishes
(saliency_core.gallery), so a cancelled, interrupted or repeated run keeps what was done and
computes only what is missing; reopening a set shows its stored results at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

import pages._qualification as qualification
import pages._signin as signin
import saliency_core as sc
from pages._frame import require_frame
from pages._gallery_exports import build_report, download_table, send_to_review
from pages._gallery_figures import accuracy_figure, confusion_figure, session_figure
from pages._gallery_filters import (
    FILTER_KEYS,
    ORDER,
    SHARE_ORDER,
    checks_filter,
    first_page,
    reason_filter,
    reset_filters,
    restore_filters,
)
from pages._gallery_item import show_item
from pages._gallery_reasons import (
    annotations_for,
    group_filter,
    reason_counts,
    scored_rows,
    shortcut_groups,
    show_mapping,
)
from pages._gallery_results import results_table
from pages._gallery_sets import (
    FAST,
    SOURCES,
    GalleryPage,
    folder_choices,
    folder_root,
    labelled_set,
    open_chosen,
    open_demo,
    open_watermark_demo,
)
from pages._gallery_text import md, shown
from pages._settings import page_model, settings
from pages._text import DISCLAIMER
from saliency_core import gallery
from saliency_core.evaluation.labelled import DEMO_DESCRIPTION, LabelledSet
from saliency_core.gallery import reasons as gr
from saliency_core.review import store as rs
from saliency_core.review.identity import can

RAY_ENV = "SALIENCY_RAY_ADDRESS"  # large runs on this Ray cluster
COLUMNS = 6  # tiles per row
REPORT_LIMIT = 100  # images in one report
OUTCOME = {"All images": "all", "Mistakes only": "incorrect", "Correct only": "correct"}
ss = st.session_state


@dataclass
class OpenSet:
    """The set opened: its request, methods and parameters, its images, and the run's progress place."""

    request: dict
    methods: list[str]
    params: dict
    labelled: LabelledSet
    status: DeltaGenerator


@dataclass
class Results:
    """The set's table of results, those done, the review decisions, and the annotations scored."""

    rows: pd.DataFrame
    done: pd.DataFrame
    decided: dict
    annotations: dict
    unmatched: list
    scored_method: str


def introduction() -> None:
    """The title, what the page answers, and how it works."""
    st.title("Gallery")
    st.markdown(
        "Find where the model is wrong on a set of images whose true classes are known, how sure it was, "
        "and what it looked at. **Open the demo set, or choose a data set and press Open and compute.**"
    )
    with st.expander("How it works"):
        st.markdown(
            "Every image is predicted and the chosen methods' maps are computed once and stored, so "
            "reopening the set is instant. The confusion matrix and the filters pick which images the grid "
            "shows; open any image for its full explanation, send the filtered set to the review queue, or "
            "export it. " + DISCLAIMER
        )


@st.cache_resource(show_spinner=False)
def result_store(path: str) -> gallery.ResultStore:
    return gallery.ResultStore(path)


@st.cache_resource(show_spinner=False)
def review_store(url: str) -> rs.ReviewStore:
    return rs.ReviewStore(url)


def page_context() -> GalleryPage:
    """The sidebar's model and its qualification, and the result store; stops when either fails."""
    cfg = settings()
    model = page_model(cfg)
    usable = sc.available_methods(model)
    qualification.status(model)  # which methods are qualified for this model
    try:
        store = result_store(str(gallery.gallery_path()))
    except ValueError as err:
        st.error(f"The gallery cannot store results: {err}")
        st.stop()
    source_labels = [k for k in SOURCES if k != "Server folder" or folder_choices()]
    method_options = qualification.offered(model, [m for m in sc.METHODS if not usable.get(m)])
    return GalleryPage(cfg, model, store, method_options, source_labels)


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


def close_focus() -> None:
    ss.pop("gallery_focus", None)


# ---- arriving from the review queue: the image of a batch the gallery sent ---------------------------------
def focus_item(page: GalleryPage) -> None:
    """The review queue's image (of a batch the gallery sent), in full, when the reviewer came from there."""
    focus = ss.get("gallery_focus")
    if focus is None:
        return
    store = page.store
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
            page.model,
            store,
            found["name"],
            found["label"],
            found["classes"],
            lambda: found["data"],
            found["hash"],
            [m for m in selection["methods"] if m in page.method_options],
            merged,
            close_focus,
            "focus",
            review_decisions,
        )


# ---- which set ------------------------------------------------------------------------------------
def choose_set(page: GalleryPage) -> dict:
    """The data set and methods form, and the demo buttons; stops until a set is opened."""
    request = ss.get("gallery_request")
    with st.expander("Data set and methods", expanded=request is None):
        st.markdown(
            "A **labelled set** is a folder (or ZIP) with one sub-folder per class, named like the "
            "model's classes (e.g. `tabby/`, `espresso/`), or a `labels.csv` with columns `file,label`. "
            "An optional `classes.json` maps your labels to the model's classes."
        )
        with st.form("gallery_set_form", border=False):
            st.radio("Images", page.source_labels, horizontal=True, key="go_source")
            if "Server folder" in page.source_labels:
                st.selectbox(
                    "Folder",
                    folder_choices(),
                    key="go_folder",
                    help=f"Folders under {folder_root()} on the server.",
                )
            set_uploads()
            st.multiselect(
                "Methods",
                page.method_options,
                default=qualification.default_methods(page.model, page.method_options, FAST),
                key="go_methods",
                format_func=lambda n: sc.METHODS[n].label,
                help="Maps computed for every image. Gradient and Grad-CAM take a fraction of a second "
                "per image; SmoothGrad takes its number of samples times longer. Parameters come "
                "from the sidebar.",
            )
            st.form_submit_button("Open and compute", type="primary", on_click=open_chosen, args=(page,))
    if request is None:
        st.info(
            "Nothing is computed until you open a set. The demo set has 32 images with known classes "
            "(some of which the demo model gets wrong)."
        )
        st.button("Open the demo set", type="primary", on_click=open_demo, args=(page,), key="gallery_demo")
        st.caption(DEMO_DESCRIPTION)
        st.button(
            "Open the shortcut demo", on_click=open_watermark_demo, args=(page,), key="gallery_demo_watermark"
        )
        st.caption(
            "The demo set plus 12 tripods, 7 of them with a small checkerboard watermark in the corner, on "
            "the demo model variant built to use that watermark (demo-watermark): shows 'right answer, "
            "looked elsewhere' and a flagged shortcut group."
        )
        st.stop()
    return request


def set_uploads() -> None:
    """The set form's uploads: a ZIP of the set, its annotations, and a label mapping."""
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


def flash_message() -> None:
    """The message a callback left for this run (a request that could not be made)."""
    if "gallery_flash" in ss:
        kind, text = ss.pop("gallery_flash")
        {"success": st.success, "info": st.info, "warning": st.warning}.get(kind, st.error)(text)


def open_set(page: GalleryPage, request: dict) -> OpenSet:
    """The opened set's methods, its images and a line about it; stops when it cannot be opened."""
    if request.get("model") != page.cfg.model:
        st.warning(
            "The sidebar's model changed since this set was opened; results are shown for the model now "
            "chosen. Press **Open and compute** to compute what this model lacks."
        )
    methods = [m for m in request["methods"] if m in page.method_options]
    params = request["params"]
    if not methods:
        st.error(
            "None of this set's methods can run on the current model; choose others and open the set again."
        )
        st.stop()
    try:
        labelled = labelled_set(page.model, request)
    except ValueError as err:
        ss["gallery_running"] = False
        st.error(f"This set cannot be opened: {err}")
        st.stop()
    status = st.container()  # the run's progress bar goes here (the run itself is at the end of the page)
    show_mapping(labelled, page.model)
    st.caption(
        f"**{md(labelled.description)}** · {len(labelled):,} images · methods: "
        + ", ".join(sc.METHODS[m].label for m in methods)
        + (
            f" · SmoothGrad {params['samples']} samples, noise {params['noise']:.2f}, seed {params['seed']}"
            if "smoothgrad" in methods
            else ""
        )
    )
    return OpenSet(request, methods, params, labelled, status)


# ---- the table of results ------------------------------------------------------------------------------
def results(page: GalleryPage, opened: OpenSet) -> Results:
    """The set's stored results with their review decisions, scored against annotations when given."""
    methods, params, labelled = opened.methods, opened.params, opened.labelled
    rows = results_table(page.store, page.model, labelled, methods, params)
    decided = {}
    for d in gallery_decisions():
        decided.setdefault(d.item_hash, []).append(f"{d.label} ({d.reviewer})")
    if decided:
        rows = rows.assign(review=rows["image_hash"].map(lambda h: "; ".join(decided.get(h, []))))
    annotations, unmatched = annotations_for(labelled, opened.request, ss.get("gallery_annotation_files"))
    scored_method = ss.get("gf_method") if ss.get("gf_method") in methods else methods[0]
    if annotations:
        rows = scored_rows(
            page.store, page.model, labelled, rows, annotations, methods, params, scored_method
        )
    done = rows[rows["status"] == "done"]
    return Results(rows, done, decided, annotations, unmatched, scored_method)


def run_state(opened: OpenSet, rows: pd.DataFrame) -> None:
    """Stopped, or images still to compute (with a button to go on); and the last run in words."""
    labelled, status = opened.labelled, opened.status
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
def left_out_list(labelled: LabelledSet, rows: pd.DataFrame) -> pd.DataFrame:
    """The files and labels that could not be used, listed and downloadable; returned for the summary."""
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
        with st.expander(
            f"{len(left_out):,} files or labels could not be used (the rest of the set is shown)"
        ):
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
    return left_out


# ---- the page's sections once a result is stored ----------------------------------------------------
def summary_in_words(res: Results, left_out: pd.DataFrame) -> None:
    """The share predicted correctly, the mistakes and the surest mistake, in words."""
    rows, done = res.rows, res.done
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


def confusion_and_accuracy(res: Results) -> None:
    """The clickable confusion matrix (a click filters the grid) and the accuracy per true class."""
    rows, annotations, scored_method = res.rows, res.annotations, res.scored_method
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


def open_item(page: GalleryPage, opened: OpenSet, rows: pd.DataFrame) -> None:
    """The image opened from the grid, in full, above the grid."""
    labelled, methods, params = opened.labelled, opened.methods, opened.params

    def close_item() -> None:
        ss.pop("gallery_open", None)

    name = ss.get("gallery_open")
    if name is not None and name in set(rows["name"]):
        item = next(it for it in labelled.items if it.name == name)
        h = rows.loc[rows["name"] == name, "image_hash"].iloc[0]
        show_item(
            page.model,
            page.store,
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
def grid(
    page: GalleryPage,
    params: dict,
    filtered: pd.DataFrame,
    shown_method: str | None,
    decided: dict,
    total: int,
) -> None:
    """One page of tiles of the filtered images, each with its Open button."""
    pages = gallery.pages(filtered)
    ss["gf_page"] = min(max(int(ss.get("gf_page", 1)), 1), pages)
    p1, p2, p3 = st.columns([4, 1, 1], vertical_alignment="bottom")
    p1.markdown(f"**{len(filtered):,} of {total:,} images** match · page {ss['gf_page']} of {pages}")
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
            gallery.tiles(
                page.store, page.model, page_rows.iloc[start_at : start_at + COLUMNS], shown_method, params
            ),
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


def exports(page: GalleryPage, opened: OpenSet, rows: pd.DataFrame, filtered: pd.DataFrame) -> None:
    """Send the filtered images to review, download them as CSV, or build a report of them."""
    model, store = page.model, page.store
    labelled, methods, params = opened.labelled, opened.methods, opened.params
    st.subheader(f"These {len(filtered):,} images")
    a1, a2, a3 = st.columns(3)
    outcome_word = {"all": "all", "incorrect": "mistakes", "correct": "correct"}[OUTCOME[ss["gf_outcome"]]]
    with a1:
        send_to_review(filtered, labelled, model, store, methods, params, outcome_word, review_store)
    with a2:
        download_table(filtered, labelled, model)
    with a3:
        build_report(filtered, labelled, model, store, methods, params, page.cfg.model, outcome_word)
    shortcut_groups(store, model, rows, methods, params)


# ---- filters ---------------------------------------------------------------------------------------
def filters(methods: list[str], res: Results) -> tuple[pd.DataFrame, str | None]:
    """The filters above the grid; the images they keep and the method the tiles show."""
    rows, annotations = res.rows, res.annotations
    true_options, predicted_options = restore_filters(methods, res.done)
    has_flags = bool((rows["flags"] != "").any() or (rows["checks"] != "").any())
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
    flagged = checks_filter() if has_flags else None
    reason, threshold = (
        reason_filter(annotations, res.unmatched, res.scored_method) if annotations else ("all", gr.THRESHOLD)
    )
    ss["gallery_filters"] = {key: ss[key] for key in FILTER_KEYS if key in ss}
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
    return group_filter(filtered), shown_method


# ---- the run: after the page is drawn, so what is stored stays visible ------------------------------------
def run_set(page: GalleryPage, opened: OpenSet) -> None:
    """The run with its progress bar and Cancel; then the last run in words, and the page again."""
    with opened.status:
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
                page.model,
                opened.labelled,
                opened.methods,
                opened.params,
                page.store,
                progress=progress,
                ray_address=os.environ.get(RAY_ENV) or None,
                model_source=page.cfg.model,
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


def result_sections(page: GalleryPage, opened: OpenSet, res: Results, left_out: pd.DataFrame) -> None:
    """Once a result is stored: summary, confusion matrix, filters, the opened image, grid and exports."""
    if res.done.empty:
        if not ss.get("gallery_running"):
            st.info("No results yet for this set with these methods.")
        return
    summary_in_words(res, left_out)
    confusion_and_accuracy(res)
    filtered_view(page, opened, res)


@st.fragment
def filtered_view(page: GalleryPage, opened: OpenSet, res: Results) -> None:
    """Filters, the opened image, the grid and what to do with the filtered images: a fragment, so
    changing a filter reruns this part alone (the grid inside it reruns alone on a page turn)."""
    filtered, shown_method = filters(opened.methods, res)
    open_item(page, opened, res.rows)
    grid(page, opened.params, filtered, shown_method, res.decided, len(res.done))
    exports(page, opened, res.rows, filtered)


require_frame()
introduction()
page = page_context()
focus_item(page)
request = choose_set(page)
flash_message()
opened = open_set(page, request)
res = results(page, opened)
run_state(opened, res.rows)
left_out = left_out_list(opened.labelled, res.rows)
result_sections(page, opened, res, left_out)
if ss.get("gallery_running"):
    run_set(page, opened)
