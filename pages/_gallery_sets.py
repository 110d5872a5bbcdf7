"""The gallery's choice of a labelled set: the server folders offered, the request an Open button
makes (a callback: it runs before the page is drawn again), and the set a request opens."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

import pages._qualification as qualification
import saliency_core as sc
from pages._gallery_reasons import digest
from pages._settings import PageSettings
from saliency_core import gallery
from saliency_core.evaluation.labelled import LabelledSet, demo_set, open_folder, open_zip, read_mapping
from saliency_core.evaluation.labels import read_label_map

FOLDER_ENVS = ("SALIENCY_GALLERY_DIR", "SALIENCY_REVIEW_DIR")  # server folders of labelled sets
SOURCES = {"Demo set": "demo", "Server folder": "folder", "Upload a ZIP": "zip"}
FAST = ["gradcam", "gradient"]
ss = st.session_state


@dataclass
class GalleryPage:
    """What every section of the gallery works with: the sidebar's settings and model, the result
    store, the methods this model may run, and the sources of a set offered."""

    cfg: PageSettings
    model: sc.Classifier
    store: gallery.ResultStore
    method_options: list[str]
    source_labels: list[str]


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


def flash(kind: str, text: str) -> None:
    ss["gallery_flash"] = (kind, text)


def set_request(page: GalleryPage, kind: str, methods: list[str]) -> dict | None:
    """The request for a set of ``kind`` with ``methods``; None (and a message) when it cannot be made."""
    methods = [m for m in methods if m in page.method_options]
    if not methods:
        flash("error", "Choose at least one saliency method.")
        return None
    request = {"kind": kind, "methods": methods, "params": dict(page.cfg.params), "model": page.cfg.model}
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


def open_demo(page: GalleryPage) -> None:
    options = page.method_options
    start(set_request(page, "demo", qualification.default_methods(page.model, options, FAST) or options[:1]))


def open_watermark_demo(page: GalleryPage) -> None:
    """The shortcut demo: the demo set with watermarked tripods, on the demo-watermark model."""
    ss["model_choice"] = "demo-watermark"
    options = page.method_options
    request = set_request(page, "demo-watermark", [m for m in FAST if m in options] or options[:1])
    if request is not None:
        request["model"] = "demo-watermark"
    start(request)


def open_chosen(page: GalleryPage) -> None:
    kind = SOURCES[ss.get("go_source", page.source_labels[0])]
    start(set_request(page, kind, list(ss.get("go_methods", []))))


def labelled_set(model: sc.Classifier, req: dict) -> LabelledSet:
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
