"""The report's data (Report, ImageEntry, MapEntry) and build_report: maps through the pipeline."""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..engine.images import image_hash, load_image
from ..engine.regions import segment
from ..engine.render import (
    DEFAULT_DIVERGING,
    DEFAULT_SEQUENTIAL,
    Rendered,
    colorbar_image,
    render,
    render_outline,
    shown_map,
)
from ..engine.untrusted import one_line
from .content import (
    ALPHA,
    CLIP_PERCENTILE,
    DEFAULT_TITLE,
    EMBED_MAPS_UP_TO,
    EMBED_ORIGINALS_UP_TO,
    LARGE_REPORT,
    PAGE_SIZE,
    SCHEMA,
    as_float32,
    b64,
    encode_image,
    jsonable,
    known_method,
    map_summary,
    recorded_versions,
    source_bytes,
)
from .html_page import HtmlPage
from .pdf import write_pdf
from .qualification import replay_block

# ---- data model ----------------------------------------------------------------------------


@dataclass
class MapEntry:
    """One method's map of one image, rendered for the report.

    Attributes:
        method: registry name; ``params`` every parameter used, seed included.
        saliency: float32 (H, W), the map that is drawn and hashed.
        target, target_label: the explained class.
        overlay: uint8 (H, W, 3), the colours blended on the crop; ``legend``, ``scale``,
            ``ticks``, ``sign``, ``colormap``, ``near_zero`` as ``render`` returned them.
        bar: uint8 (4, 256, 3), the colour bar (``render.colorbar_image``), low values left.
        outline, outline_legend: the region view (``render.render_outline``) when the report has
            ``outline_share``: the smallest set of regions holding that share of the map, outlined.
    """

    method: str
    saliency: np.ndarray
    target: int
    target_label: str
    params: dict
    reduction: str
    overlay: np.ndarray
    legend: str
    scale: float
    ticks: list
    sign: str
    colormap: str
    near_zero: bool
    bar: np.ndarray
    diagnostics: dict = field(default_factory=dict)
    seconds: float = 0.0
    outline: np.ndarray | None = None  # uint8 (H, W, 3): the region view, when the report asks for one
    outline_legend: str = ""

    def summary(self) -> dict:
        """sha256 of the float32 bytes and a few statistics of ``saliency``."""
        return map_summary(self.saliency)


@dataclass
class ImageEntry:
    """One image of the report.

    Attributes:
        name: how the image is called (file name).
        data: the image file's bytes as given (a PIL image is stored as PNG).
        crop: the RGB crop the model saw (overlays are drawn on it).
        prediction: top-k ``(index, label, probability)``, most likely first.
        maps: method name -> ``MapEntry``; ``errors``: method name -> message for maps that failed.
        image_hash: sha256 of the decoded pixels (``images.image_hash``); computed when empty.
    """

    name: str
    data: bytes
    crop: Image.Image
    prediction: list
    maps: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    image_hash: str = ""
    size: tuple = ()

    def __post_init__(self):
        self.file_sha256 = hashlib.sha256(self.data).hexdigest()
        if not self.image_hash or not self.size:
            decoded = load_image(self.data, name=self.name)
            self.image_hash = self.image_hash or image_hash(decoded)
            self.size = self.size or decoded.size


