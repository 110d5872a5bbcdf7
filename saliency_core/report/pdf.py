"""The PDF document (fpdf2, pure Python)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..engine.methods import METHODS
from ._common import (
    GENERAL_LIMITS,
    GLOSSARY,
    PDF_ROWS_PER_PAGE,
    _cell,
    _confidence_words,
    _multilabel_set,
    _percent,
    _set_words,
    _thumb,
    audit_sentence,
    readable_table,
    summary_paragraphs,
    table_rows,
)
from .html_page import _date, _diagnostics_text, _nums, _params_text, _seed_text
from .qualification import appendix

if TYPE_CHECKING:
    from .build import Report

# ---- PDF ------------------------------------------------------------------------------------------

_LATIN1 = str.maketrans(
    {
        "\u2013": "-",
        "\u2014": "-",
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2026": "...",
        "\u2264": "<=",
        "\u2265": ">=",
        "\u2192": "->",
        "\u2212": "-",
        "\u2248": "~",
        "\u00a0": " ",
        "\u2022": "-",
    }
)


def _latin1(text) -> str:
    """fpdf2's built-in fonts cover Latin-1: common typography is mapped, anything else becomes '?'."""
    return str(text).translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


def _pdf(report: Report) -> bytes:
    try:
        from fpdf import FPDF, FontFace
        from fpdf.enums import XPos, YPos
    except ImportError:
        raise ValueError(
            "Making a PDF needs the package fpdf2; install the project's requirements.txt."
        ) from None

    class Doc(FPDF):
        def footer(self):
            self.set_y(-12)
            self.set_font("Helvetica", "", 7)
            self.set_text_color(110)
            self.cell(
                0,
                5,
                _latin1(
                    f"{report.title} - {_date(report.created)} - model sha256 "
                    f"{str(report.model.get('fingerprint'))[:16]}... - page {self.page_no()} of {{nb}}"
                ),
                align="C",
            )
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

    def para(text, size=9.5, style="", h=None, align="J"):
        pdf.set_font("Helvetica", style, size)
        pdf.multi_cell(width, h or size * 0.47, _latin1(text), align=align, **nl)
        pdf.ln(1.2)

    def kv_table(rows, col1=55, size=8.5):
        pdf.set_font("Helvetica", "", size)
        with pdf.table(
            col_widths=(col1, width - col1),
            first_row_as_headings=False,
            line_height=size * 0.5,
            text_align="LEFT",
            borders_layout="HORIZONTAL_LINES",
        ) as t:
            for k, v in rows:
                row = t.row()
                row.cell(_latin1(k))
                row.cell(_latin1(v))
        pdf.ln(2)

    def grid_table(columns, rows, size=7.5):
        if not rows:
            para("(no rows)")
            return
        columns, rows, full, common = readable_table(columns, rows)
        if common:
            para("In every row: " + "; ".join(f"{c}: {v}" for c, v in common) + ".", size=8, align="L")
        texts = [[_latin1(c) for c in columns]] + [[_latin1(_cell(r.get(c))) for c in columns] for r in rows]
        pad = 2 * pdf.c_margin + 1.0

        def measure(size):  # (longest word, whole text) per column, header in bold
            words, lengths = [], []
            for i in range(len(columns)):
                w = l = 0.0
                for n, t in enumerate(texts):
                    pdf.set_font("Helvetica", "B" if n == 0 else "", size)
                    w = max([w] + [pdf.get_string_width(part) for part in t[i].split()])
                    l = max(l, pdf.get_string_width(t[i]))
                words.append(w + pad)
                lengths.append(l + pad)
            return words, lengths

        words, lengths = measure(size)
        while sum(words) > width and size > 5.0:  # too many columns: smaller type before broken words
            size -= 0.5
            words, lengths = measure(size)
        spare = max(0.0, width - 0.01 - sum(words))
        extra = [max(0.0, l - w) for l, w in zip(lengths, words)]
        widths = [
            w + (spare * e / sum(extra) if sum(extra) else spare / len(words)) for w, e in zip(words, extra)
        ]
        pdf.set_font("Helvetica", "", size)
        pdf.set_fill_color(255)
        with pdf.table(
            col_widths=widths,
            width=min(sum(widths), width - 0.01),
            align="LEFT",
            first_row_as_headings=True,
            line_height=size * 0.5,
            text_align="LEFT",
            borders_layout="HORIZONTAL_LINES",
            headings_style=FontFace(emphasis="BOLD", fill_color=(235, 235, 240)),
        ) as t:
            for line in texts:
                row = t.row()
                for cell in line:
                    row.cell(cell)
        if full:
            para("Full values: " + "; ".join(f"{a} = {b}" for a, b in full), size=6.5, align="L")
        pdf.ln(2)

    # page 1: title and summary
    pdf.add_page()
    pdf.start_section(_latin1("Summary"))
    pdf.set_font("Helvetica", "B", 20)
    pdf.multi_cell(width, 9, _latin1(report.title), **nl)
    para(
        f"Created {_date(report.created)} - model {report.model.get('name')} - {len(report.images)} image(s) x "
        f"{len(report.methods)} method(s)",
        size=9,
    )
    para(f"Model fingerprint (sha256 of the weights): {report.model.get('fingerprint')}", size=7.5)
    pdf.ln(2)
    heading("Summary in plain words", 14)
    paras = summary_paragraphs(report)
    for p in paras[:-1]:
        para(p)
    para(paras[-1])
    para(
        "Terms are explained on the next page. The HTML version of this report carries the data to replay "
        "every map.",
        size=8,
    )

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
    kv_table(
        [
            ("Name", d.get("name")),
            ("Fingerprint (sha256)", d.get("fingerprint")),
            ("Classes", d.get("classes")),
            ("Input", f"{d.get('input_size')} x {d.get('input_size')} pixels"),
            (
                "Preprocessing",
                f"short side to {d.get('resize')} px ({d.get('interpolation')}), {d.get('crop')} "
                f"crop, mean {_nums(d.get('mean'))}, std {_nums(d.get('std'))}",
            ),
            ("Grad-CAM layer", d.get("gradcam_layer") or "none"),
            ("Loaded from", report.model_source),
        ]
        + [
            (f"Card: {k}", v)
            for k, v in (d.get("card") or {}).items()
            if k != "digest" and not (isinstance(v, (dict, list)) and len(str(v)) > 200)
        ]
    )
    heading("Methods, parameters and known limits", 13)
    para(GENERAL_LIMITS, size=8.5)
    for m in report.methods:
        meta = METHODS[m]
        pdf.set_font("Helvetica", "B", 10.5)
        pdf.multi_cell(width, 5.2, _latin1(meta.label), **nl)
        para(meta.description, size=8.5)
        para("Bright means: " + meta.meaning.format(score="the score of the explained class") + ".", size=8.5)
        params = _params_text(m, report)
        para(
            "Parameters: "
            + (
                "; ".join(f"{k} = {v} ({h})" if h else f"{k} = {v}" for k, v, h in params)
                if params
                else "none; this method has no settings."
            ),
            size=8.5,
        )
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
        para(
            "Images left out (they could not be read): " + "; ".join(msg for _, msg in report.skipped),
            size=8.5,
        )

    # optional results
    if isinstance(report.comparison, dict):
        pdf.add_page()
        pdf.start_section("Comparison")
        heading("Comparison with another version of the model")
        for text in report.comparison.get("paragraphs") or []:
            para(text)
        for title, rows in report.comparison.get("tables") or []:
            heading(str(title), 11)
            grid_table(*table_rows(rows))
    for key, title in (
        ("sanity", "Sanity check: model randomisation"),
        ("stability", "Stability"),
        ("validation", "Validation against expert annotations"),
        ("reviews", "Review decisions"),
    ):
        data = getattr(report, key)
        if data is None:
            continue
        pdf.add_page()
        pdf.start_section(_latin1(title))
        heading(title)
        if key == "reviews":
            para(audit_sentence(report.audit), size=8.5)
        columns, rows = table_rows(data)
        grid_table(columns, rows)
        para(f"Table: {title.lower()}, {len(rows)} row(s), as supplied with the report.", size=8)

    if report.qualification:  # the scorecard in force, as an appendix
        data = appendix(report.qualification)
        pdf.add_page()
        pdf.start_section("Qualification")
        heading(data["title"])
        for text in data["paragraphs"]:
            para(text, size=8.5)
        grid_table(data["columns"], data["rows"])

    # software and date
    pdf.add_page()
    pdf.start_section("Software, date and replay")
    heading("Software, date and replay")
    para(f"Created {_date(report.created)}.")
    kv_table([(k, v) for k, v in report.versions.items()] + [(k, v) for k, v in report.environment.items()])
    para(
        "Replay: the HTML version of this report contains a machine-readable block (JSON) with every input and "
        "parameter and a fingerprint of each map; 'python -m saliency_core replay REPORT.html' recomputes every "
        "map and says whether it matches. Use the same CPU thread count for bit-identical numbers."
    )
    return bytes(pdf.output())


