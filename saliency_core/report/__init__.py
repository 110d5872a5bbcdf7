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
- ``audit``: the review audit log check, ``store.AuditCheck.record()`` (``verified``,
  ``problem``, ``head`` ...); the review section states whether the chain verified.
- ``comparison``: a dict with ``headline`` (one sentence for the summary), ``paragraphs`` (plain
  text) and ``tables`` (``(title, rows)`` pairs), as ``compare.Comparison.report_section()`` gives.

Example:
    >>> model = load_model("demo")
    >>> rep = build_report(model, ["chelsea.png", "coffee.png"], ["gradient", "gradcam"])
    >>> rep.write("report.html", pdf_path="report.pdf")
    >>> [r.status for r in replay(read_replay("report.html"))]
    ['match', 'match', 'match', 'match']
"""

from __future__ import annotations

from .build import ImageEntry, MapEntry, Report, build_report, map_entry
from .content import (
    ALPHA,
    CLIP_PERCENTILE,
    DEFAULT_TITLE,
    EMBED_MAPS_UP_TO,
    GENERAL_LIMITS,
    GLOSSARY,
    LARGE_REPORT,
    PAGE_SIZE,
    PDF_ROWS_PER_PAGE,
    REPLAY_ID,
    SCHEMA,
    agreement,
    audit_sentence,
    confidence_words,
    describe_map,
    map_summary,
    readable_table,
    summary_paragraphs,
    table_rows,
)
from .replay import ReplayResult, find_replay_model, read_replay, recorded_fingerprint, replay

__all__ = [
    "build_report",
    "Report",
    "ImageEntry",
    "MapEntry",
    "map_entry",
    "read_replay",
    "replay",
    "ReplayResult",
    "find_replay_model",
    "recorded_fingerprint",
    "map_summary",
    "table_rows",
    "readable_table",
    "summary_paragraphs",
    "confidence_words",
    "describe_map",
    "agreement",
    "audit_sentence",
    "SCHEMA",
    "REPLAY_ID",
    "DEFAULT_TITLE",
    "LARGE_REPORT",
    "PAGE_SIZE",
    "PDF_ROWS_PER_PAGE",
    "EMBED_MAPS_UP_TO",
    "GLOSSARY",
    "GENERAL_LIMITS",
    "ALPHA",
    "CLIP_PERCENTILE",
]
