"""What every part of the report shares: limits, words for readers who do not write code, small
helpers and what the maps suggest, in words."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import math
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..engine.convergence import describe as describe_convergence
from ..engine.detail import smooth, stated_detail
from ..engine.methods import METHODS

if TYPE_CHECKING:
    from .build import MapEntry, Report

SCHEMA = "saliency-lens-report/1"
REPLAY_ID = "saliency-replay"
DEFAULT_TITLE = "Saliency report"
LARGE_REPORT = 20  # more images than this: paged HTML with thumbnails, compact PDF
PAGE_SIZE = 25  # images per HTML page of a large report
PDF_ROWS_PER_PAGE = 8  # images per PDF page of a large report
EMBED_MAPS_UP_TO = 24  # maps stored in the replay block (compressed float32) up to this count
EMBED_ORIGINALS_UP_TO = 16 * 2**20  # image files (bytes, all together) embedded as given up to this
THUMB = 112  # thumbnail side in pixels
MAX_REPORT_BYTES = 512 * 2**20  # replay reads reports up to this size
MAX_MAP_SIDE = 4096  # a stored map's side (models take at most 2048 x 2048)
MAX_THREADS = 256  # a recorded CPU thread count above this is not believed
TOP_SHARE = 0.10  # "strongest pixels" in the summary: the top 10 %
ALPHA = 0.5
CLIP_PERCENTILE = 99.0

# ---- words for readers who do not write code --------------------------------------------------

GLOSSARY: dict[str, tuple[str, str]] = {
    "saliency-map": (
        "Saliency map",
        "A picture of how much each pixel mattered to the model's score, according to one method.",
    ),
    "overlay": ("Overlay", "The saliency map's colours laid half-transparently over the photo."),
    "crop": ("Crop", "The square part of the photo the model actually looks at, after resizing."),
    "prediction": ("Prediction", "The class (kind of object) the model ranks first for an image."),
    "confidence": (
        "Confidence",
        "The model's own probability for a class, from 0 to 100 %; a high value "
        "is not a guarantee that it is right.",
    ),
    "score": (
        "Score",
        "The model's raw number for a class before it becomes a probability; the maps explain this number.",
    ),
    "target": (
        "Explained class",
        "The class whose score a map explains (here the predicted one unless stated).",
    ),
    "colour-bar": ("Colour bar", "The strip under a map that shows which colour stands for which value."),
    "clipping": (
        "Clipping at the 99th percentile",
        "The top 1 % of values all get the brightest colour, so "
        "a few extreme pixels do not make the rest look dark.",
    ),
    "method": ("Method", "One way of computing a saliency map; different methods can disagree."),
    "parameter": ("Parameter", "A setting of a method, recorded so the map can be computed again."),
    "seed": (
        "Seed",
        "A number that fixes the random noise some methods add: the same seed gives the same map.",
    ),
    "fingerprint": (
        "Fingerprint (sha256)",
        "A 64-character code computed from a file; any change to the "
        "file changes it, so it identifies the exact model weights or "
        "image.",
    ),
    "sanity-check": (
        "Sanity check (model randomisation)",
        "The model's weights are replaced by random ones; "
        "a map that still looks the same cannot be "
        "explaining what the model learned.",
    ),
    "rank-correlation": (
        "Rank correlation (Spearman)",
        "How alike two maps are in the order of their "
        "pixels, from -1 (opposite) to 1 (same order); "
        "0 = unrelated.",
    ),
    "stability": (
        "Stability",
        "Whether a map stays much the same when the photo is changed slightly "
        "(noise, brightness, a small shift).",
    ),
    "validation": (
        "Validation metrics",
        "How well maps agree with regions that experts marked on the images.",
    ),
    "strongest-pixels": (
        "Strongest pixels",
        f"The {100 * TOP_SHARE:.0f} % of pixels with the largest map values.",
    ),
    "replay": (
        "Replay",
        "Recomputing every map from the data stored in this report, to show that the "
        "same inputs give the same numbers.",
    ),
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
    "until_settled": "keep adding noisy copies until a re-run with other noise would agree",
    "max_samples": "the most noisy copies that keeping on may use",
    "settled_at": "the detail (blur in pixels on a 224-pixel image) at which the map must agree "
    "with a re-run",
    "reshape": "how that layer's output is laid out as a grid (none for a feature map; tokens of a "
    "vision transformer: tokens, class_token, channels_last)",
}

GENERAL_LIMITS = (
    "Every saliency map is an approximation computed after the fact: it shows where the "
    "model's score is sensitive according to one method, not the model's reasoning itself. "
    "Different methods can disagree, a bright region is evidence and not proof, and a map "
    "says nothing about whether the prediction is right."
)


# ---- small helpers ---------------------------------------------------------------------------


def known_method(name: str):
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; available: {', '.join(METHODS)}.")
    return METHODS[name]


def recorded_versions() -> dict:
    import PIL

    from ..engine.explain import versions

    out = dict(versions())
    out["pillow"] = PIL.__version__
    try:
        import fpdf

        out["fpdf2"] = fpdf.__version__
    except ImportError:
        pass
    return out


def source_bytes(source, name: str) -> bytes:
    """The image as file bytes: read a path, keep bytes, store a PIL image as PNG."""
    if isinstance(source, Image.Image):
        return encode_image(source.convert("RGB"), "PNG")
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


def as_float32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype="<f4"))


def map_summary(saliency: np.ndarray) -> dict:
    """sha256 of the map's float32 (little-endian, C order) bytes, its shape and a few statistics.

    Example:
        >>> summary = map_summary(exp.saliency)
        >>> len(summary["sha256"]), summary["shape"]
        (64, [224, 224])
    """
    s = as_float32(saliency)
    finite = s[np.isfinite(s)]

    def stat(f):
        return float(f(finite)) if finite.size else float("nan")

    return {
        "sha256": hashlib.sha256(s.tobytes()).hexdigest(),
        "shape": list(s.shape),
        "dtype": "float32",
        "min": stat(np.min),
        "max": stat(np.max),
        "mean": stat(np.mean),
        "abs_sum": stat(lambda a: np.abs(a, dtype=np.float64).sum()),
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_image(image, fmt: str = "PNG", quality: int = 85) -> bytes:
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image))
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
    else:
        image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def data_uri(image, fmt: str = "PNG") -> str:
    mime = "image/jpeg" if fmt == "JPEG" else "image/png"
    return f"data:{mime};base64,{b64(encode_image(image, fmt))}"


def thumb_image(image, side: int = THUMB) -> Image.Image:
    image = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    if max(image.size) <= side:
        return image
    out = image.copy()
    out.thumbnail((side, side), Image.Resampling.LANCZOS)
    return out


def jsonable(value):
    """JSON-ready copy: numpy scalars/arrays and tensors to Python, NaN kept as None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray) or hasattr(value, "tolist"):
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def json_block(record: dict) -> str:
    """JSON safe inside <script>: '</' and '<!--' cannot end or confuse the element."""
    text = json.dumps(jsonable(record), indent=1, ensure_ascii=False, allow_nan=False)
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
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas DataFrame
        rows = data.to_dict(orient="records")
    elif isinstance(data, dict):
        if all(
            isinstance(v, dict) or hasattr(v, "record") or dataclasses.is_dataclass(v) for v in data.values()
        ):
            rows = [{"key": k, **_row(v)} for k, v in data.items()]
        else:
            rows = [data]
    elif isinstance(data, (list, tuple)):
        rows = list(data)
    else:
        raise ValueError(
            f"Expected a list of rows (dicts), a DataFrame or a dict of rows; got {type(data).__name__}."
        )
    flat = [_flatten(_row(r)) for r in rows]
    columns = list(dict.fromkeys(k for r in flat for k in r))
    return columns, flat