@dataclass
class Report:
    """Everything a report shows; ``to_html``, ``to_pdf`` and ``replay_record`` draw from it.

    Attributes:
        model: ``Classifier.describe()``; ``model_source`` how to load it again ("demo", a path).
        methods: method names in display order.
        images: the ``ImageEntry`` list; ``skipped``: (name, message) of images left out.
        sanity, stability, validation, reviews: optional results (see the module docstring).
        versions: software versions; ``environment``: CPU threads and device of the run.
        outline_share: each map is also shown as the outline of the regions holding this share
            of it (0 to 1), or None.
    """

    model: dict
    methods: list
    images: list
    model_source: str = "demo"
    title: str = DEFAULT_TITLE
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    versions: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    sanity: Any = None
    stability: Any = None
    validation: Any = None
    reviews: Any = None
    audit: dict | None = None
    comparison: Any = None
    qualification: dict | None = None  # QualificationRecord.record() in force, drawn as an appendix
    alpha: float = ALPHA
    clip_percentile: float = CLIP_PERCENTILE
    outline_share: float | None = None

    def __post_init__(self):
        if not self.versions:
            self.versions = recorded_versions()
        if not self.environment:
            import torch

            self.environment = {"threads": torch.get_num_threads(), "device": "cpu"}

    @property
    def large(self) -> bool:
        """More than ``LARGE_REPORT`` images: paged HTML with thumbnails, compact PDF."""
        return len(self.images) > LARGE_REPORT

    def map_count(self) -> int:
        return sum(len(i.maps) for i in self.images)

    def replay_record(self, embed_maps: bool | None = None, embed_input: str = "auto") -> dict:
        """The JSON block: everything needed to recompute and compare each map.

        Args:
            embed_maps: store each map (zlib-compressed float32, base64) so a replay can give the
                largest difference; None = only when there are at most ``EMBED_MAPS_UP_TO`` maps.
            embed_input: ``"original"`` (the image files as given), ``"crop"`` (PNG of the crop the
                model saw: exact input, smaller) or ``"auto"`` (originals up to
                ``EMBED_ORIGINALS_UP_TO`` bytes in all, else crops).
        Returns:
            dict, JSON-ready (see ``SCHEMA``).
        """
        if embed_input not in ("auto", "original", "crop"):
            raise ValueError(f"embed_input must be 'auto', 'original' or 'crop'; got {embed_input!r}.")
        if embed_maps is None:
            embed_maps = self.map_count() <= EMBED_MAPS_UP_TO
        if embed_input == "auto":
            embed_input = (
                "original" if sum(len(i.data) for i in self.images) <= EMBED_ORIGINALS_UP_TO else "crop"
            )
        images = []
        for item in self.images:
            if embed_input == "original":
                payload = {"kind": "original", "sha256": item.file_sha256, "base64": b64(item.data)}
            else:
                png = encode_image(item.crop, "PNG")
                payload = {"kind": "crop", "sha256": hashlib.sha256(png).hexdigest(), "base64": b64(png)}
            maps = []
            for m in item.maps.values():
                summary = m.summary()
                if embed_maps:
                    summary["data"] = b64(zlib.compress(as_float32(m.saliency).tobytes(), 6))
                maps.append(
                    {
                        "method": m.method,
                        "target": m.target,
                        "target_label": m.target_label,
                        "params": m.params,
                        "reduction": m.reduction,
                        "diagnostics": m.diagnostics,
                        "render": {"sign": m.sign, "colormap": m.colormap, "scale": m.scale},
                        "saliency": summary,
                    }
                )
            images.append(
                {
                    "name": item.name,
                    "file_sha256": item.file_sha256,
                    "image_hash": item.image_hash,
                    "size": list(item.size),
                    "input": payload,
                    "prediction": [
                        {"index": i, "label": name, "probability": p} for i, name, p in item.prediction
                    ],
                    "maps": maps,
                    "errors": item.errors,
                }
            )
        return {
            "schema": SCHEMA,
            "title": self.title,
            "created": self.created.isoformat(),
            "model": {
                "source": self.model_source,
                "fingerprint": self.model.get("fingerprint"),
                "card": self.model,
            },
            "methods": list(self.methods),
            "versions": self.versions,
            "environment": self.environment,
            "render": {
                "alpha": self.alpha,
                "clip_percentile": self.clip_percentile,
                **({"outline_share": self.outline_share} if self.outline_share is not None else {}),
            },
            "images": images,
            "skipped": [{"name": n, "message": msg} for n, msg in self.skipped],
            **({"qualification": replay_block(self.qualification)} if self.qualification else {}),
        }

    def to_html(
        self, page_size: int = PAGE_SIZE, embed_maps: bool | None = None, embed_input: str = "auto"
    ) -> str:
        """The self-contained HTML document (see the module docstring)."""
        return HtmlPage(self, page_size).document(self.replay_record(embed_maps, embed_input))

    def to_pdf(self) -> bytes:
        """The PDF document: summary, glossary, model and methods, one page per image (a compact
        table of rows for large reports), optional results, software and date."""
        return write_pdf(self)

    def write(self, html_path: str | os.PathLike, pdf_path: str | os.PathLike | None = None) -> dict:
        """Write the HTML (and the PDF); returns ``{"html": bytes written, "pdf": ...}``.

        Raises:
            ValueError: a file cannot be written (the folder is missing or not writable).
        """
        sizes = {}
        for kind, path, make in (
            ("html", html_path, lambda: self.to_html().encode("utf-8")),
            ("pdf", pdf_path, self.to_pdf),
        ):
            if path is None:
                continue
            data = make()
            try:
                Path(path).write_bytes(data)
            except OSError as err:
                raise ValueError(
                    f"Cannot write the {kind.upper()} report to {path}: {err.strerror or err}."
                ) from None
            sizes[kind] = len(data)
        return sizes


