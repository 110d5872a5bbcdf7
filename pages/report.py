"""Report: choose images, build a self-contained HTML report (and a PDF) for people who will not
open the dashboard."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import streamlit as st

import pages._qualification as qualification
import saliency_core as sc
from pages._frame import require_frame
from pages._guard import report_error
from pages._images import UPLOAD_TYPES, decode, unreadable
from pages._maps import cached_explain, is_cached
from pages._run import cancellable, estimate_caption, finish_run, request_run, run_active
from pages._settings import page_setup
from pages._text import DISCLAIMER, plain
from pages._verdicts import sanity_verdict
from saliency_core import report as rp
from saliency_core.engine import estimate as es
from saliency_core.engine.safe_text import file_name
from saliency_core.engine.samples import sample_images
from saliency_core.pipeline import method_params


@dataclass
class ImageChoice:
    """The images chosen on this page: carried from Explain, uploaded, or sample photos."""

    samples: dict
    carried: list  # (name, sample name or None, bytes or None)
    use_carried: bool
    uploads: list | None
    picked: list


@dataclass
class ReportOptions:
    """The report's title, whether to make a PDF, and the outlined regions' share (None: no outlines)."""

    title: str
    make_pdf: bool
    outline_share: int | None


def intro() -> None:
    """The title, what the page makes and what the report holds."""
    st.title("Report")
    st.markdown(
        "Make a document that a regulator or stakeholder can read without the dashboard: the predictions, "
        "maps and known limits of the images you choose. **Choose the images and press Build report.**"
    )
    with st.expander("What the report holds"):
        st.markdown(
            "A plain-language summary, the model card, each method's parameters and known limits, every "
            "prediction with its maps, colour bars and legends, and the data to recompute each map. "
            "Methods and parameters come from the sidebar. " + DISCLAIMER
        )


# ---- images and options ----------------------------------------------------------------------------
def choose_images() -> ImageChoice:
    """The Explain page's images (to keep or not), uploads and sample photos."""
    samples = sample_images()
    carried = st.session_state.get("explain_chosen") or []  # (name, sample name or None, bytes or None)
    use_carried = False
    if carried:
        names = ", ".join(name for name, _, _ in carried)
        use_carried = st.checkbox(
            f"The {len(carried)} image(s) chosen on the Explain page: {plain(names)}",
            value=True,
            key="report_carry",
            help="Kept in step with the Explain page's choice.",
        )
    left, right = st.columns([3, 2])
    with left:
        uploads = st.file_uploader(
            "Upload more images" if carried else "Upload images",
            type=UPLOAD_TYPES,
            accept_multiple_files=True,
            help="Each becomes one section of the report, with one map per method.",
        )
    with right:
        picked = st.multiselect("…and/or sample photos", list(samples), default=[])
    return ImageChoice(samples, carried, use_carried, uploads, picked)


def report_options() -> ReportOptions:
    """The title, the PDF switch and the outlined regions with their share."""
    title = st.text_input("Title", rp.DEFAULT_TITLE)
    make_pdf = st.checkbox("Also make a PDF", value=True)
    with_outlines = st.checkbox(
        "Also show each map as outlined regions",
        value=False,
        key="report_outlines",
        help="Beside each coloured map: the smallest set of image regions that holds the chosen "
        "share of the map, outlined, with the rest dimmed. Easier to read for people new "
        "to saliency maps.",
    )
    outline_share = (
        st.slider(
            "The outlined regions hold this share of the map",
            5,
            95,
            int(st.session_state.get("outline_share", 30)),
            5,
            format="%d %%",
            key="report_outline_share",
        )
        if with_outlines
        else None
    )
    return ReportOptions(title, make_pdf, outline_share)


def gather_sources(choice: ImageChoice) -> list[tuple[str, bytes]]:
    """(name, bytes) of every chosen image; an error for a sample photo that cannot be read."""
    carried, use_carried, samples = choice.carried, choice.use_carried, choice.samples
    sources: list[tuple[str, bytes]] = []
    wanted_samples = [n for n, sample, _ in carried if sample] if use_carried else []
    if use_carried:
        sources += [(name, data) for name, sample, data in carried if not sample and data is not None]
    sources += [(f.name, f.getvalue()) for f in choice.uploads or []]
    for name in dict.fromkeys(wanted_samples + list(choice.picked)):
        try:
            with open(samples[name], "rb") as f:
                sources.append((name, f.read()))
        except (OSError, KeyError) as err:
            st.error(
                f"**{plain(name)}**: the sample photo cannot be read "
                f"({plain(getattr(err, 'strerror', None) or err)})."
            )
    return sources


def require_images(methods, sources) -> str:
    """The methods' labels; without an image, a hint and the page stops."""
    labels = ", ".join(sc.METHODS[m].label for m in methods)
    if not sources:
        st.info(
            f"Choose at least one image (upload or sample photo) to build a report. The report will show "
            f"{labels} for each image."
        )
        st.stop()
    return labels


def report_key(model, cfg, methods, options: ReportOptions, sources) -> str:
    """What the report is built from: a changed choice makes the last report stale."""
    return hashlib.sha256(
        repr(
            (
                model.fingerprint,
                model.card.get("digest"),
                methods,
                sorted(cfg.params.items()),
                options.title,
                options.make_pdf,
                [(n, hashlib.sha256(d).hexdigest()) for n, d in sources],
            )
        ).encode()
    ).hexdigest()