COLUMN_WORDS = {
    "method": "method",
    "passed": "passes",
    "verdict": "verdict",
    "measure": "measure",
    "final_similarity": "rank correlation at the end",
    "threshold": "pass below",
    "mode": "how",
    "blocks": "layer blocks re-initialised",
    "total_blocks": "layer blocks in all",
    "model_fingerprint": "model weights (sha256)",
    "image_hash": "image (sha256)",
    "image_name": "image",
    "final_map_zero": "map zero at the end",
    "target_label": "class explained",
    "top1": "prediction",
    "top1_probability": "confidence",
    "item_name": "item",
    "decided_at": "decided (UTC)",
    "spearman_abs": "rank correlation",
    "top_k_overlap": "top pixels kept",
    "ssim": "structural similarity",
}
VALUE_WORDS = {"spearman_abs": "rank correlation of the map's size (Spearman)"}
_HASH = re.compile(r"^[0-9a-f]{40,}$")
SHORT_HASH = 12


def readable_table(
    columns: list[str], rows: list[dict]
) -> tuple[list[str], list[dict], list[tuple[str, str]], list[tuple[str, str]]]:
    """``table_rows`` output for readers: column names in words, long hashes shortened to their
    first 12 characters with each full value listed once, and, with two or more rows, the
    columns that hold the same value in every row taken out and stated once.

    Returns:
        (columns, rows, full: (short, full value) pairs, common: (column, value) pairs).

    Example:
        >>> readable_table(["model_fingerprint"], [{"model_fingerprint": "ab" * 32}])[:2]
        (['model weights (sha256)'], [{'model weights (sha256)': 'abababababab…'}])
    """
    names = {
        c: ": ".join(COLUMN_WORDS.get(part) or part.replace("_", " ") for part in c.split("."))
        for c in columns
    }
    full: dict[str, str] = {}
    out = []
    for row in rows:
        new = {}
        for c in columns:
            v = row.get(c)
            if isinstance(v, str) and _HASH.match(v):
                full.setdefault(v[:SHORT_HASH] + "\u2026", v)
                v = v[:SHORT_HASH] + "\u2026"
            elif isinstance(v, str):
                v = VALUE_WORDS.get(v, v)
            new[names[c]] = v
        out.append(new)
    shown = [names[c] for c in columns]
    common = []
    if len(out) >= 2:
        for c in list(shown):
            values = {cell_text(r.get(c)) for r in out}
            if len(values) == 1 and len(shown) > 1:
                common.append((c, values.pop()))
                shown.remove(c)
    return shown, out, list(full.items()), common


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
                out[f"{k}.{k2}"] = (
                    jsonable(v2) if not isinstance(v2, (dict, list)) else json.dumps(jsonable(v2))
                )
        elif isinstance(v, (list, tuple)):
            out[str(k)] = json.dumps(jsonable(v))
        else:
            out[str(k)] = jsonable(v)
    return out