# ---- building -------------------------------------------------------------------------------

ExplainFn = Callable[[Any, Image.Image, str, "int | None", dict], Any]


def map_entry(
    method: str,
    saliency: np.ndarray,
    crop: Image.Image,
    *,
    target: int,
    target_label: str,
    params: dict | None = None,
    reduction: str | None = None,
    diagnostics: dict | None = None,
    sign: str | None = None,
    alpha: float = ALPHA,
    clip_percentile: float = CLIP_PERCENTILE,
    seconds: float = 0.0,
    outline_share: float | None = None,
    regions: np.ndarray | None = None,
) -> MapEntry:
    """Render ``saliency`` on ``crop`` for the report.

    Args:
        method: a name in ``METHODS``.
        saliency: (H, W) real values, the same size as ``crop``.
        sign: ``None`` -> "signed" for signed methods, else "absolute".
        outline_share: also draw the region view holding this share of the map (0 to 1), on
            ``regions`` (``regions.segment(crop)``, computed when not given).
    Returns:
        ``MapEntry`` with the overlay (inferno, or balance for signed maps: both colour-blind safe).

    Example:
        >>> e = map_entry("gradient", exp.saliency, exp.image, target=exp.target,
        ...               target_label=exp.target_label, params=exp.params)
    """
    meta = known_method(method)
    sign = sign or ("signed" if meta.signed else "absolute")
    colormap = DEFAULT_DIVERGING if sign == "signed" else DEFAULT_SEQUENTIAL
    # averaged maps drawn at their reproducible detail, as on the pages (render.shown_map); the
    # raw saliency is what the report stores, measures and replays
    r: Rendered = render(
        shown_map(saliency, method, diagnostics).saliency,
        crop,
        sign=sign,
        colormap=colormap,
        alpha=alpha,
        clip_percentile=clip_percentile,
        target_label=target_label,
        meaning=meta.meaning,
    )
    entry = MapEntry(
        method=method,
        saliency=as_float32(saliency),
        target=int(target),
        target_label=target_label,
        params=dict(params or {}),
        reduction=reduction or meta.reduction,
        overlay=r.overlay,
        legend=r.legend,
        scale=r.scale,
        ticks=list(r.colorbar_ticks),
        sign=r.sign,
        colormap=r.colormap,
        near_zero=r.near_zero,
        bar=colorbar_image(r, height=4, width=256),
        diagnostics=jsonable(diagnostics or {}),
        seconds=float(seconds),
    )
    if outline_share is not None:
        if regions is None:
            regions = segment(crop)
        o = render_outline(
            saliency,
            crop,
            regions,
            share=_share(outline_share),
            signed=meta.signed,
            target_label=target_label,
        )
        entry.outline, entry.outline_legend = o.overlay, o.legend
    return entry


def _share(value) -> float:
    """An outline share from a caller or a command line: a number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < float(value) < 1:
        raise ValueError(
            f"The outline share must be a number between 0 and 1 (e.g. 0.3 for 30 %); got {value!r}."
        )
    return float(value)


def _crash_words(crash: dict) -> str:
    return f"unexpected {crash['type']}: {' '.join(crash['message'].split())}"


def _image_entry(result, raw: bytes, methods: list[str], sign, outline_share) -> ImageEntry:
    """One image of the report from the pipeline's result: its maps (with region outlines when
    asked), or each method's error."""
    entry = ImageEntry(
        name=result.name,
        data=raw,
        crop=result.crop,
        prediction=result.prediction,
        image_hash=result.image_hash,
        size=result.image_size,
    )
    regions = segment(result.crop) if outline_share is not None and result.maps else None
    for m in methods:
        if m in result.maps:
            exp = result.maps[m]
            entry.maps[m] = map_entry(
                m,
                exp.saliency,
                exp.image,
                target=exp.target,
                target_label=exp.target_label,
                params=exp.params,
                reduction=exp.reduction,
                diagnostics=exp.diagnostics,
                sign=sign,
                seconds=exp.seconds,
                outline_share=outline_share,
                regions=regions,
            )
        elif m in result.errors:
            entry.errors[m] = result.errors[m]
        elif m in result.crashes:
            entry.errors[m] = _crash_words(result.crashes[m])
    return entry


