"""Report builder: a document a regulator can read, and replay.

A ``Report`` holds everything shown: the images (the file bytes, the crop the model saw, the
top-5 prediction), one ``MapEntry`` per image and method (the saliency map, its parameters and
seed, the rendered overlay and legend), the model card (``Classifier.describe()``), software
versions, the date, and optional results computed elsewhere. It renders to

- **HTML** (``Report.to_html``): one self-contained file. Every picture is a ``data:`` URI,
  the CSS is inline, there is no script and no external address at all (a Content-Security-
  Policy forbids loading anything). It prints on A4 with page breaks. Reports of more than
  ``LARGE_REPORT`` images are paged (CSS ``:target``, no script) and show thumbnails, with the
  full maps, colour bars and legends inside an HTML ``<details>`` per image.
- **PDF** (``Report.to_pdf``), the same content, with fpdf2: pure Python with no system
  libraries (WeasyPrint needs Pango and Cairo, ReportLab's fast paths need C extensions), and
  kept up to date. Its built-in fonts cover Latin-1 only; other characters are replaced.

Both start with a plain-language summary and a glossary. The HTML embeds a JSON block,
``<script type="application/json" id="saliency-replay">``, with everything needed to
recompute each map: the model source and fingerprint, each image (its bytes, embedded, and
their sha256), method, parameters with seed, target class, the CPU thread count, and per map
the sha256 of its float32 bytes plus a few statistics (and the map itself, compressed, for up
to ``EMBED_MAPS_UP_TO`` maps, so a replay can state the largest difference). ``replay``
recomputes every map from that block.

Optional sections take plain data, so this module imports nothing from ``metrics``,
``validate`` or ``store``. Each is a list of flat dicts (one row each), a pandas DataFrame, a
dict of dicts (key -> row, the key becomes the first column), or objects with ``record()`` or
dataclasses; nested dicts are flattened one level (``mean.spearman_abs``). Expected columns:

- ``sanity``: ``method``, ``verdict`` ("passes"/"fails") or ``passed`` (bool),
  ``final_similarity``, ``threshold``; optional ``image_name``, ``mode``, ``blocks``,
  ``total_blocks`` (``SanityVerdict.record()`` fits).
- ``stability``: ``image``, ``method``, ``verdict``, optional ``reason`` and scores
  (``mean.spearman_abs``, ``mean.top_k_overlap`` ...).
- ``validation``: ``method`` and one column per metric (pointing game, IoU ...).
- ``reviews``: ``item_name``, ``reviewer``, ``decision``, ``decided_at``, optional ``note``
  (``store.Decision`` fits).

Example:
    >>> model = load_model("demo")
    >>> rep = build_report(model, ["chelsea.png", "coffee.png"], ["gradient", "gradcam"])
    >>> rep.write("report.html", pdf_path="report.pdf")
    >>> [r.status for r in replay(read_replay("report.html"))]
    ['match', 'match', 'match', 'match']
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import io
import json
import math
import os
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from .images import image_hash, load_image
from .methods import METHODS
from .render import DEFAULT_DIVERGING, DEFAULT_SEQUENTIAL, Rendered, colorbar_image, render

SCHEMA = "saliency-lens-report/1"
REPLAY_ID = "saliency-replay"
DEFAULT_TITLE = "Saliency report"
LARGE_REPORT = 20        # more images than this: paged HTML with thumbnails, compact PDF
PAGE_SIZE = 25           # images per HTML page of a large report
PDF_ROWS_PER_PAGE = 8    # images per PDF page of a large report
EMBED_MAPS_UP_TO = 24    # maps stored in the replay block (compressed float32) up to this count
EMBED_ORIGINALS_UP_TO = 16 * 2**20  # image files (bytes, all together) embedded as given up to this
THUMB = 112              # thumbnail side in pixels
TOP_SHARE = 0.10         # "strongest pixels" in the summary: the top 10 %
ALPHA = 0.5
CLIP_PERCENTILE = 99.0

# ---- words for readers who do not write code --------------------------------------------------

GLOSSARY: dict[str, tuple[str, str]] = {
    "saliency-map": ("Saliency map", "A picture of how much each pixel mattered to the model's score, "
                                     "according to one method."),
    "overlay": ("Overlay", "The saliency map's colours laid half-transparently over the photo."),
    "crop": ("Crop", "The square part of the photo the model actually looks at, after resizing."),
    "prediction": ("Prediction", "The class (kind of object) the model ranks first for an image."),
    "confidence": ("Confidence", "The model's own probability for a class, from 0 to 100 %; a high value "
                                 "is not a guarantee that it is right."),
    "score": ("Score", "The model's raw number for a class before it becomes a probability; the maps "
                       "explain this number."),
    "target": ("Explained class", "The class whose score a map explains (here the predicted one unless "
                                  "stated)."),
    "colour-bar": ("Colour bar", "The strip under a map that shows which colour stands for which value."),
    "clipping": ("Clipping at the 99th percentile", "The top 1 % of values all get the brightest colour, so "
                                                    "a few extreme pixels do not make the rest look dark."),
    "method": ("Method", "One way of computing a saliency map; different methods can disagree."),
    "parameter": ("Parameter", "A setting of a method, recorded so the map can be computed again."),
    "seed": ("Seed", "A number that fixes the random noise some methods add: the same seed gives the "
                     "same map."),
    "fingerprint": ("Fingerprint (sha256)", "A 64-character code computed from a file; any change to the "
                                            "file changes it, so it identifies the exact model weights or "
                                            "image."),
    "sanity-check": ("Sanity check (model randomisation)", "The model's weights are replaced by random ones; "
                                                           "a map that still looks the same cannot be "
                                                           "explaining what the model learned."),
    "rank-correlation": ("Rank correlation (Spearman)", "How alike two maps are in the order of their "
                                                        "pixels, from -1 (opposite) to 1 (same order); "
                                                        "0 = unrelated."),
    "stability": ("Stability", "Whether a map stays much the same when the photo is changed slightly "
                               "(noise, brightness, a small shift)."),
    "validation": ("Validation metrics", "How well maps agree with regions that experts marked on the "
                                         "images."),
    "strongest-pixels": ("Strongest pixels", f"The {100 * TOP_SHARE:.0f} % of pixels with the largest map values."),
    "replay": ("Replay", "Recomputing every map from the data stored in this report, to show that the "
                         "same inputs give the same numbers."),
}

PARAM_HELP = {
    "samples": "number of noisy copies of the image that are averaged",
    "noise": "strength of the added noise, as a fraction of the image's range of pixel values",
    "seed": "fixes the random noise, so the same seed gives the same map",
    "base": "the method whose noisy maps are averaged",
    "variant": "how the noisy maps are combined (mean, mean of squares or variance)",
    "steps": "number of points on the path from the reference image to the photo",
    "baseline": "the plain reference image the path starts from",
    "rule": "how the points on the path are placed and weighted",
    "layer": "the network layer whose features the map is built from",
    "window": "side of the square hidden at a time, in pixels",
    "stride": "how far the hidden square moves between tries, in pixels",
    "fill": "what the hidden pixels are replaced with",
    "masks": "number of random masks averaged",
    "cell": "side of one cell of a random mask, in pixels",
    "keep": "chance that a mask cell shows the image",
}

GENERAL_LIMITS = ("Every saliency map is an approximation computed after the fact: it shows where the "
                  "model's score is sensitive according to one method, not the model's reasoning itself. "
                  "Different methods can disagree, a bright region is evidence and not proof, and a map "
                  "says nothing about whether the prediction is right.")

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
    """

    model: dict
    methods: list
    images: list
    model_source: str = "demo"
    title: str = DEFAULT_TITLE
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    versions: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    sanity: Any = None
    stability: Any = None
    validation: Any = None
    reviews: Any = None
    alpha: float = ALPHA
    clip_percentile: float = CLIP_PERCENTILE

    def __post_init__(self):
        if not self.versions:
            self.versions = _versions()
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
            embed_input = "original" if sum(len(i.data) for i in self.images) <= EMBED_ORIGINALS_UP_TO else "crop"
        images = []
        for item in self.images:
            if embed_input == "original":
                payload = {"kind": "original", "sha256": item.file_sha256, "base64": _b64(item.data)}
            else:
                png = _encode(item.crop, "PNG")
                payload = {"kind": "crop", "sha256": hashlib.sha256(png).hexdigest(), "base64": _b64(png)}
            maps = []
            for m in item.maps.values():
                summary = m.summary()
                if embed_maps:
                    summary["data"] = _b64(zlib.compress(_f32(m.saliency).tobytes(), 6))
                maps.append({"method": m.method, "target": m.target, "target_label": m.target_label,
                             "params": m.params, "reduction": m.reduction, "diagnostics": m.diagnostics,
                             "render": {"sign": m.sign, "colormap": m.colormap, "scale": m.scale},
                             "saliency": summary})
            images.append({"name": item.name, "file_sha256": item.file_sha256, "image_hash": item.image_hash,
                           "size": list(item.size), "input": payload,
                           "prediction": [{"index": i, "label": l, "probability": p} for i, l, p in item.prediction],
                           "maps": maps, "errors": item.errors})
        return {"schema": SCHEMA, "title": self.title, "created": self.created.isoformat(),
                "model": {"source": self.model_source, "fingerprint": self.model.get("fingerprint"),
                          "card": self.model},
                "methods": list(self.methods), "versions": self.versions, "environment": self.environment,
                "render": {"alpha": self.alpha, "clip_percentile": self.clip_percentile},
                "images": images, "skipped": [{"name": n, "message": msg} for n, msg in self.skipped]}

    def to_html(self, page_size: int = PAGE_SIZE, embed_maps: bool | None = None,
                embed_input: str = "auto") -> str:
        """The self-contained HTML document (see the module docstring)."""
        return _Html(self, page_size).document(self.replay_record(embed_maps, embed_input))

    def to_pdf(self) -> bytes:
        """The PDF document: summary, glossary, model and methods, one page per image (a compact
        table of rows for large reports), optional results, software and date."""
        return _pdf(self)

    def write(self, html_path: str | os.PathLike, pdf_path: str | os.PathLike | None = None) -> dict:
        """Write the HTML (and the PDF); returns ``{"html": bytes written, "pdf": ...}``.

        Raises:
            ValueError: a file cannot be written (the folder is missing or not writable).
        """
        sizes = {}
        for kind, path, make in (("html", html_path, lambda: self.to_html().encode("utf-8")),
                                 ("pdf", pdf_path, self.to_pdf)):
            if path is None:
                continue
            data = make()
            try:
                Path(path).write_bytes(data)
            except OSError as err:
                raise ValueError(f"Cannot write the {kind.upper()} report to {path}: {err.strerror or err}.") from None
            sizes[kind] = len(data)
        return sizes