def cell_text(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def audit_sentence(audit: dict | None) -> str:
    """One sentence on the review audit log's hash chain, for the review section."""
    if not audit:
        return (
            "The review audit log was not checked for this report (python -m saliency_core audit verify "
            "checks it)."
        )
    if audit.get("verified"):
        return (
            f"The review audit log verified when this report was made: {audit.get('audit_rows', 0)} audit "
            f"row(s) in an unbroken hash chain, every decision matching its last audit row; last hash "
            f"{str(audit.get('head', ''))[:64]}."
        )
    return f"WARNING: the review audit log did NOT verify when this report was made: {audit.get('problem')}"


def percent(p: float) -> str:
    return f"{100 * p:.1f} %"


def multilabel_set(model: dict, prediction: list) -> list | None:
    """For a multi-label model (``output: sigmoid``), the classes of ``prediction`` above its
    threshold (the prediction is a set); None for a single-label model."""
    if model.get("output") != "sigmoid":
        return None
    threshold = float(model.get("threshold", 0.5))
    return [(i, label, p) for i, label, p in prediction if p > threshold]


def set_words(model: dict, predicted: list, quote=lambda t: f"\u201c{t}\u201d") -> str:
    """A multi-label prediction in words: every class above the threshold, or none."""
    threshold = percent(float(model.get("threshold", 0.5)))
    if not predicted:
        return f"no class above the multi-label threshold of {threshold}"
    return (
        f"{len(predicted)} class{'es' if len(predicted) != 1 else ''} above the multi-label threshold of "
        f"{threshold}: " + ", ".join(f"{quote(label)} ({percent(p)})" for _, label, p in predicted)
    )


def confidence_words(p: float) -> str:
    """The model's probability in words, as the report and the Explain page say it: "very
    confident" (90 % and up), "fairly confident" (60 %), "unsure" (30 %), "very unsure".

    Example:
        >>> confidence_words(0.39)
        'unsure'
    """
    if p >= 0.9:
        return "very confident"
    if p >= 0.6:
        return "fairly confident"
    if p >= 0.3:
        return "unsure"
    return "very unsure"


# ---- what the maps suggest, in words ----------------------------------------------------------

_REGIONS = {
    (0, 0): "top left",
    (0, 1): "top centre",
    (0, 2): "top right",
    (1, 0): "left side",
    (1, 1): "centre",
    (1, 2): "right side",
    (2, 0): "bottom left",
    (2, 1): "bottom centre",
    (2, 2): "bottom right",
}


def _top_mask(s: np.ndarray, share: float = TOP_SHARE) -> np.ndarray:
    a = np.abs(as_float32(s)).ravel()
    k = max(1, int(round(share * a.size)))
    mask = np.zeros(a.size, dtype=bool)
    mask[np.argpartition(a, a.size - k)[a.size - k :]] = True
    return mask.reshape(s.shape)


def describe_map(m: MapEntry) -> dict:
    """Where the map is strongest and how concentrated it is.

    Returns:
        ``{"region": "centre" ..., "top_share": share of the total |value| held by the strongest
        10 % of pixels, "sentence": plain words}``.
    """
    s = np.abs(as_float32(m.saliency))
    label = METHODS[m.method].label if m.method in METHODS else m.method
    total = float(s.sum(dtype=np.float64))
    if m.near_zero or total == 0:
        return {
            "region": None,
            "top_share": None,
            "sentence": f"{label}: the map is zero or negligible everywhere, so it points nowhere.",
        }
    mask = _top_mask(s)
    share = float(s[mask].sum(dtype=np.float64) / total)
    rows, cols = np.nonzero(mask)
    weights = s[mask]
    r = float((rows * weights).sum() / weights.sum()) / max(1, s.shape[0])
    c = float((cols * weights).sum() / weights.sum()) / max(1, s.shape[1])
    region = _REGIONS[(min(2, int(r * 3)), min(2, int(c * 3)))]
    how = "concentrated" if share >= 0.5 else "spread out"
    return {
        "region": region,
        "top_share": share,
        "sentence": (
            f"{label}: strongest around the {region} of the crop; its strongest 10 % of pixels "
            f"hold {100 * share:.0f} % of the map's total ({how})."
        ),
    }


def agreement(a: MapEntry, b: MapEntry, detail_px: float = 0.0) -> float:
    """Share of the strongest 10 % pixels two maps have in common (0 to 1; chance is about 0.1),
    with both maps blurred by a Gaussian of ``detail_px`` px first (engine/detail.py; 0: raw)."""
    if a.saliency.shape != b.saliency.shape:
        return float("nan")
    sa, sb = as_float32(a.saliency), as_float32(b.saliency)
    if detail_px > 0:
        sa, sb = smooth(np.abs(sa), detail_px), smooth(np.abs(sb), detail_px)
    ma, mb = _top_mask(sa), _top_mask(sb)
    return float((ma & mb).sum() / max(1, ma.sum()))


def agreement_sentence(a: MapEntry, b: MapEntry) -> str:
    """ "The two methods share N % of their strongest pixels" at the stated detail (the coarser
    of the two maps' reproducible details), the raw-pixel share beside it; "" if not comparable."""
    px = stated_detail(a.diagnostics, b.diagnostics, size=int(min(np.shape(a.saliency))))
    at, raw = agreement(a, b, px), agreement(a, b)
    if not math.isfinite(at):
        return ""
    where = f" at {px:g}-pixel detail (pixel by pixel {100 * raw:.0f} %)" if px else ""
    return (
        f"{_label(a.method)} and {_label(b.method)} share {100 * at:.0f} % of their strongest pixels{where} "
        f"({_agreement_words(at)}; chance is about 10 %)."
    )


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
    n, labels = len(report.images), [METHODS[m].label for m in report.methods]
    out = [
        f"This report explains the decisions of the image classifier \u201c{report.model.get('name')}\u201d "
        f"on {n} image{'s' if n != 1 else ''}, with {len(labels)} saliency method"
        f"{'s' if len(labels) != 1 else ''} ({', '.join(labels)}). A saliency map colours the pixels "
        "that most affected the model's score for its answer."
    ]
    if report.large:
        out.append(_answers_paragraph(report))
    else:
        out += [_image_paragraph(report, item) for item in report.images]
    if isinstance(report.comparison, dict) and report.comparison.get("headline"):
        out.append(
            f"Compared with another version of the model (see \u201cComparison\u201d): "
            f"{report.comparison['headline']}"
        )
    out.append("How far to trust the maps: " + " ".join(_trust_sentences(report)))
    return out


def _answers_paragraph(report: Report) -> str:
    """A large report: the most frequent answers and how often the model was unsure."""
    counts: dict[str, int] = {}
    for item in report.images:
        counts[item.prediction[0][1]] = counts.get(item.prediction[0][1], 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:5]
    unsure = sum(1 for i in report.images if i.prediction[0][2] < 0.6)
    return (
        "Most frequent answers: "
        + ", ".join(f"{k} ({v} images)" for k, v in top)
        + f". The model was unsure (below 60 % confidence) on {unsure} of the {len(report.images)} images; "
        "those deserve a closer look."
    )


def _image_paragraph(report: Report, item) -> str:
    """One image: the answer, what each map suggests, how far the maps agree."""
    (_, label, p), rest = item.prediction[0], item.prediction[1:]
    predicted = multilabel_set(report.model, item.prediction)
    if predicted is not None:
        text = f"{item.name}: the model finds {set_words(report.model, predicted)}"
    else:
        text = (
            f"{item.name}: the model answers \u201c{label}\u201d with {percent(p)} confidence "
            f"({confidence_words(p)})"
        )
    if rest and predicted is None:
        text += f"; next is \u201c{rest[0][1]}\u201d ({percent(rest[0][2])})"
    text += ". " + " ".join(describe_map(m)["sentence"] for m in item.maps.values())
    maps = list(item.maps.values())
    if len(maps) >= 2:
        pairs = [(a, b) for i, a in enumerate(maps) for b in maps[i + 1 :]][:3]
        text += " " + " ".join(filter(None, (agreement_sentence(a, b) for a, b in pairs)))
    if item.errors:
        text += f" {len(item.errors)} map(s) could not be computed (see below)."
    return text


def _trust_sentences(report: Report) -> list[str]:
    """The methods' limits, the sanity check's verdicts and the stability check's count."""
    trust = [GENERAL_LIMITS]
    cautions = [f"{METHODS[m].label}: {METHODS[m].caution}" for m in report.methods if METHODS[m].caution]
    if cautions:
        trust.append("Known limits of the methods used: " + " ".join(cautions))
    rows = _verdict_rows(report)
    if rows:
        failed = sorted({_label(r.get("method")) for r in rows if _passed(r) is False})
        passed = sorted({_label(r.get("method")) for r in rows if _passed(r) is True} - set(failed))
        trust.append(
            "In the sanity check supplied with this report, "
            + (f"{', '.join(passed)} passed" if passed else "no method passed")
            + (
                f" and {', '.join(failed)} failed: maps of a failing method should not be trusted "
                "as explanations"
                if failed
                else ""
            )
            + "."
        )
    else:
        trust.append(
            "No sanity-check results were supplied with this report; the literature reports that "
            "gradient and Grad-CAM pass the randomisation check and guided backprop fails it."
        )
    if report.stability is not None:
        rows = table_rows(report.stability)[1]
        unstable = [r for r in rows if str(r.get("verdict", "")).lower() not in ("stable", "")]
        trust.append(
            f"Stability was checked for {len(rows)} image/method pair(s); {len(unstable)} were "
            "not stable (see the stability section)."
        )
    return trust


def numbers_text(values) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values or []) + ")"