def _chosen(images, methods) -> tuple[list, list[str]]:
    """The images and the methods (once each, known), or ValueError when either is empty."""
    images = list(images or [])
    methods = list(dict.fromkeys(methods or []))
    if not images:
        raise ValueError("No images were chosen for the report; choose at least one image.")
    if not methods:
        raise ValueError("No saliency method was chosen for the report; choose at least one method.")
    for m in methods:
        known_method(m)
    return images, methods


def _report_images(model, images, methods, params, target, explain_fn, progress, sign, outline_share):
    """(entries, skipped): each image's bytes read once (the report embeds them) and its maps
    computed by the pipeline; (name, reason) for each image left out."""
    from ..pipeline import explain_images

    entries, skipped, readable = [], [], []
    for item in images:  # the bytes, once: the report embeds them
        name, source = item if isinstance(item, tuple) else (str(item), item)
        try:
            readable.append((name, source_bytes(source, name)))
        except ValueError as err:
            skipped.append((name, one_line(err, name)))
    results = explain_images(
        model, readable, methods, params, target, explain_fn=explain_fn, progress=progress
    )
    for (_, raw), result in zip(readable, results):
        if result.ok:
            entries.append(_image_entry(result, raw, methods, sign, outline_share))
        else:
            skipped.append((result.name, result.failed or _crash_words(result.crashed)))
    return entries, skipped


def build_report(
    model,
    images: Sequence,
    methods: Sequence[str],
    *,
    params: dict | None = None,
    target: int | None = None,
    model_source: str = "demo",
    title: str = DEFAULT_TITLE,
    sign: str | None = None,
    sanity=None,
    stability=None,
    validation=None,
    reviews=None,
    audit: dict | None = None,
    comparison=None,
    progress: Callable[[int, int, str], None] | None = None,
    explain_fn: ExplainFn | None = None,
    outline_share: float | None = None,
    qualification: dict | None = None,
) -> Report:
    """Compute (or fetch) every map and collect a ``Report``.

    Args:
        model: a loaded ``Classifier``.
        images: paths, or ``(name, source)`` pairs where source is a path, bytes or PIL image.
        methods: names in ``METHODS``, in display order.
        params: method parameters (``samples``, ``noise``, ``seed``, ``steps``, ``baseline`` ...);
            each method gets the ones it takes.
        target: class index to explain in every image; None = each image's predicted class.
        model_source: how to load the model again for a replay ("demo" or a path).
        sign: "absolute" draws every map as magnitudes; None = signed methods drawn signed.
        sanity, stability, validation, reviews, comparison: optional results (module docstring).
        audit: ``store.AuditCheck.record()`` of the review database, stated with the reviews.
        progress: ``progress(done, total, label)`` after each map.
        explain_fn: ``(model, image, method, target, params, progress=, preview=) -> Explanation``;
            default ``saliency_core.explain`` (the app passes its cached version).
        outline_share: also show each map as the outline of the regions holding this share of
            it (0 to 1, e.g. 0.3), beside the overlay.
        qualification: ``QualificationRecord.record()`` of the record in force for ``model``, drawn
            as an appendix (its scorecard, rules and sign-off); ``replay`` checks its fingerprint.
    Returns:
        ``Report``. Images that cannot be read are listed in ``report.skipped``; a method that
        fails on an image is recorded in that image's ``errors`` and the rest goes on.
    Raises:
        ValueError: no image or no method was chosen, an unknown method, or no image could be read.

    Example:
        >>> rep = build_report(load_model("demo"), ["chelsea.png"], ["gradient"])
        >>> rep.images[0].prediction[0][1]
        'tiger cat'
    """
    images, methods = _chosen(images, methods)
    if outline_share is not None:
        outline_share = _share(outline_share)
    entries, skipped = _report_images(
        model, images, methods, params, target, explain_fn, progress, sign, outline_share
    )
    if not entries:
        raise ValueError(
            f"None of the {len(images)} image(s) could be read: " + "; ".join(msg for _, msg in skipped)
        )
    return Report(
        model=model.describe(),
        methods=methods,
        images=entries,
        model_source=str(model_source),
        title=title or DEFAULT_TITLE,
        skipped=skipped,
        sanity=sanity,
        stability=stability,
        validation=validation,
        reviews=reviews,
        audit=audit,
        comparison=comparison,
        environment=_environment(model),
        outline_share=outline_share,
        qualification=qualification,
    )


def _environment(model) -> dict:
    """The torch threads and the device the maps were computed with, as the report states them."""
    import torch

    from ..engine.devices import describe as describe_device

    return {"threads": torch.get_num_threads(), "device": describe_device(model.device)}