# ---- building -------------------------------------------------------------------------------

ExplainFn = Callable[[Any, Image.Image, str, "int | None", dict], Any]


def map_entry(method: str, saliency: np.ndarray, crop: Image.Image, *, target: int, target_label: str,
              params: dict | None = None, reduction: str | None = None, diagnostics: dict | None = None,
              sign: str | None = None, alpha: float = ALPHA, clip_percentile: float = CLIP_PERCENTILE,
              seconds: float = 0.0) -> MapEntry:
    """Render ``saliency`` on ``crop`` for the report.

    Args:
        method: a name in ``METHODS``.
        saliency: (H, W) real values, the same size as ``crop``.
        sign: ``None`` -> "signed" for signed methods, else "absolute".
    Returns:
        ``MapEntry`` with the overlay (inferno, or balance for signed maps: both colour-blind safe).

    Example:
        >>> e = map_entry("gradient", exp.saliency, exp.image, target=exp.target,
        ...               target_label=exp.target_label, params=exp.params)
    """
    meta = _method(method)
    sign = sign or ("signed" if meta.signed else "absolute")
    colormap = DEFAULT_DIVERGING if sign == "signed" else DEFAULT_SEQUENTIAL
    r: Rendered = render(saliency, crop, sign=sign, colormap=colormap, alpha=alpha,
                         clip_percentile=clip_percentile, target_label=target_label, meaning=meta.meaning)
    return MapEntry(method=method, saliency=_f32(saliency), target=int(target), target_label=target_label,
                    params=dict(params or {}), reduction=reduction or meta.reduction, overlay=r.overlay,
                    legend=r.legend, scale=r.scale, ticks=list(r.colorbar_ticks), sign=r.sign,
                    colormap=r.colormap, near_zero=r.near_zero,
                    bar=colorbar_image(r, height=4, width=256), diagnostics=_plain(diagnostics or {}),
                    seconds=float(seconds))


def build_report(model, images: Sequence, methods: Sequence[str], *, params: dict | None = None,
                 target: int | None = None, model_source: str = "demo", title: str = DEFAULT_TITLE,
                 sign: str | None = None, sanity=None, stability=None, validation=None, reviews=None,
                 progress: Callable[[int, int, str], None] | None = None,
                 explain_fn: ExplainFn | None = None) -> Report:
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
        sanity, stability, validation, reviews: optional results (module docstring).
        progress: ``progress(done, total, label)`` after each map.
        explain_fn: ``(model, image, method, target, params) -> Explanation``; default
            ``saliency_core.explain`` (the app passes its cached version).
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
    from .explain import available_methods, explain

    images = list(images or [])
    methods = list(dict.fromkeys(methods or []))
    if not images:
        raise ValueError("No images were chosen for the report; choose at least one image.")
    if not methods:
        raise ValueError("No saliency method was chosen for the report; choose at least one method.")
    for m in methods:
        _method(m)
    params = dict(params or {})
    if explain_fn is None:
        def explain_fn(model_, image, method, target_, used):
            return explain(model_, image, method=method, target=target_, **used)
    usable = available_methods(model)
    entries, skipped = [], []
    total, done = len(images) * len(methods), 0
    for item in images:
        name, source = (item if isinstance(item, tuple) else (str(item), item))
        try:
            data = _source_bytes(source, name)
            image = load_image(data, name=name)
            crop = model.crop(image)
            prediction = model.predict(image, k=5)   # preprocess = the same crop, once
        except ValueError as err:
            skipped.append((name, _one_line(err, name)))
            done += len(methods)
            if progress:
                progress(done, total, f"{name}: skipped")
            continue
        entry = ImageEntry(name=name, data=data, crop=crop, prediction=prediction,
                           image_hash=image_hash(image), size=image.size)
        for m in methods:
            try:
                if usable.get(m):
                    raise ValueError(f"{METHODS[m].label} cannot run on this model: {usable[m]}.")
                used = {k: v for k, v in params.items() if k in METHODS[m].defaults}
                exp = explain_fn(model, image, m, target, used)
                entry.maps[m] = map_entry(m, exp.saliency, exp.image, target=exp.target,
                                          target_label=exp.target_label, params=exp.params,
                                          reduction=exp.reduction, diagnostics=exp.diagnostics, sign=sign,
                                          seconds=exp.seconds)
            except ValueError as err:
                entry.errors[m] = " ".join(str(err).split())
            except Exception as err:  # noqa: BLE001  one failing map must not stop the report
                entry.errors[m] = f"unexpected {type(err).__name__}: {' '.join(str(err).split())}"
            done += 1
            if progress:
                progress(done, total, f"{name} · {METHODS[m].label}")
        entries.append(entry)
    if not entries:
        raise ValueError(f"None of the {len(images)} image(s) could be read: "
                         + "; ".join(msg for _, msg in skipped))
    import torch
    from .devices import describe as describe_device
    device = describe_device(model.device)
    return Report(model=model.describe(), methods=methods, images=entries, model_source=str(model_source),
                  title=title or DEFAULT_TITLE, skipped=skipped, sanity=sanity, stability=stability,
                  validation=validation, reviews=reviews,
                  environment={"threads": torch.get_num_threads(), "device": device})


# ---- small helpers ---------------------------------------------------------------------------

def _method(name: str):
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; available: {', '.join(METHODS)}.")
    return METHODS[name]


def _versions() -> dict:
    import PIL
    from .explain import versions
    out = dict(versions())
    out["pillow"] = PIL.__version__
    try:
        import fpdf
        out["fpdf2"] = fpdf.__version__
    except ImportError:
        pass
    return out


def _one_line(err: BaseException, name: str) -> str:
    text = " ".join(str(err).split())
    return text if text.startswith(name) else f"{name}: {text}"


def _source_bytes(source, name: str) -> bytes:
    """The image as file bytes: read a path, keep bytes, store a PIL image as PNG."""
    if isinstance(source, Image.Image):
        return _encode(source.convert("RGB"), "PNG")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            raise ValueError(f"{name}: this is a folder, not an image file.")
        if not path.is_file():
            raise ValueError(f"{name}: no such file (was it moved or deleted?).")
        try:
            return path.read_bytes()
        except OSError as err:
            raise ValueError(f"{name}: cannot read the file ({err.strerror or err}).") from None
    if hasattr(source, "read"):
        return source.read()
    raise ValueError(f"{name}: expected a file path, bytes or a PIL image; got {type(source).__name__}.")


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype="<f4"))