def maps_to_compute(model, cfg, methods, sources) -> list:
    """The method of each map not in the map cache yet (each image's predicted class)."""
    todo = []
    for name, data in sources[:50]:  # beyond 50 images every map is counted
        try:
            image = decode(data, name)
        except ValueError:
            continue
        target, digest = model.predict(image, k=1)[0][0], sc.image_hash(image)
        todo += [m for m in methods if not is_cached(model, digest, m, target, method_params(m, cfg.params))]
    todo += [m for _ in sources[50:] for m in methods]
    return todo


def offer_build(model, cfg, methods, sources, labels: str) -> list:
    """What the report will hold, how long it takes, and the Build report button; the maps to compute."""
    st.write(f"{len(sources)} image(s) × {len(methods)} method(s): {plain(labels)}.")
    for why in unreadable(sources):
        st.warning(f"Will be left out of the report: {plain(why)}")
    todo = maps_to_compute(model, cfg, methods, sources)
    times = es.pass_times(model)
    seconds = sum(es.map_seconds(times, m, cfg.params) for m in todo)
    estimate_caption(
        seconds, f"Building it ({len(todo)} of {len(sources) * len(methods)} maps still to compute)"
    )
    st.button(
        "Build report", type="primary", icon=":material/description:", on_click=request_run, args=("report",)
    )
    return todo


def sanity_records(model, methods, sources) -> list:
    """The sanity verdicts computed on the report's own photos only, as records."""
    hashes = []
    for name, data in sources:
        try:
            hashes.append(sc.image_hash(decode(data, name)))
        except ValueError:
            continue
    return [
        v.record()
        for h in dict.fromkeys(hashes)
        for m in methods
        if (v := sanity_verdict(model, m, h)) is not None
    ]


def build(model, cfg, methods, sources, options: ReportOptions, wanted: str, todo: list) -> None:
    """Build the report on Build report's press, with a progress bar; or say a cancelled build stopped."""
    if run_active("report"):
        verdicts = sanity_records(model, methods, sources)
        started = time.perf_counter()

        try:
            with cancellable("report", "Computing maps…") as bar:

                def progress(done, total, label):
                    bar.progress(min(1.0, done / max(1, total)), text=f"{plain(label)} ({done}/{total})")

                report = rp.build_report(
                    model,
                    sources,
                    methods,
                    params=cfg.params,
                    model_source=cfg.model,
                    title=options.title,
                    sanity=verdicts or None,
                    progress=progress,
                    explain_fn=cached_explain,
                    outline_share=options.outline_share / 100 if options.outline_share else None,
                    qualification=qualification.record_in_force(model),  # the scorecard in force, appended
                )
                bar.progress(1.0, text="Writing the report…")
                html = report.to_html().encode("utf-8")
                pdf = report.to_pdf() if options.make_pdf else None
        except Exception as err:
            finish_run("report")
            report_error("Report", err)
            st.stop()
        finish_run("report")
        st.session_state["report_files"] = {
            "key": wanted,
            "html": html,
            "pdf": pdf,
            "images": len(report.images),
            "methods": len(methods),
            "skipped": report.skipped,
            "errors": [
                f"{i.name} [{sc.METHODS[m].label}]: {e}" for i in report.images for m, e in i.errors.items()
            ],
            "seconds": time.perf_counter() - started,
        }
    elif st.session_state.get("report__cancelled") and todo and not st.session_state.get("report_files"):
        st.warning(
            f"Stopped. The maps computed so far are kept: pressing **Build report** again computes only the "
            f"{len(todo)} still missing.",
            icon=":material/pause_circle:",
        )


def offer_downloads(wanted: str, title: str) -> None:
    """The last report's problems, size and download buttons; or a note that it is out of date."""
    files = st.session_state.get("report_files")
    if files and files["key"] == wanted:
        for _, message in files["skipped"]:
            st.error(f"Left out of the report: {plain(message)}")
        for message in files["errors"]:
            st.error(f"Map missing from the report: {plain(message)}")
        st.success(
            f"Report ready: {files['images']} image(s) × {files['methods']} method(s), built in "
            f"{files['seconds']:.1f} s. HTML {len(files['html']) / 2**20:.1f} MiB"
            + (f", PDF {len(files['pdf']) / 2**20:.1f} MiB." if files["pdf"] else ".")
        )
        stem = file_name(title, default="saliency_report", limit=60)
        c1, c2 = st.columns(2)
        c1.download_button(
            "Download HTML report",
            files["html"],
            f"{stem}.html",
            "text/html",
            type="primary",
            key="download-html",
            icon=":material/download:",
            wrap=True,
        )
        if files["pdf"]:
            c2.download_button(
                "Download PDF report",
                files["pdf"],
                f"{stem}.pdf",
                "application/pdf",
                key="download-pdf",
                icon=":material/download:",
                wrap=True,
            )
        st.caption(
            "The HTML file opens in any browser without a network connection and prints on A4. Reports "
            f"of more than {rp.LARGE_REPORT} images are paged, with thumbnails and full maps on demand."
        )
    elif files:
        st.info(
            "The choice of images, methods or settings changed since the last report; press **Build "
            "report** again."
        )


require_frame()
intro()
cfg, model, methods = page_setup()
qualification.status(model)  # which methods are qualified for this model
choice = choose_images()
options = report_options()
sources = gather_sources(choice)
labels = require_images(methods, sources)
wanted = report_key(model, cfg, methods, options, sources)
todo = offer_build(model, cfg, methods, sources, labels)
build(model, cfg, methods, sources, options, wanted, todo)
offer_downloads(wanted, options.title)