def _pdf_image(pdf, array_or_image, x, y, w):
    image = (
        array_or_image
        if isinstance(array_or_image, Image.Image)
        else Image.fromarray(np.asarray(array_or_image))
    )
    h = w * image.size[1] / image.size[0]
    pdf.image(image, x=x, y=y, w=w, h=h)
    return h


def _pdf_image_page(pdf, report, index, item, width, heading, para):
    from fpdf.enums import XPos, YPos

    pdf.add_page()
    pdf.start_section(_latin1(f"Image {index}: {item.name}"))
    heading(f"Image {index} of {len(report.images)}: {item.name}", 14)
    top = item.prediction[0]
    predicted = _multilabel_set(report.model, item.prediction)
    para(
        f"Prediction: the model finds {_set_words(report.model, predicted, quote=lambda t: chr(34) + t + chr(34))}."
        if predicted is not None
        else f'Prediction: "{top[1]}" with {_percent(top[2])} confidence ({_confidence_words(top[2])}).',
        size=10,
        style="B",
    )
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
    cells = [("crop", None, "a")]
    for k, m in enumerate(maps):
        letter = chr(ord("b") + k) if k < 25 else f"-{k + 2}"
        cells.append(("map", m, letter))
        if m.outline is not None:  # the region view beside its map
            cells.append(("outline", m, letter + "'"))
    per_row = min(4, len(cells))
    gap = 4
    w = (width - gap * (per_row - 1)) / per_row
    for start in range(0, len(cells), per_row):
        row = cells[start : start + per_row]
        y0 = pdf.get_y()
        if y0 + w + 40 > pdf.h - pdf.b_margin:
            pdf.add_page()
            y0 = pdf.get_y()
        bottoms = []
        for j, (kind, m, letter) in enumerate(row):
            x = pdf.l_margin + j * (w + gap)
            if kind == "outline":
                h = _pdf_image(pdf, m.outline, x, y0, w)
                pdf.set_xy(x, y0 + h + 1)
                pdf.set_font("Helvetica", "B", 7)
                pdf.multi_cell(
                    w,
                    3.2,
                    _latin1(f"Figure {index}{letter}. {METHODS[m.method].label}, as regions."),
                    new_x=XPos.LEFT,
                    new_y=YPos.NEXT,
                )
                pdf.set_font("Helvetica", "", 6.5)
                pdf.multi_cell(w, 3.0, _latin1(m.outline_legend), new_x=XPos.LEFT, new_y=YPos.NEXT)
                bottoms.append(pdf.get_y())
                continue
            if kind == "crop":
                h = _pdf_image(pdf, item.crop, x, y0, w)
                pdf.set_xy(x, y0 + h + 1)
                pdf.set_font("Helvetica", "", 7)
                pdf.multi_cell(
                    w,
                    3.2,
                    _latin1(f"Figure {index}a. What the model sees: the crop of {item.name}."),
                    new_x=XPos.LEFT,
                    new_y=YPos.NEXT,
                )
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
            pdf.set_font("Helvetica", "B", 7)
            pdf.multi_cell(
                w,
                3.2,
                _latin1(f'Figure {index}{letter}. {label}, explaining "{m.target_label}".'),
                new_x=XPos.LEFT,
                new_y=YPos.NEXT,
            )
            pdf.set_font("Helvetica", "", 6.5)
            text = m.legend + _diagnostics_text(m)
            if METHODS[m.method].caution:
                text += " Caution: " + METHODS[m.method].caution
            pdf.multi_cell(w, 3.0, _latin1(text), new_x=XPos.LEFT, new_y=YPos.NEXT)
            bottoms.append(pdf.get_y())
        pdf.set_xy(pdf.l_margin, max(bottoms) + 3)
    para(
        f"Figure {index}: {item.name}, the crop the model saw and one saliency map per method, side by side; the "
        "colour bar under each map gives its values (inferno, or blue-grey-red for signed maps: readable with "
        "colour-vision deficiencies).",
        size=7.5,
    )
    if item.errors:
        pdf.set_text_color(160, 0, 0)
        para(
            "Maps that could not be computed: " + "; ".join(f"{m}: {msg}" for m, msg in item.errors.items()),
            size=8,
        )
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
                para(
                    "One row per image: the crop the model saw, then one thumbnail per method in the order "
                    + ", ".join(METHODS[m].label for m in report.methods)
                    + ". Full-size maps with colour bars and legends are in the HTML version.",
                    size=8,
                )
        y = pdf.get_y()
        pdf.set_font("Helvetica", "B", 8)
        pdf.set_xy(pdf.l_margin, y)
        pdf.multi_cell(text_w, 3.6, _latin1(f"{k + 1}. {item.name}"))
        pdf.set_x(pdf.l_margin)
        pdf.set_font("Helvetica", "", 7.5)
        top = item.prediction[0]
        pdf.multi_cell(text_w, 3.4, _latin1(f'Prediction: "{top[1]}", {_percent(top[2])}'))
        x = pdf.l_margin + text_w
        _pdf_image(pdf, _thumb(item.crop, 160), x, y, side)
        for j, m in enumerate(report.methods, 1):
            if m in item.maps:
                _pdf_image(pdf, _thumb(item.maps[m].overlay, 160), x + j * (side + 2), y, side)
        pdf.set_xy(pdf.l_margin, y + side + 4)
    para(f"Figure: thumbnails of {len(report.images)} images and their maps.", size=7.5)