def map_summary(saliency: np.ndarray) -> dict:
    """sha256 of the map's float32 (little-endian, C order) bytes, its shape and a few statistics.

    Example:
        >>> summary = map_summary(exp.saliency)
        >>> len(summary["sha256"]), summary["shape"]
        (64, [224, 224])
    """
    s = _f32(saliency)
    finite = s[np.isfinite(s)]
    stat = (lambda f: float(f(finite)) if finite.size else float("nan"))
    return {"sha256": hashlib.sha256(s.tobytes()).hexdigest(), "shape": list(s.shape), "dtype": "float32",
            "min": stat(np.min), "max": stat(np.max), "mean": stat(np.mean),
            "abs_sum": stat(lambda a: np.abs(a, dtype=np.float64).sum())}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _encode(image, fmt: str = "PNG", quality: int = 85) -> bytes:
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image))
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
    else:
        image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _data_uri(image, fmt: str = "PNG") -> str:
    mime = "image/jpeg" if fmt == "JPEG" else "image/png"
    return f"data:{mime};base64,{_b64(_encode(image, fmt))}"


def _thumb(image, side: int = THUMB) -> Image.Image:
    image = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    if max(image.size) <= side:
        return image
    out = image.copy()
    out.thumbnail((side, side), Image.Resampling.LANCZOS)
    return out


def _plain(value):
    """JSON-ready copy: numpy scalars/arrays and tensors to Python, NaN kept as None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray) or hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _json(record: dict) -> str:
    """JSON safe inside <script>: '</' and '<!--' cannot end or confuse the element."""
    text = json.dumps(_plain(record), indent=1, ensure_ascii=False, allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\u0021--")


def table_rows(data) -> tuple[list[str], list[dict]]:
    """Plain rows from what optional sections accept (module docstring).

    Returns:
        (columns in first-seen order, rows as dicts of plain values).

    Example:
        >>> table_rows([{"method": "gradient", "verdict": "passes"}])
        (['method', 'verdict'], [{'method': 'gradient', 'verdict': 'passes'}])
    """
    if data is None:
        return [], []
    if hasattr(data, "to_dict") and hasattr(data, "columns"):      # pandas DataFrame
        rows = data.to_dict(orient="records")
    elif isinstance(data, dict):
        if all(isinstance(v, dict) or hasattr(v, "record") or dataclasses.is_dataclass(v) for v in data.values()):
            rows = [{"key": k, **_row(v)} for k, v in data.items()]
        else:
            rows = [data]
    elif isinstance(data, (list, tuple)):
        rows = list(data)
    else:
        raise ValueError(f"Expected a list of rows (dicts), a DataFrame or a dict of rows; "
                         f"got {type(data).__name__}.")
    flat = [_flatten(_row(r)) for r in rows]
    columns = list(dict.fromkeys(k for r in flat for k in r))
    return columns, flat


def _row(value) -> dict:
    if isinstance(value, dict):
        return value
    if hasattr(value, "record") and callable(value.record):
        return value.record()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise ValueError(f"Each row must be a dict, a dataclass or have record(); got {type(value).__name__}.")


def _flatten(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                out[f"{k}.{k2}"] = _plain(v2) if not isinstance(v2, (dict, list)) else json.dumps(_plain(v2))
        elif isinstance(v, (list, tuple)):
            out[str(k)] = json.dumps(_plain(v))
        else:
            out[str(k)] = _plain(v)
    return out


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _percent(p: float) -> str:
    return f"{100 * p:.1f} %"


def _confidence_words(p: float) -> str:
    if p >= 0.9:
        return "very confident"
    if p >= 0.6:
        return "fairly confident"
    if p >= 0.3:
        return "unsure"
    return "very unsure"


# ---- what the maps suggest, in words ----------------------------------------------------------

_REGIONS = {(0, 0): "top left", (0, 1): "top centre", (0, 2): "top right", (1, 0): "left side",
            (1, 1): "centre", (1, 2): "right side", (2, 0): "bottom left", (2, 1): "bottom centre",
            (2, 2): "bottom right"}


def _top_mask(s: np.ndarray, share: float = TOP_SHARE) -> np.ndarray:
    a = np.abs(_f32(s)).ravel()
    k = max(1, int(round(share * a.size)))
    mask = np.zeros(a.size, dtype=bool)
    mask[np.argpartition(a, a.size - k)[a.size - k:]] = True
    return mask.reshape(s.shape)


def describe_map(m: MapEntry) -> dict:
    """Where the map is strongest and how concentrated it is.

    Returns:
        ``{"region": "centre" ..., "top_share": share of the total |value| held by the strongest
        10 % of pixels, "sentence": plain words}``.
    """
    s = np.abs(_f32(m.saliency))
    label = METHODS[m.method].label if m.method in METHODS else m.method
    total = float(s.sum(dtype=np.float64))
    if m.near_zero or total == 0:
        return {"region": None, "top_share": None,
                "sentence": f"{label}: the map is zero or negligible everywhere, so it points nowhere."}
    mask = _top_mask(s)
    share = float(s[mask].sum(dtype=np.float64) / total)
    rows, cols = np.nonzero(mask)
    weights = s[mask]
    r = float((rows * weights).sum() / weights.sum()) / max(1, s.shape[0])
    c = float((cols * weights).sum() / weights.sum()) / max(1, s.shape[1])
    region = _REGIONS[(min(2, int(r * 3)), min(2, int(c * 3)))]
    how = "concentrated" if share >= 0.5 else "spread out"
    return {"region": region, "top_share": share,
            "sentence": (f"{label}: strongest around the {region} of the crop; its strongest 10 % of pixels "
                         f"hold {100 * share:.0f} % of the map's total ({how}).")}


def agreement(a: MapEntry, b: MapEntry) -> float:
    """Share of the strongest 10 % pixels two maps have in common (0 to 1; chance is about 0.1)."""
    if a.saliency.shape != b.saliency.shape:
        return float("nan")
    ma, mb = _top_mask(a.saliency), _top_mask(b.saliency)
    return float((ma & mb).sum() / max(1, ma.sum()))


def _agreement_words(share: float) -> str:
    if share >= 0.5:
        return "they largely agree"
    if share >= 0.2:
        return "partial agreement"
    return "they point at different pixels"


def _verdict_rows(report: Report) -> list[dict]:
    return table_rows(report.sanity)[1] if report.sanity is not None else []


def _label(method) -> str:
    return METHODS[method].label if method in METHODS else str(method)


def _passed(row: dict) -> bool | None:
    if "passed" in row and isinstance(row["passed"], bool):
        return row["passed"]
    v = str(row.get("verdict", "")).lower()
    if v.startswith("pass"):
        return True
    if v.startswith("fail"):
        return False
    return None


def summary_paragraphs(report: Report) -> list[str]:
    """The plain-language summary: what the model decided, what the maps suggest, how far to trust them."""
    out = []
    n, labels = len(report.images), [METHODS[m].label for m in report.methods]
    out.append(f"This report explains the decisions of the image classifier \u201c{report.model.get('name')}\u201d "
               f"on {n} image{'s' if n != 1 else ''}, with {len(labels)} saliency method"
               f"{'s' if len(labels) != 1 else ''} ({', '.join(labels)}). A saliency map colours the pixels "
               "that most affected the model's score for its answer.")
    if report.large:
        counts: dict[str, int] = {}
        for item in report.images:
            counts[item.prediction[0][1]] = counts.get(item.prediction[0][1], 0) + 1
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:5]
        unsure = sum(1 for i in report.images if i.prediction[0][2] < 0.6)
        out.append("Most frequent answers: " + ", ".join(f"{k} ({v} images)" for k, v in top)
                   + f". The model was unsure (below 60 % confidence) on {unsure} of the {n} images; "
                     "those deserve a closer look.")
    else:
        for item in report.images:
            (_, label, p), rest = item.prediction[0], item.prediction[1:]
            text = (f"{item.name}: the model answers \u201c{label}\u201d with {_percent(p)} confidence "
                    f"({_confidence_words(p)})")
            if rest:
                text += f"; next is \u201c{rest[0][1]}\u201d ({_percent(rest[0][2])})"
            text += ". " + " ".join(describe_map(m)["sentence"] for m in item.maps.values())
            maps = list(item.maps.values())
            if len(maps) >= 2:
                pairs = [(a, b, agreement(a, b)) for i, a in enumerate(maps) for b in maps[i + 1:]][:3]
                text += " " + " ".join(
                    f"{METHODS[a.method].label} and {METHODS[b.method].label} share {100 * v:.0f} % of their strongest "
                    f"pixels ({_agreement_words(v)}; chance is about 10 %)." for a, b, v in pairs if math.isfinite(v))
            if item.errors:
                text += f" {len(item.errors)} map(s) could not be computed (see below)."
            out.append(text)
    trust = [GENERAL_LIMITS]
    cautions = [f"{METHODS[m].label}: {METHODS[m].caution}" for m in report.methods if METHODS[m].caution]
    if cautions:
        trust.append("Known limits of the methods used: " + " ".join(cautions))
    rows = _verdict_rows(report)
    if rows:
        failed = sorted({_label(r.get("method")) for r in rows if _passed(r) is False})
        passed = sorted({_label(r.get("method")) for r in rows if _passed(r) is True} - set(failed))
        trust.append("In the sanity check supplied with this report, "
                     + (f"{', '.join(passed)} passed" if passed else "no method passed")
                     + (f" and {', '.join(failed)} failed: maps of a failing method should not be trusted "
                        "as explanations" if failed else "") + ".")
    else:
        trust.append("No sanity-check results were supplied with this report; the literature reports that "
                     "gradient and Grad-CAM pass the randomisation check and guided backprop fails it.")
    if report.stability is not None:
        rows = table_rows(report.stability)[1]
        unstable = [r for r in rows if str(r.get("verdict", "")).lower() not in ("stable", "")]
        trust.append(f"Stability was checked for {len(rows)} image/method pair(s); {len(unstable)} were "
                     "not stable (see the stability section).")
    out.append("How far to trust the maps: " + " ".join(trust))
    return out


# ---- HTML ---------------------------------------------------------------------------------------

def _e(text) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
:root { --ink:#1d1d1f; --muted:#555; --line:#d0d0d0; --soft:#f4f4f6; --warn:#8a4b00; --warnbg:#fff4e5; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: var(--ink);
       max-width: 1100px; margin: 0 auto; padding: 24px; line-height: 1.45; font-size: 15px; }
h1 { font-size: 1.8em; margin: 0 0 .2em; } h2 { border-bottom: 2px solid var(--line); padding-bottom: .2em; margin-top: 2em; }
h3 { margin: 1.2em 0 .4em; } .muted { color: var(--muted); } code, .mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .9em; word-break: break-all; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .92em; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); }
.summary p { margin: .5em 0; } .summary { background: var(--soft); padding: 12px 18px; border-radius: 8px; }
.caution { background: var(--warnbg); color: var(--warn); border-left: 4px solid var(--warn); padding: 6px 10px; margin: .4em 0; }
dl.glossary dt { font-weight: 600; margin-top: .4em; } dl.glossary dd { margin: 0 0 0 1.2em; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; margin: 14px 0; }
.row { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
figure { margin: 0; } figure.map, figure.crop { width: 232px; }
figure img { width: 100%; height: auto; image-rendering: auto; border: 1px solid var(--line); display: block; }
figcaption { font-size: .85em; color: var(--muted); margin-top: 4px; }
.bar { height: 12px; width: 100%; margin-top: 4px; background-size: 100% 100%; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
.ticks { position: relative; height: 1.3em; font-size: .78em; }
.ticks span { position: absolute; transform: translateX(-50%); white-space: nowrap; }
.ticks span.first { transform: none; } .ticks span.last { transform: translateX(-100%); }
.pred td.p { text-align: right; font-variant-numeric: tabular-nums; }
.pbar { display: inline-block; height: .7em; background: #7570b3; vertical-align: middle; }
.thumbs { display: flex; gap: 6px; align-items: flex-start; } .thumbs figure { width: 96px; }
.thumbs figcaption { font-size: .72em; }
nav.pager a { display: inline-block; padding: 2px 8px; margin: 2px; border: 1px solid var(--line); border-radius: 4px; text-decoration: none; }
.pages > .page { display: none; }
.pages > .page:target, .pages > .page:first-child { display: block; }
.pages:has(> .page:target) > .page:first-child:not(:target) { display: none; }
details summary { cursor: pointer; color: #3553a0; margin: .4em 0; }
.err { color: #a00; }
@page { size: A4; margin: 14mm; }
@media print {
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  body { max-width: none; padding: 0; font-size: 10pt; }
  h2 { break-before: page; } h2.first { break-before: avoid; }
  .card, figure, tr, .caution { break-inside: avoid; }
  figure.map, figure.crop { width: 52mm; } .row { gap: 3mm; } .card { padding: 3mm; } figcaption { font-size: 7.5pt; }
  nav.pager, .screen-only { display: none; }
  .pages > .page, .pages > .page:first-child:not(:target) { display: block !important; }
  a { color: inherit; text-decoration: none; }
}
"""