def date_text(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def diagnostics_text(m: MapEntry) -> str:
    """The map's checks in words: Integrated Gradients' completeness gap, an averaging method's
    convergence readout (saliency_core/engine/convergence.py)."""
    text = ""
    gap = m.diagnostics.get("completeness_gap_relative")
    if gap is not None:
        text += (
            f" Completeness gap {gap:.1%}: how far the pixels' contributions fall short of adding up to "
            "the score difference (small is good)."
        )
    readout = m.diagnostics.get("convergence")
    if isinstance(readout, dict):
        words, details = describe_convergence(readout)
        text += " " + " ".join(t for t in (words, details) if t)
    return text


def params_text(method: str, report: Report) -> list[tuple[str, str, str]]:
    """(name, value, meaning) of the parameters used, from the first map of ``method``."""
    for item in report.images:
        if method in item.maps:
            return [(k, cell_text(v), PARAM_HELP.get(k, "")) for k, v in item.maps[method].params.items()]
    return [(k, cell_text(v), PARAM_HELP.get(k, "")) for k, v in METHODS[method].defaults.items()]


def seed_text(method: str, report: Report) -> str:
    params = dict((k, v) for k, v, _ in params_text(method, report))
    if "seed" in params:
        return f"Seed {params['seed']}: the same seed gives the same map."
    return "Seed: not used; this method has no randomness, so it gives the same map every time."
