"""Gallery page parts for label mapping, "right answer, wrong reason" and shortcut groups.

Each function draws one part of pages/gallery.py from the engine's results
(saliency_core.evaluation.labels, saliency_core.gallery.reasons, saliency_core.gallery.groups);
what is computed is kept in the session, keyed by what it depends on."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

import saliency_core as sc
from saliency_core import gallery
from saliency_core.engine import render as rd
from saliency_core.evaluation.labels import mapping_rows
from saliency_core.gallery import groups as gg
from saliency_core.gallery import reasons as gr

REASON_LABELS = {
    "All images": "all",
    "Right answer, looked elsewhere": "right answer, looked elsewhere",
    "Wrong answer, looked at the part": "wrong answer, looked at the part",
}
ss = st.session_state


def show_mapping(labelled, model) -> None:
    """The resolved label -> class mapping (and refused labels), in an expander."""
    counts: dict[str, int] = {}
    for it in labelled.items:
        counts[it.label] = counts.get(it.label, 0) + 1
    rows = pd.DataFrame(mapping_rows(labelled.classes, model.labels, counts))
    refused = [p for p in labelled.problems if p.item.startswith("label ")]
    title = f"How the set's {len(rows)} labels map to the model's classes" + (
        f" ({len(refused)} refused)" if refused else ""
    )
    with st.expander(title, expanded=bool(refused)):
        st.caption(
            "Each label resolves to exactly one model class (or the classes a mapping file gives it): an "
            "exact class name wins over a loose match (case, spaces, punctuation); a loose match that fits "
            "several classes is refused. Upload a mapping file (CSV label,class) to settle a refused label."
        )
        st.dataframe(rows, hide_index=True, key="gallery_mapping_table")
        for p in refused:
            st.warning(f"{p.item}: {p.reason}", icon=":material/help:")


def annotations_for(labelled, request: dict, files: list | None) -> tuple[dict, list]:
    """Item name -> annotation for the set (bundled for the demo sets, else the uploaded files),
    and what did not match; kept per set and upload."""
    from saliency_core.evaluation.data import demo_annotations

    key = (labelled.id, request.get("annotations"))
    cached = ss.get("gallery_annotations_cache")
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    if request["kind"] in ("demo", "demo-watermark"):
        found, skipped = demo_annotations(), []
    elif files:
        found, skipped = gr.read_annotation_files(files)
    else:
        found, skipped = [], []
    by_name, unmatched = gr.annotated(labelled, found) if found else ({}, [])
    ss["gallery_annotations_cache"] = (key, by_name, skipped + unmatched)
    return by_name, skipped + unmatched


def scored_rows(store, model, labelled, rows, annotations, methods, params, method) -> pd.DataFrame:
    """``rows`` with ``share_inside`` / ``peak_inside`` of ``method`` (scores kept per store version)."""
    key = (
        labelled.id,
        gallery.model_key(model),
        tuple(methods),
        repr(params),
        store.version(),
        len(annotations),
    )
    cached = ss.get("gallery_scores")
    if cached is None or cached[0] != key:
        with st.spinner("Measuring where each map sits against the annotated parts…"):
            scores = gr.region_scores(store, model, labelled, annotations, methods, params)
        cached = ss["gallery_scores"] = (key, scores)
    return gr.with_reasons(rows, cached[1], method)


def reason_counts(rows: pd.DataFrame, threshold: float, method: str) -> None:
    """The two-by-two count beside the confusion matrix."""
    counts = gr.reason_counts(rows, threshold)
    st.markdown(f"**Right answer, right reason?** ({sc.METHODS[method].label}, annotated images)")
    st.dataframe(counts, key="gallery_reason_counts")
    st.caption(
        f"An image looked at the part when at least {threshold:.0%} of its map's relevance lies inside "
        "the annotated region (change it under the filters). Right answer but looked elsewhere: the model "
        "may be right for the wrong reason."
    )


def mean_map_png(mean_map: np.ndarray, side: int = 160) -> bytes:
    """A group's 32 x 32 mean map as an inferno heatmap PNG (max = brightest)."""
    peak = float(mean_map.max()) or 1.0
    lut = rd.colormap_lut("inferno")
    index = np.clip(mean_map / peak * (len(lut) - 1), 0, len(lut) - 1).astype(int)
    picture = Image.fromarray(lut[index].astype(np.uint8)).resize((side, side), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def shortcut_groups(store, model, rows: pd.DataFrame, methods: list, params: dict) -> None:
    """Spectral relevance analysis per predicted class: groups, flags, examples, 'show in the grid'."""
    st.subheader("Shortcut groups")
    st.caption(
        "Spectral relevance analysis (Lapuschkin et al. 2019): the stored maps of one predicted class, at "
        f"{gg.SIDE}x{gg.SIDE} and at their reproducible detail, grouped by where their relevance sits; the "
        "number of groups comes from the eigengap. A group whose relevance sits in a corner or on the edge "
        "band is flagged: the model may be using a watermark, tag or border there. No annotations needed."
    )
    done = rows[rows["status"] == "done"]
    sizes = done["predicted_label"].value_counts()
    classes = sorted(c for c, n in sizes.items() if n >= gg.MIN_MAPS)
    if not classes:
        st.info(f"Shortcut groups need at least {gg.MIN_MAPS} images predicted as one class.")
        return
    c1, c2, c3 = st.columns([3, 2, 1], vertical_alignment="bottom")
    chosen = c1.selectbox(
        "Predicted class", classes, key="gg_class", format_func=lambda c: f"{c} ({sizes[c]} images)"
    )
    method = c2.selectbox("Maps of", methods, key="gg_method", format_func=lambda m: sc.METHODS[m].label)
    key = (gallery.model_key(model), chosen, method, repr(params), store.version(), tuple(done["image_hash"]))
    if c3.button("Find groups", key="gg_find", type="primary"):
        with st.spinner("Grouping the maps…"):
            ss["gallery_groups"] = (key, gg.class_groups(store, model, rows, method, params, [chosen]))
    found = ss.get("gallery_groups")
    if found is None or found[0] != key:
        return
    result = found[1].get(chosen)
    if result is None or result.note:
        st.info(result.note if result else "No stored maps for this class.")
        return
    st.caption(
        f"{len(result.groups)} group(s) among {sum(g.size for g in result.groups)} maps, in "
        f"{result.seconds:.2f} s; smallest eigenvalues of the graph: "
        + ", ".join(f"{v:.2f}" for v in result.eigenvalues[:6])
    )
    for n, group in enumerate(result.groups):
        with st.container(border=True):
            left, right = st.columns([1, 4])
            left.image(mean_map_png(group.mean_map), caption=f"mean map of {group.size} images", width=160)
            with right:
                st.markdown(f"**{group.label}** · {group.size} images")
                if group.flag:
                    st.warning(group.flag, icon=":material/warning:")
                examples = done.set_index("image_hash").loc[group.members[: gg.EXAMPLES]].reset_index()
                cols = st.columns(gg.EXAMPLES)
                for col, tile in zip(cols, gallery.tiles(store, model, examples, method, params)):
                    if tile.jpeg:
                        col.image(tile.jpeg, width="stretch", alt=tile.alt)
                st.button(
                    f"Show these {group.size} in the grid",
                    key=f"gg_show_{n}",
                    on_click=_show_group,
                    args=(group.label, list(group.members)),
                    help="The grid above shows this group; send it to review from there as a batch.",
                )


def _show_group(label: str, members: list[str]) -> None:
    ss["gf_group"] = (label, members)
    ss["gf_page"] = 1


def group_filter(filtered: pd.DataFrame) -> pd.DataFrame:
    """The grid limited to the chosen shortcut group, with a way back."""
    chosen = ss.get("gf_group")
    if not chosen:
        return filtered
    label, members = chosen
    c1, c2 = st.columns([4, 1], vertical_alignment="center")
    c1.info(f"Showing the shortcut group {label} ({len(members)} images); the filters above still apply.")
    c2.button("Show all groups' images", key="gf_group_clear", on_click=lambda: ss.pop("gf_group", None))
    return filtered[filtered["image_hash"].isin(set(members))]


def digest(files: list) -> str:
    h = hashlib.sha256()
    for name, data in files:
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()