class _Html:
    def __init__(self, report: Report, page_size: int):
        self.r = report
        self.page_size = max(1, int(page_size))
        self.fmt = "JPEG" if report.large else "PNG"   # large reports: JPEG keeps the file usable
        self.figure = 0

    def document(self, record: dict) -> str:
        r = self.r
        bars = {m.colormap: m.bar for i in r.images for m in i.maps.values()}   # one per colormap
        css = _CSS + "".join(
            f".cb-{c} {{ background-image: url({_data_uri(bar)}); }}\n" for c, bar in sorted(bars.items()))
        csp = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'none'; "
               "base-uri 'none'; form-action 'none'")
        parts = [
            "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta name="generator" content="saliency_core {_e(r.versions.get("saliency_core", ""))}">',
            f"<title>{_e(r.title)}</title>", f"<style>{css}</style>", "</head>", "<body>",
            self.header(), self.summary(), self.glossary(), self.model(), self.methods(), self.images(),
            self.optional(), self.software(),
            f'<script type="application/json" id="{REPLAY_ID}">{_json(record)}</script>',
            "</body>", "</html>",
        ]
        return "\n".join(p for p in parts if p)

    # -- sections
    def header(self) -> str:
        r = self.r
        toc = [("summary", "Summary"), ("glossary", "Words used"), ("model", "The model"),
               ("methods", "Methods"), ("images", "Images")]
        toc += [(k, t) for k, t in (("sanity", "Sanity check"), ("stability", "Stability"),
                                    ("validation", "Validation"), ("reviews", "Review decisions"))
                if getattr(r, k) is not None]
        toc.append(("software", "Software and replay"))
        return (f"<header><h1>{_e(r.title)}</h1>"
                f'<p class="muted">Created {_e(_date(r.created))} · model {_e(r.model.get("name"))} · '
                f"{len(r.images)} image(s) × {len(r.methods)} method(s)</p>"
                '<nav class="screen-only">' + " · ".join(f'<a href="#{k}">{_e(t)}</a>' for k, t in toc)
                + "</nav></header>")

    def summary(self) -> str:
        paras = summary_paragraphs(self.r)
        return ('<section id="summary"><h2 class="first">Summary in plain words</h2><div class="summary">'
                + "".join(f"<p>{_e(p)}</p>" for p in paras)
                + '<p class="muted">Terms are explained under <a href="#glossary">Words used</a>.</p></div></section>')

    def glossary(self) -> str:
        items = "".join(f'<dt id="g-{k}">{_e(t)}</dt><dd>{_e(d)}</dd>' for k, (t, d) in GLOSSARY.items())
        return ('<section id="glossary"><h2>Words used in this report</h2>'
                f'<dl class="glossary">{items}</dl></section>')

    def model(self) -> str:
        d = self.r.model
        rows = [("Name", d.get("name")), ("Fingerprint (sha256 of the weights)", d.get("fingerprint")),
                ("Classes", d.get("classes")), ("Input", f'{d.get("input_size")} × {d.get("input_size")} pixels'),
                ("Preprocessing", f'resize the short side to {d.get("resize")} px ({d.get("interpolation")}), '
                                  f'{d.get("crop")} crop of {d.get("input_size")} px, normalise with mean '
                                  f'{_nums(d.get("mean"))} and standard deviation {_nums(d.get("std"))}'),
                ("Grad-CAM layer", d.get("gradcam_layer") or "none"),
                ("Loaded from", self.r.model_source)]
        card = d.get("card") or {}
        for k, v in card.items():
            if k == "digest" or (isinstance(v, (dict, list)) and len(str(v)) > 200):
                continue
            rows.append((f"Card: {k}", v))
        body = "".join(f"<tr><th>{_e(k)}</th><td>{f'<code>{_e(v)}</code>' if 'sha256' in k else _e(v)}</td></tr>"
                       for k, v in rows)
        return ('<section id="model"><h2>The model</h2>'
                '<p>The model card: what was explained and how images were prepared. The '
                '<a href="#g-fingerprint">fingerprint</a> identifies the exact weights.</p>'
                f"<table>{body}</table></section>")

    def methods(self) -> str:
        out = ['<section id="methods"><h2>Methods, parameters and known limits</h2>',
               f'<p class="caution">{_e(GENERAL_LIMITS)}</p>']
        for m in self.r.methods:
            out.append(_method_html(m, self.r))
        out.append("</section>")
        return "".join(out)

    def images(self) -> str:
        r = self.r
        head = ('<section id="images"><h2>Images, predictions and maps</h2>'
                '<p>Each <a href="#g-overlay">overlay</a> is drawn on the <a href="#g-crop">crop</a> the model '
                'saw. Under each map a <a href="#g-colour-bar">colour bar</a> gives the values; colours are '
                'perceptually uniform and readable with colour-vision deficiencies (inferno; blue-grey-red for '
                'signed maps). Values are <a href="#g-clipping">clipped at the 99th percentile</a>.</p>')
        skipped = ""
        if r.skipped:
            skipped = ('<div class="caution"><b>Images left out</b> (they could not be read):<ul>'
                       + "".join(f"<li>{_e(msg)}</li>" for _, msg in r.skipped) + "</ul></div>")
        if not r.large:
            cards = "".join(self.image_card(i, item) for i, item in enumerate(r.images, 1))
            return head + skipped + cards + "</section>"
        pages = [r.images[k:k + self.page_size] for k in range(0, len(r.images), self.page_size)]
        nav = ('<nav class="pager">Pages: ' + "".join(
            f'<a href="#page-{p}">{p}</a>' for p in range(1, len(pages) + 1)) + "</nav>")
        note = (f'<p class="muted screen-only">{len(r.images)} images on {len(pages)} pages of {self.page_size}. '
                "Each row shows thumbnails; open <i>Full-size maps</i> for the maps with colour bars and "
                "legends. Pictures in this large report are stored as JPEG to keep the file small; the replay "
                "data at the end is exact. Printing prints the thumbnails.</p>")
        body = ['<div class="pages">']
        for p, chunk in enumerate(pages, 1):
            first = (p - 1) * self.page_size + 1
            body.append(f'<section class="page" id="page-{p}"><h3>Page {p} of {len(pages)}: images {first}'
                        f"\u2013{first + len(chunk) - 1}</h3>")
            body += [self.image_row(first + j, item) for j, item in enumerate(chunk)]
            body.append("</section>")
        body.append("</div>")
        return head + skipped + note + nav + "".join(body) + nav + "</section>"

    def optional(self) -> str:
        r, out = self.r, []
        specs = (("sanity", "Sanity check: model randomisation",
                  "Each method's maps were computed again after the model's weights were replaced, layer by "
                  "layer, with random ones (Adebayo et al. 2018). A method <b>passes</b> when its map then "
                  "changes (low <a href=\"#g-rank-correlation\">rank correlation</a> with the original); a method "
                  "that <b>fails</b> shows the image more than the model."),
                 ("stability", "Stability",
                  "Maps of slightly changed copies of each image (noise, brightness, small shifts) compared with "
                  "the original's. A stable explanation changes little; a fragile one changes a lot although "
                  "the prediction did not."),
                 ("validation", "Validation against expert annotations",
                  "How well the maps agree with regions experts marked on the images (higher is better unless "
                  "the column says otherwise)."),
                 ("reviews", "Review decisions",
                  "Accept / reject decisions recorded by reviewers, with who decided and when (times in UTC)."))
        for key, title, text in specs:
            data = getattr(r, key)
            if data is None:
                continue
            self.figure += 1
            columns, rows = table_rows(data)
            table = _html_table(columns, rows)
            out.append(f'<section id="{key}"><h2>{_e(title)}</h2><p>{text}</p>{table}'
                       f'<p class="muted">Table {self.figure}: {_e(title.lower())}, {len(rows)} row(s), '
                       "as supplied with the report.</p></section>")
        return "".join(out)

    def software(self) -> str:
        r = self.r
        rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in r.versions.items())
        env = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in r.environment.items())
        return ('<section id="software"><h2>Software, date and replay</h2>'
                f"<p>Created {_e(_date(r.created))}.</p><table>{rows}{env}</table>"
                "<p><b>Replay.</b> This file contains a machine-readable block (JSON, element id "
                f"<code>{REPLAY_ID}</code>) with every input and parameter: the model's source and "
                "fingerprint, each image, each method with its parameters and seed, the explained class, and "
                "a fingerprint of each resulting map. The command <code>python -m saliency_core replay "
                "REPORT.html</code> recomputes every map and says whether it matches, with the largest "
                "difference. Use the same CPU thread count (recorded above) for bit-identical numbers.</p>"
                "</section>")

    # -- per image
    def image_card(self, index: int, item: ImageEntry) -> str:
        return (f'<article class="card image-page" id="img-{index}"><h3>Image {index}: {_e(item.name)}</h3>'
                + _prediction_html(item) + self.figures(index, item) + _errors_html(item) + "</article>")

    def figures(self, index: int, item: ImageEntry, fmt: str | None = None) -> str:
        fmt = fmt or self.fmt
        lazy = ' loading="lazy"' if self.r.large else ""   # eager in small reports: printing needs them
        self.figure += 1
        n = self.figure
        cells = [f'<figure class="crop"><img src="{_data_uri(item.crop, fmt)}" alt="{_e(item.name)} as the model '
                 f'sees it" width="{item.crop.size[0]}" height="{item.crop.size[1]}"{lazy}>'
                 f"<figcaption>Figure {n}a. What the model sees: the {item.crop.size[0]}-pixel crop of "
                 f"{_e(item.name)}.</figcaption></figure>"]
        for k, m in enumerate(item.maps.values()):
            letter = chr(ord("b") + k) if k < 25 else f"-{k + 2}"
            label = METHODS[m.method].label
            ticks = "".join(f'<span class="{_tick_class(pos)}" style="left:{100 * pos:.0f}%">{_e(t)}</span>'
                            for pos, t in m.ticks)
            caution = METHODS[m.method].caution
            cells.append(
                f'<figure class="map"><img src="{_data_uri(m.overlay, fmt)}" alt="{_e(label)} map of {_e(item.name)}" '
                f'width="{m.overlay.shape[1]}" height="{m.overlay.shape[0]}"{lazy}>'
                f'<div class="bar cb-{m.colormap}" role="img" aria-label="colour bar"></div>'
                f'<div class="ticks">{ticks}</div>'
                f"<figcaption><b>Figure {n}{letter}. {_e(label)}</b>, explaining \u201c{_e(m.target_label)}\u201d. "
                f"{_e(m.legend)}" + (" Caution: " + _e(caution) if caution else "")
                + _diagnostics_text(m) + "</figcaption></figure>")
        return (f'<div class="row">{"".join(cells)}</div>'
                f'<p class="muted">Figure {n}: {_e(item.name)}, the crop the model saw and one saliency map per '
                "method, side by side; the colour bar under each map gives its values.</p>")

    def image_row(self, index: int, item: ImageEntry) -> str:
        (_, label, p) = item.prediction[0]
        thumbs = [f'<figure><img src="{_data_uri(_thumb(item.crop), "JPEG")}" alt="{_e(item.name)}" '
                  f'loading="lazy"><figcaption>crop</figcaption></figure>']
        thumbs += [f'<figure><img src="{_data_uri(_thumb(m.overlay), "JPEG")}" alt="{_e(METHODS[m.method].label)} '
                   f'thumbnail" loading="lazy"><figcaption>{_e(METHODS[m.method].label)}</figcaption></figure>'
                   for m in item.maps.values()]
        return (f'<article class="card" id="img-{index}"><div class="row"><div style="min-width:220px">'
                f"<b>{index}. {_e(item.name)}</b><br>Prediction: \u201c{_e(label)}\u201d, {_percent(p)}"
                f'</div><div class="thumbs">{"".join(thumbs)}</div></div>'
                f"<details><summary>Full-size maps, colour bars and legends</summary>"
                + _prediction_html(item) + self.figures(index, item) + "</details>"
                + _errors_html(item) + "</article>")


def _tick_class(pos: float) -> str:
    return "first" if pos <= 0 else "last" if pos >= 1 else "mid"


def _nums(values) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values or []) + ")"


def _date(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _prediction_html(item: ImageEntry) -> str:
    rows = "".join(
        f'<tr><td>{k}</td><td>{_e(label)}</td><td class="p">{_percent(p)}</td>'
        f'<td><span class="pbar" style="width:{max(1, round(120 * p))}px"></span></td></tr>'
        for k, (_, label, p) in enumerate(item.prediction, 1))
    top = item.prediction[0]
    return (f"<p><b>Prediction:</b> \u201c{_e(top[1])}\u201d with {_percent(top[2])} "
            f'<a href="#g-confidence">confidence</a> ({_confidence_words(top[2])}).</p>'
            f'<table class="pred"><tr><th>rank</th><th>class</th><th>confidence</th><th></th></tr>{rows}</table>')


def _errors_html(item: ImageEntry) -> str:
    if not item.errors:
        return ""
    return ('<p class="err">Maps that could not be computed: '
            + "; ".join(f"{_e(METHODS[m].label if m in METHODS else m)}: {_e(msg)}" for m, msg in item.errors.items())
            + "</p>")


def _diagnostics_text(m: MapEntry) -> str:
    gap = m.diagnostics.get("completeness_gap_relative")
    if gap is None:
        return ""
    return (f" Completeness gap {gap:.1%}: how far the pixels' contributions fall short of adding up to "
            "the score difference (small is good).")


def _params_text(method: str, report: Report) -> list[tuple[str, str, str]]:
    """(name, value, meaning) of the parameters used, from the first map of ``method``."""
    for item in report.images:
        if method in item.maps:
            return [(k, _cell(v), PARAM_HELP.get(k, "")) for k, v in item.maps[method].params.items()]
    return [(k, _cell(v), PARAM_HELP.get(k, "")) for k, v in METHODS[method].defaults.items()]


def _seed_text(method: str, report: Report) -> str:
    params = dict((k, v) for k, v, _ in _params_text(method, report))
    if "seed" in params:
        return f"Seed {params['seed']}: the same seed gives the same map."
    return "Seed: not used; this method has no randomness, so it gives the same map every time."


def _same_params(method: str, report: Report) -> bool:
    seen = {json.dumps(_plain(i.maps[method].params), sort_keys=True) for i in report.images if method in i.maps}
    return len(seen) <= 1


def _method_html(method: str, report: Report) -> str:
    meta = METHODS[method]
    params = _params_text(method, report)
    rows = "".join(f"<tr><td><code>{_e(k)}</code></td><td><code>{_e(v)}</code></td><td>{_e(h)}</td></tr>"
                   for k, v, h in params)
    table = (f"<table><tr><th>parameter</th><th>value</th><th>what it means</th></tr>{rows}</table>"
             if params else "<p>Parameters: none; this method has no settings.</p>")
    varied = "" if _same_params(method, report) else (
        '<p class="muted">Parameters differ between images; each image\'s values are in the replay data.</p>')
    caution = f'<p class="caution"><b>Known limit:</b> {_e(meta.caution)}</p>' if meta.caution else ""
    bright = meta.meaning.format(score="the score of the explained class")
    return (f'<div class="card" id="method-{_e(method)}"><h3>{_e(meta.label)} <span class="muted">'
            f"(<code>{_e(method)}</code>)</span></h3><p>{_e(meta.description)}</p>"
            f"<p><b>Bright means:</b> {_e(bright)}.</p>{table}{varied}<p>{_e(_seed_text(method, report))}</p>"
            f"{caution}<p class=\"muted\">Reference: {_e(meta.reference)}.</p></div>")


def _html_table(columns: list[str], rows: list[dict]) -> str:
    if not rows:
        return "<p>(no rows)</p>"
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(_cell(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


# ---- PDF ------------------------------------------------------------------------------------------

_LATIN1 = str.maketrans({"\u2013": "-", "\u2014": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"',
                         "\u201d": '"', "\u2026": "...", "\u2264": "<=", "\u2265": ">=", "\u2192": "->",
                         "\u2212": "-", "\u2248": "~", "\u00a0": " ", "\u2022": "-"})


def _latin1(text) -> str:
    """fpdf2's built-in fonts cover Latin-1: common typography is mapped, anything else becomes '?'."""
    return str(text).translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


def _pdf(report: Report) -> bytes:
    try:
        from fpdf import FPDF
        from fpdf.enums import XPos, YPos
    except ImportError:
        raise ValueError("Making a PDF needs the package fpdf2; install the project's requirements.txt.") from None

    class Doc(FPDF):
        def footer(self):
            self.set_y(-12)
            self.set_font("Helvetica", "", 7)
            self.set_text_color(110)
            self.cell(0, 5, _latin1(f"{report.title} - {_date(report.created)} - model sha256 "
                                    f"{str(report.model.get('fingerprint'))[:16]}... - page {self.page_no()} of {{nb}}"),
                      align="C")
            self.set_text_color(0)

    pdf = Doc(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(True, margin=16)
    pdf.set_margins(15, 15, 15)
    pdf.set_title(_latin1(report.title))
    pdf.set_creator(_latin1(f"saliency_core {report.versions.get('saliency_core', '')}"))
    pdf.set_creation_date(report.created)
    width = pdf.w - pdf.l_margin - pdf.r_margin
    nl = dict(new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def heading(text, size=15):
        pdf.set_font("Helvetica", "B", size)
        pdf.multi_cell(width, size * 0.5, _latin1(text), **nl)
        pdf.ln(1.5)

    def para(text, size=9.5, style="", h=None):
        pdf.set_font("Helvetica", style, size)
        pdf.multi_cell(width, h or size * 0.47, _latin1(text), **nl)
        pdf.ln(1.2)

    def kv_table(rows, col1=55, size=8.5):
        pdf.set_font("Helvetica", "", size)
        with pdf.table(col_widths=(col1, width - col1), first_row_as_headings=False, line_height=size * 0.5,
                       text_align="LEFT", borders_layout="HORIZONTAL_LINES") as t:
            for k, v in rows:
                row = t.row()
                row.cell(_latin1(k))
                row.cell(_latin1(v))
        pdf.ln(2)

    def grid_table(columns, rows, size=7.5):
        if not rows:
            para("(no rows)")
            return
        pdf.set_font("Helvetica", "", size)
        with pdf.table(first_row_as_headings=True, line_height=size * 0.5, text_align="LEFT",
                       borders_layout="HORIZONTAL_LINES") as t:
            head = t.row()
            for c in columns:
                head.cell(_latin1(c))
            for r in rows:
                row = t.row()
                for c in columns:
                    row.cell(_latin1(_cell(r.get(c))))
        pdf.ln(2)

    # page 1: title and summary
    pdf.add_page()
    pdf.start_section(_latin1("Summary"))
    pdf.set_font("Helvetica", "B", 20)
    pdf.multi_cell(width, 9, _latin1(report.title), **nl)
    para(f"Created {_date(report.created)} - model {report.model.get('name')} - {len(report.images)} image(s) x "
         f"{len(report.methods)} method(s)", size=9)
    para(f"Model fingerprint (sha256 of the weights): {report.model.get('fingerprint')}", size=7.5)
    pdf.ln(2)
    heading("Summary in plain words", 14)
    paras = summary_paragraphs(report)
    for p in paras[:-1]:
        para(p)
    para(paras[-1])
    para("Terms are explained on the next page. The HTML version of this report carries the data to replay "
         "every map.", size=8)

    # page 2: glossary
    pdf.add_page()
    pdf.start_section("Words used")
    heading("Words used in this report")
    for term, text in GLOSSARY.values():
        pdf.set_font("Helvetica", "B", 9)
        pdf.multi_cell(width, 4.4, _latin1(term), **nl)
        pdf.set_font("Helvetica", "", 9)
        pdf.multi_cell(width, 4.4, _latin1(text), **nl)
        pdf.ln(0.8)

    # page 3: model and methods
    pdf.add_page()
    pdf.start_section("The model and the methods")
    heading("The model")
    d = report.model
    kv_table([("Name", d.get("name")), ("Fingerprint (sha256)", d.get("fingerprint")),
              ("Classes", d.get("classes")), ("Input", f"{d.get('input_size')} x {d.get('input_size')} pixels"),
              ("Preprocessing", f"short side to {d.get('resize')} px ({d.get('interpolation')}), {d.get('crop')} "
                                f"crop, mean {_nums(d.get('mean'))}, std {_nums(d.get('std'))}"),
              ("Grad-CAM layer", d.get("gradcam_layer") or "none"), ("Loaded from", report.model_source)]
             + [(f"Card: {k}", v) for k, v in (d.get("card") or {}).items()
                if k != "digest" and not (isinstance(v, (dict, list)) and len(str(v)) > 200)])
    heading("Methods, parameters and known limits", 13)
    para(GENERAL_LIMITS, size=8.5)
    for m in report.methods:
        meta = METHODS[m]
        pdf.set_font("Helvetica", "B", 10.5)
        pdf.multi_cell(width, 5.2, _latin1(f"{meta.label} ({m})"), **nl)
        para(meta.description, size=8.5)
        para("Bright means: " + meta.meaning.format(score="the score of the explained class") + ".", size=8.5)
        params = _params_text(m, report)
        para("Parameters: " + ("; ".join(f"{k} = {v} ({h})" if h else f"{k} = {v}" for k, v, h in params)
                               if params else "none; this method has no settings."), size=8.5)
        para(_seed_text(m, report), size=8.5)
        if meta.caution:
            pdf.set_text_color(140, 70, 0)
            para("Known limit: " + meta.caution, size=8.5, style="B")
            pdf.set_text_color(0)
        para("Reference: " + meta.reference, size=7.5)

    # images
    if report.large:
        _pdf_rows(pdf, report, width, heading, para)
    else:
        for index, item in enumerate(report.images, 1):
            _pdf_image_page(pdf, report, index, item, width, heading, para)
    if report.skipped:
        para("Images left out (they could not be read): " + "; ".join(msg for _, msg in report.skipped), size=8.5)

    # optional results
    for key, title in (("sanity", "Sanity check: model randomisation"), ("stability", "Stability"),
                       ("validation", "Validation against expert annotations"), ("reviews", "Review decisions")):
        data = getattr(report, key)
        if data is None:
            continue
        pdf.add_page()
        pdf.start_section(_latin1(title))
        heading(title)
        columns, rows = table_rows(data)
        grid_table(columns, rows)
        para(f"Table: {title.lower()}, {len(rows)} row(s), as supplied with the report.", size=8)

    # software and date
    pdf.add_page()
    pdf.start_section("Software, date and replay")
    heading("Software, date and replay")
    para(f"Created {_date(report.created)}.")
    kv_table([(k, v) for k, v in report.versions.items()] + [(k, v) for k, v in report.environment.items()])
    para("Replay: the HTML version of this report contains a machine-readable block (JSON) with every input and "
         "parameter and a fingerprint of each map; 'python -m saliency_core replay REPORT.html' recomputes every "
         "map and says whether it matches. Use the same CPU thread count for bit-identical numbers.")
    return bytes(pdf.output())


def _pdf_image(pdf, array_or_image, x, y, w):
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(np.asarray(array_or_image))
    h = w * image.size[1] / image.size[0]
    pdf.image(image, x=x, y=y, w=w, h=h)
    return h


def _pdf_image_page(pdf, report, index, item, width, heading, para):
    from fpdf.enums import XPos, YPos
    pdf.add_page()
    pdf.start_section(_latin1(f"Image {index}: {item.name}"))
    heading(f"Image {index} of {len(report.images)}: {item.name}", 14)
    top = item.prediction[0]
    para(f"Prediction: \"{top[1]}\" with {_percent(top[2])} confidence ({_confidence_words(top[2])}).", size=10,
         style="B")
    pdf.set_font("Helvetica", "", 8.5)
    for k, (_, label, p) in enumerate(item.prediction, 1):
        y = pdf.get_y()
        pdf.cell(8, 4.2, str(k))
        pdf.cell(70, 4.2, _latin1(label))
        pdf.cell(20, 4.2, _percent(p), align="R")
        pdf.set_fill_color(117, 112, 179)
        pdf.rect(pdf.l_margin + 102, y + 1, max(0.3, 60 * p), 2.4, style="F")
        pdf.ln(4.2)
    pdf.ln(3)
    maps = list(item.maps.values())
    per_row = min(4, 1 + len(maps))
    gap = 4
    w = (width - gap * (per_row - 1)) / per_row
    cells = [("crop", None)] + [("map", m) for m in maps]
    for start in range(0, len(cells), per_row):
        row = cells[start:start + per_row]
        y0 = pdf.get_y()
        if y0 + w + 40 > pdf.h - pdf.b_margin:
            pdf.add_page()
            y0 = pdf.get_y()
        bottoms = []
        for j, (kind, m) in enumerate(row):
            x = pdf.l_margin + j * (w + gap)
            if kind == "crop":
                h = _pdf_image(pdf, item.crop, x, y0, w)
                pdf.set_xy(x, y0 + h + 1)
                pdf.set_font("Helvetica", "", 7)
                pdf.multi_cell(w, 3.2, _latin1(f"Figure {index}a. What the model sees: the crop of {item.name}."),
                               new_x=XPos.LEFT, new_y=YPos.NEXT)
                bottoms.append(pdf.get_y())
                continue
            h = _pdf_image(pdf, m.overlay, x, y0, w)
            bar_y = y0 + h + 1
            pdf.image(Image.fromarray(m.bar), x=x, y=bar_y, w=w, h=2.5)
            pdf.set_font("Helvetica", "", 6.5)
            for pos, text in m.ticks:
                tw = pdf.get_string_width(_latin1(text))
                tx = x + pos * w - (0 if pos <= 0 else tw if pos >= 1 else tw / 2)
                pdf.text(tx, bar_y + 5.2, _latin1(text))
            pdf.set_xy(x, bar_y + 6.5)
            label = METHODS[m.method].label
            letter = chr(ord("b") + start + j - 1)
            pdf.set_font("Helvetica", "B", 7)
            pdf.multi_cell(w, 3.2, _latin1(f"Figure {index}{letter}. {label}, explaining \"{m.target_label}\"."),
                           new_x=XPos.LEFT, new_y=YPos.NEXT)
            pdf.set_font("Helvetica", "", 6.5)
            text = m.legend + _diagnostics_text(m)
            if METHODS[m.method].caution:
                text += " Caution: " + METHODS[m.method].caution
            pdf.multi_cell(w, 3.0, _latin1(text), new_x=XPos.LEFT, new_y=YPos.NEXT)
            bottoms.append(pdf.get_y())
        pdf.set_xy(pdf.l_margin, max(bottoms) + 3)
    para(f"Figure {index}: {item.name}, the crop the model saw and one saliency map per method, side by side; the "
         "colour bar under each map gives its values (inferno, or blue-grey-red for signed maps: readable with "
         "colour-vision deficiencies).", size=7.5)
    if item.errors:
        pdf.set_text_color(160, 0, 0)
        para("Maps that could not be computed: " + "; ".join(f"{m}: {msg}" for m, msg in item.errors.items()), size=8)
        pdf.set_text_color(0)


def _pdf_rows(pdf, report, width, heading, para):
    """Large reports: one row per image (thumbnails and prediction), ``PDF_ROWS_PER_PAGE`` per page."""
    cols = 1 + len(report.methods)
    text_w = 52
    side = min(24.0, (width - text_w - 2 * cols) / cols)
    for k, item in enumerate(report.images):
        if k % PDF_ROWS_PER_PAGE == 0:
            pdf.add_page()
            if k == 0:
                pdf.start_section("Images")
                heading("Images, predictions and maps (thumbnails)", 13)
                para("One row per image: the crop the model saw, then one thumbnail per method in the order "
                     + ", ".join(METHODS[m].label for m in report.methods)
                     + ". Full-size maps with colour bars and legends are in the HTML version.", size=8)
        y = pdf.get_y()
        pdf.set_font("Helvetica", "B", 8)
        pdf.set_xy(pdf.l_margin, y)
        pdf.multi_cell(text_w, 3.6, _latin1(f"{k + 1}. {item.name}"))
        pdf.set_x(pdf.l_margin)
        pdf.set_font("Helvetica", "", 7.5)
        top = item.prediction[0]
        pdf.multi_cell(text_w, 3.4, _latin1(f"Prediction: \"{top[1]}\", {_percent(top[2])}"))
        x = pdf.l_margin + text_w
        _pdf_image(pdf, _thumb(item.crop, 160), x, y, side)
        for j, m in enumerate(report.methods, 1):
            if m in item.maps:
                _pdf_image(pdf, _thumb(item.maps[m].overlay, 160), x + j * (side + 2), y, side)
        pdf.set_xy(pdf.l_margin, y + side + 4)
    para(f"Figure: thumbnails of {len(report.images)} images and their maps.", size=7.5)


# ---- replay ---------------------------------------------------------------------------------------

class _ReplayFinder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=False)
        self.inside, self.chunks, self.found = False, [], False

    def handle_starttag(self, tag, attrs):
        if tag == "script" and dict(attrs).get("id") == REPLAY_ID:
            self.inside, self.found = True, True

    def handle_endtag(self, tag):
        if tag == "script":
            self.inside = False

    def handle_data(self, data):
        if self.inside:
            self.chunks.append(data)


def read_replay(source: str | os.PathLike) -> dict:
    """The replay block of a report: an HTML file (or its text), or a JSON file.

    Raises:
        ValueError: the file is missing or holds no readable replay block.

    Example:
        >>> read_replay("report.html")["schema"]
        'saliency-lens-report/1'
    """
    text = source if isinstance(source, str) else ""
    if not text.lstrip().startswith(("<", "{")):          # a file name, not the document itself
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"{path}: no such file.")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: cannot read it as a text file ({err}).") from None
        name = str(path)
    else:
        name = "the report"
    stripped = text.lstrip()
    if stripped.startswith("{"):
        raw = stripped
    else:
        finder = _ReplayFinder()
        finder.feed(text)
        if not finder.found:
            raise ValueError(f"{name}: no replay data found (expected a <script id=\"{REPLAY_ID}\"> block, "
                             "as written by saliency_core's report). Was this file made by another tool?")
        raw = "".join(finder.chunks)
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{name}: the replay data is damaged (not valid JSON: {err.msg} at line {err.lineno}).") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        got = record.get("schema") if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"{name}: the replay data has format {got!r}; this version reads {SCHEMA!r}.")
    return record


@dataclass
class ReplayResult:
    """One map's replay: ``status`` is "match" (same float32 bytes, or within ``tolerance``),
    "mismatch" or "error"; ``max_abs_diff`` is None when the report does not store the map."""

    image: str
    method: str
    status: str
    max_abs_diff: float | None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "match"

    def line(self) -> str:
        diff = "max abs difference " + ("unknown" if self.max_abs_diff is None else f"{self.max_abs_diff:.3g}")
        return f"{self.image}  {self.method}  {self.status}  {diff}" + (f"  ({self.detail})" if self.detail else "")


def replay(record: dict, model=None, *, tolerance: float = 0.0,
           progress: Callable[[ReplayResult], None] | None = None) -> list[ReplayResult]:
    """Recompute every map of a report's replay block and compare it with the recorded one.

    Args:
        record: ``read_replay(...)``.
        model: a ``Classifier``; None loads ``record["model"]["source"]``.
        tolerance: 0 = the float32 bytes must be identical; > 0 = a map also matches when its
            largest difference is at most ``tolerance`` x the recorded map's largest |value|
            (needs the stored map).
        progress: called with each result as it is found.
    Returns:
        One ``ReplayResult`` per recorded map, in report order.
    Raises:
        ValueError: the model cannot be loaded.

    Example:
        >>> all(r.ok for r in replay(read_replay("report.html")))
        True
    """
    import torch
    from torchvision.transforms.functional import to_tensor
    from .explain import attribute, explain, reduce_channels
    from .models import load_model

    if model is None:
        model = load_model(record.get("model", {}).get("source", "demo"))
    want = record.get("model", {}).get("fingerprint")
    wrong_model = want is not None and model.fingerprint != want
    made_on = _device_type(record.get("environment", {}).get("device"))
    replay_on = model.device.type
    threads = record.get("environment", {}).get("threads")
    before = torch.get_num_threads()
    results: list[ReplayResult] = []

    def add(result: ReplayResult):
        results.append(result)
        if progress:
            progress(result)

    try:
        if isinstance(threads, int) and threads > 0:
            torch.set_num_threads(threads)   # reductions are ordered by thread count
        for item in record.get("images", []):
            name = item.get("name", "?")
            maps = item.get("maps", [])
            if wrong_model:
                for m in maps:
                    add(ReplayResult(name, m.get("method", "?"), "mismatch", None,
                                     f"the model's fingerprint is {model.fingerprint[:12]}..., the report's "
                                     f"{str(want)[:12]}...: another model"))
                continue
            try:
                payload = item["input"]
                data = base64.b64decode(payload["base64"], validate=True)
                if hashlib.sha256(data).hexdigest() != payload.get("sha256"):
                    raise ValueError("the embedded image does not match its recorded sha256")
                picture = load_image(data, name=name)
            except (KeyError, TypeError, ValueError) as err:
                for m in maps:
                    add(ReplayResult(name, m.get("method", "?"), "error", None, f"image unusable: {err}"))
                continue
            for m in maps:
                method = m.get("method", "?")
                try:
                    params = dict(m.get("params") or {})
                    target = int(m["target"])
                    if payload.get("kind") == "crop":
                        if picture.size != (model.input_size, model.input_size):
                            raise ValueError(f"the stored crop is {picture.size[0]}x{picture.size[1]} but the "
                                             f"model takes {model.input_size}x{model.input_size}")
                        x = to_tensor(picture).unsqueeze(0).to(model.device)
                        attribution, _, _ = attribute(model, x, torch.tensor([target], device=x.device), method,
                                                      **params)
                        saliency = reduce_channels(attribution, METHODS[method].reduction)[0].float().cpu().numpy()
                    else:
                        saliency = explain(model, picture, method=method, target=target, **params).saliency
                    result = _compare(name, method, saliency, m.get("saliency") or {}, tolerance)
                    if not result.ok and made_on != replay_on:
                        result = _across_devices(result, saliency, m.get("saliency") or {}, made_on, replay_on,
                                                 lambda: _recompute(model, payload, picture, method, target,
                                                                    {**params, "seed": _next_seed(params)}))
                except (KeyError, TypeError, ValueError) as err:
                    add(ReplayResult(name, method, "error", None, " ".join(str(err).split())))
                    continue
                add(result)
    finally:
        torch.set_num_threads(before)
    return results


# Replay on another kind of device (a GPU-made report on a CPU): float arithmetic differs, the
# random draws do not (they are made on the CPU). Single-pass methods run in fp32 on both; a
# ReLU6 gate within rounding of its threshold can flip, which moves a map by up to about 1 %
# (float32 vs float64 on the CPU: 6.5e-6 on chelsea.png, 1 % on camera.png), so they match within
# SINGLE_PASS_DEVICE_TOLERANCE (relative L2 error). Averaging methods may use TF32 on a GPU: they
# match when the map moved less than a tenth of what changing the seed moves it (the rule in
# saliency_core/_fast.py), measured here by recomputing with the next seed.
SINGLE_PASS_DEVICE_TOLERANCE = 2e-2
AVERAGING_DEVICE_SHARE = 0.1


def _device_type(recorded) -> str:
    """'cuda' or 'cpu' from a recorded device ('cuda:0 (NVIDIA H200)', 'cpu', None = cpu)."""
    return str(recorded or "cpu").split(":", 1)[0].split(" ", 1)[0].strip().lower() or "cpu"


def _recompute(model, payload: dict, picture, method: str, target: int, params: dict) -> np.ndarray:
    import torch
    from torchvision.transforms.functional import to_tensor
    from .explain import attribute, explain, reduce_channels
    if payload.get("kind") == "crop":
        x = to_tensor(picture).unsqueeze(0).to(model.device)
        attribution, _, _ = attribute(model, x, torch.tensor([target], device=x.device), method, **params)
        return reduce_channels(attribution, METHODS[method].reduction)[0].float().cpu().numpy()
    return explain(model, picture, method=method, target=target, **params).saliency


def _relative_l2(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _across_devices(result: "ReplayResult", saliency: np.ndarray, recorded: dict, made_on: str,
                    replay_on: str, other_seed: Callable[[], np.ndarray]) -> "ReplayResult":
    """A mismatch between devices judged by the stated cross-device tolerance (above)."""
    stored = _stored_map(recorded, np.shape(saliency))
    if stored is None:
        return result
    moved = _relative_l2(saliency, stored)
    where = f"made on {made_on}, replayed on {replay_on}"
    if METHODS[result.method].averaging:
        spread = _relative_l2(other_seed(), saliency)
        ok = moved <= AVERAGING_DEVICE_SHARE * spread
        rule = (f"{where}: the map moved {moved:.3g} (relative), {moved / max(spread, 1e-30):.3g}x what a change "
                f"of seed moves it (allowed {AVERAGING_DEVICE_SHARE:g}x)")
    else:
        ok = moved <= SINGLE_PASS_DEVICE_TOLERANCE
        rule = f"{where}: the map moved {moved:.3g} (relative), allowed {SINGLE_PASS_DEVICE_TOLERANCE:g}"
    return ReplayResult(result.image, result.method, "match" if ok else "mismatch", result.max_abs_diff, rule)


def _next_seed(params: dict) -> int:
    seed = params.get("seed", 0)
    return (seed if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**62 else 0) + 1


def _stored_map(recorded: dict, shape) -> np.ndarray | None:
    """The float32 map stored in a replay record, inflated to at most the bytes of ``shape``
    (the map just recomputed, never a size read from the report); None when absent, unreadable
    or of another size."""
    if not recorded.get("data"):
        return None
    size = int(np.prod(shape)) * 4
    try:
        data = zlib.decompressobj().decompress(base64.b64decode(recorded["data"]), size + 1)
        if len(data) != size:
            return None
        return np.frombuffer(data, dtype="<f4").reshape(shape)
    except (ValueError, zlib.error, TypeError):
        return None


def _compare(name: str, method: str, saliency: np.ndarray, recorded: dict, tolerance: float) -> ReplayResult:
    s = _f32(saliency)
    now = map_summary(s)
    if list(s.shape) != list(recorded.get("shape", [])):
        return ReplayResult(name, method, "mismatch", None,
                            f"shape {tuple(s.shape)} vs recorded {tuple(recorded.get('shape', []))}")
    stored = _stored_map(recorded, s.shape)
    diff = float(np.abs(s.astype(np.float64) - stored.astype(np.float64)).max()) if stored is not None else None
    if now["sha256"] == recorded.get("sha256"):
        return ReplayResult(name, method, "match", 0.0 if diff is None else diff)
    if diff is not None and tolerance > 0:
        peak = float(np.abs(stored).max()) if stored.size else 0.0
        if diff <= tolerance * peak:
            return ReplayResult(name, method, "match", diff, f"within tolerance {tolerance:g} x max|map|")
    detail = "" if stored is not None else (
        f"map not stored in the report; maximum now {now['max']:.6g}, recorded {recorded.get('max')}")
    return ReplayResult(name, method, "mismatch", diff, detail)
