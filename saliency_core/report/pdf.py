"""The PDF document (fpdf2, pure Python)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..engine.methods import METHODS
from .content import (
    GENERAL_LIMITS,
    GLOSSARY,
    PDF_ROWS_PER_PAGE,
    audit_sentence,
    cell_text,
    confidence_words,
    date_text,
    diagnostics_text,
    multilabel_set,
    numbers_text,
    params_text,
    percent,
    readable_table,
    seed_text,
    set_words,
    summary_paragraphs,
    table_rows,
    thumb_image,
)
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


def write_pdf(report: Report) -> bytes:
    """The report as PDF bytes: summary, words used, the model and methods, the images, the
    optional results (comparison, sanity, stability, validation, reviews), software and replay."""
    writer = _PdfWriter(report)
    writer.summary_page()
    writer.glossary_page()
    writer.model_page()
    writer.image_pages()
    writer.result_pages()
    writer.software_page()
    return bytes(writer.pdf.output())


def _fpdf():
    try:
        from fpdf import FPDF, FontFace
        from fpdf.enums import XPos, YPos
    except ImportError:
        raise ValueError(
            "Making a PDF needs the package fpdf2; install the project's requirements.txt."
        ) from None
    return FPDF, FontFace, XPos, YPos


class _PdfWriter:
    """One PDF being written: the document, its text width, and one method per section."""

    def __init__(self, report: Report):
        FPDF, self.FontFace, XPos, YPos = _fpdf()

        class Doc(FPDF):
            def footer(self):
                self.set_y(-12)
                self.set_font("Helvetica", "", 7)
                self.set_text_color(110)
                self.cell(
                    0,
                    5,
                    _latin1(
                        f"{report.title} - {date_text(report.created)} - model sha256 "
                        f"{str(report.model.get('fingerprint'))[:16]}... - page {self.page_no()} of {{nb}}"
                    ),
                    align="C",
                )
                self.set_text_color(0)

        self.report = report
        pdf = self.pdf = Doc(orientation="P", unit="mm", format="A4")
        pdf.set_auto_page_break(True, margin=16)
        pdf.set_margins(15, 15, 15)
        pdf.set_title(_latin1(report.title))
        pdf.set_creator(_latin1(f"saliency_core {report.versions.get('saliency_core', '')}"))
        pdf.set_creation_date(report.created)
        self.width = pdf.w - pdf.l_margin - pdf.r_margin
        self.nl = dict(new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    # ---- building blocks -------------------------------------------------------------------------

    def heading(self, text, size=15):
        self.pdf.set_font("Helvetica", "B", size)
        self.pdf.multi_cell(self.width, size * 0.5, _latin1(text), **self.nl)
        self.pdf.ln(1.5)

    def para(self, text, size=9.5, style="", h=None, align="J"):
        self.pdf.set_font("Helvetica", style, size)
        self.pdf.multi_cell(self.width, h or size * 0.47, _latin1(text), align=align, **self.nl)
        self.pdf.ln(1.2)

    def kv_table(self, rows, col1=55, size=8.5):
        pdf = self.pdf
        pdf.set_font("Helvetica", "", size)
        with pdf.table(
            col_widths=(col1, self.width - col1),
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

    def _column_widths(self, texts, size):
        """(widths, size): each column at least its longest word, the spare width shared by how
        much more each column's longest text needs; smaller type before broken words."""
        pdf, pad = self.pdf, 2 * self.pdf.c_margin + 1.0

        def measure(size):  # (longest word, whole text) per column, header in bold
            words, lengths = [], []
            for i in range(len(texts[0])):
                w = length = 0.0
                for n, t in enumerate(texts):
                    pdf.set_font("Helvetica", "B" if n == 0 else "", size)
                    w = max([w] + [pdf.get_string_width(part) for part in t[i].split()])
                    length = max(length, pdf.get_string_width(t[i]))
                words.append(w + pad)
                lengths.append(length + pad)
            return words, lengths

        words, lengths = measure(size)
        while sum(words) > self.width and size > 5.0:  # too many columns: smaller type before broken words
            size -= 0.5
            words, lengths = measure(size)
        spare = max(0.0, self.width - 0.01 - sum(words))
        extra = [max(0.0, length - w) for length, w in zip(lengths, words)]
        widths = [
            w + (spare * e / sum(extra) if sum(extra) else spare / len(words)) for w, e in zip(words, extra)
        ]
        return widths, size

    def grid_table(self, columns, rows, size=7.5):
        if not rows:
            self.para("(no rows)")
            return
        columns, rows, full, common = readable_table(columns, rows)
        if common:
            self.para("In every row: " + "; ".join(f"{c}: {v}" for c, v in common) + ".", size=8, align="L")
        texts = [[_latin1(c) for c in columns]] + [
            [_latin1(cell_text(r.get(c))) for c in columns] for r in rows
        ]
        widths, size = self._column_widths(texts, size)
        pdf = self.pdf
        pdf.set_font("Helvetica", "", size)
        pdf.set_fill_color(255)
        with pdf.table(
            col_widths=widths,
            width=min(sum(widths), self.width - 0.01),
            align="LEFT",
            first_row_as_headings=True,
            line_height=size * 0.5,
            text_align="LEFT",
            borders_layout="HORIZONTAL_LINES",
            headings_style=self.FontFace(emphasis="BOLD", fill_color=(235, 235, 240)),
        ) as t:
            for line in texts:
                row = t.row()
                for cell in line:
                    row.cell(cell)
        if full:
            self.para("Full values: " + "; ".join(f"{a} = {b}" for a, b in full), size=6.5, align="L")
        pdf.ln(2)

    # ---- sections --------------------------------------------------------------------------------

    def summary_page(self):
        """Page 1: title and summary."""
        pdf, report, para = self.pdf, self.report, self.para
        pdf.add_page()
        pdf.start_section(_latin1("Summary"))
        pdf.set_font("Helvetica", "B", 20)
        pdf.multi_cell(self.width, 9, _latin1(report.title), **self.nl)
        para(
            f"Created {date_text(report.created)} - model {report.model.get('name')} - {len(report.images)} "
            f"image(s) x {len(report.methods)} method(s)",
            size=9,
        )
        para(f"Model fingerprint (sha256 of the weights): {report.model.get('fingerprint')}", size=7.5)
        pdf.ln(2)
        self.heading("Summary in plain words", 14)
        paras = summary_paragraphs(report)
        for p in paras[:-1]:
            para(p)
        para(paras[-1])
        para(
            "Terms are explained on the next page. The HTML version of this report carries the data to "
            "replay every map.",
            size=8,
        )

    def glossary_page(self):
        """Page 2: the words used."""
        pdf = self.pdf
        pdf.add_page()
        pdf.start_section("Words used")
        self.heading("Words used in this report")
        for term, text in GLOSSARY.values():
            pdf.set_font("Helvetica", "B", 9)
            pdf.multi_cell(self.width, 4.4, _latin1(term), **self.nl)
            pdf.set_font("Helvetica", "", 9)
            pdf.multi_cell(self.width, 4.4, _latin1(text), **self.nl)
            pdf.ln(0.8)

    def model_page(self):
        """Page 3: the model, then each method with its parameters and known limits."""
        pdf, report, para = self.pdf, self.report, self.para
        pdf.add_page()
        pdf.start_section("The model and the methods")
        self.heading("The model")
        d = report.model
        self.kv_table(
            [
                ("Name", d.get("name")),
                ("Fingerprint (sha256)", d.get("fingerprint")),
                ("Classes", d.get("classes")),
                ("Input", f"{d.get('input_size')} x {d.get('input_size')} pixels"),
                (
                    "Preprocessing",
                    f"short side to {d.get('resize')} px ({d.get('interpolation')}), {d.get('crop')} "
                    f"crop, mean {numbers_text(d.get('mean'))}, std {numbers_text(d.get('std'))}",
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
        self.heading("Methods, parameters and known limits", 13)
        para(GENERAL_LIMITS, size=8.5)
        for m in report.methods:
            self.method_text(m)

    def method_text(self, m: str):
        pdf, para, meta = self.pdf, self.para, METHODS[m]
        pdf.set_font("Helvetica", "B", 10.5)
        pdf.multi_cell(self.width, 5.2, _latin1(meta.label), **self.nl)
        para(meta.description, size=8.5)
        para("Bright means: " + meta.meaning.format(score="the score of the explained class") + ".", size=8.5)
        params = params_text(m, self.report)
        para(
            "Parameters: "
            + (
                "; ".join(f"{k} = {v} ({h})" if h else f"{k} = {v}" for k, v, h in params)
                if params
                else "none; this method has no settings."
            ),
            size=8.5,
        )
        para(seed_text(m, self.report), size=8.5)
        if meta.caution:
            pdf.set_text_color(140, 70, 0)
            para("Known limit: " + meta.caution, size=8.5, style="B")
            pdf.set_text_color(0)
        para("Reference: " + meta.reference, size=7.5)

    def image_pages(self):
        """One page per image, or rows of thumbnails for a large report; the images left out."""
        report = self.report
        if report.large:
            _pdf_rows(self.pdf, report, self.width, self.heading, self.para)
        else:
            for index, item in enumerate(report.images, 1):
                _pdf_image_page(self.pdf, report, index, item, self.width, self.heading, self.para)
        if report.skipped:
            self.para(
                "Images left out (they could not be read): " + "; ".join(msg for _, msg in report.skipped),
                size=8.5,
            )

    def result_pages(self):
        """The optional results supplied with the report, one section each."""
        pdf, report = self.pdf, self.report
        if isinstance(report.comparison, dict):
            pdf.add_page()
            pdf.start_section("Comparison")
            self.heading("Comparison with another version of the model")
            for text in report.comparison.get("paragraphs") or []:
                self.para(text)
            for title, rows in report.comparison.get("tables") or []:
                self.heading(str(title), 11)
                self.grid_table(*table_rows(rows))
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
            self.heading(title)
            if key == "reviews":
                self.para(audit_sentence(report.audit), size=8.5)
            columns, rows = table_rows(data)
            self.grid_table(columns, rows)
            self.para(f"Table: {title.lower()}, {len(rows)} row(s), as supplied with the report.", size=8)
        if report.qualification:  # the scorecard in force, as an appendix
            data = appendix(report.qualification)
            pdf.add_page()
            pdf.start_section("Qualification")
            self.heading(data["title"])
            for text in data["paragraphs"]:
                self.para(text, size=8.5)
            self.grid_table(data["columns"], data["rows"])

    def software_page(self):
        """Last page: software, date and how to replay."""
        report = self.report
        self.pdf.add_page()
        self.pdf.start_section("Software, date and replay")
        self.heading("Software, date and replay")
        self.para(f"Created {date_text(report.created)}.")
        self.kv_table(
            [(k, v) for k, v in report.versions.items()] + [(k, v) for k, v in report.environment.items()]
        )
        self.para(
            "Replay: the HTML version of this report contains a machine-readable block (JSON) with every "
            "input and parameter and a fingerprint of each map; 'python -m saliency_core replay REPORT.html' "
            "recomputes every map and says whether it matches. Use the same CPU thread count for "
            "bit-identical numbers."
        )


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
    """One image: its prediction, then the crop and each map (and region view) as figures."""
    pdf.add_page()
    pdf.start_section(_latin1(f"Image {index}: {item.name}"))
    heading(f"Image {index} of {len(report.images)}: {item.name}", 14)
    _pdf_prediction(pdf, report, item, para)
    cells = [("crop", None, "a")]
    for k, m in enumerate(item.maps.values()):
        letter = chr(ord("b") + k) if k < 25 else f"-{k + 2}"
        cells.append(("map", m, letter))
        if m.outline is not None:  # the region view beside its map
            cells.append(("outline", m, letter + "'"))
    per_row = min(4, len(cells))
    gap = 4
    w = (width - gap * (per_row - 1)) / per_row
    for start in range(0, len(cells), per_row):
        y0 = pdf.get_y()
        if y0 + w + 40 > pdf.h - pdf.b_margin:
            pdf.add_page()
            y0 = pdf.get_y()
        bottoms = [
            _pdf_figure(pdf, item, index, cell, pdf.l_margin + j * (w + gap), y0, w)
            for j, cell in enumerate(cells[start : start + per_row])
        ]
        pdf.set_xy(pdf.l_margin, max(bottoms) + 3)
    para(
        f"Figure {index}: {item.name}, the crop the model saw and one saliency map per method, side by "
        "side; the colour bar under each map gives its values (inferno, or blue-grey-red for signed maps: "
        "readable with colour-vision deficiencies).",
        size=7.5,
    )
    if item.errors:
        pdf.set_text_color(160, 0, 0)
        para(
            "Maps that could not be computed: " + "; ".join(f"{m}: {msg}" for m, msg in item.errors.items()),
            size=8,
        )
        pdf.set_text_color(0)


def _pdf_prediction(pdf, report, item, para):
    """The prediction in words, then the top classes with a bar each."""
    top = item.prediction[0]
    predicted = multilabel_set(report.model, item.prediction)
    para(
        "Prediction: the model finds "
        f"{set_words(report.model, predicted, quote=lambda t: chr(34) + t + chr(34))}."
        if predicted is not None
        else f'Prediction: "{top[1]}" with {percent(top[2])} confidence ({confidence_words(top[2])}).',
        size=10,
        style="B",
    )
    pdf.set_font("Helvetica", "", 8.5)
    for k, (_, label, p) in enumerate(item.prediction, 1):
        y = pdf.get_y()
        pdf.cell(8, 4.2, str(k))
        pdf.cell(70, 4.2, _latin1(label))
        pdf.cell(20, 4.2, percent(p), align="R")
        pdf.set_fill_color(117, 112, 179)
        pdf.rect(pdf.l_margin + 102, y + 1, max(0.3, 60 * p), 2.4, style="F")
        pdf.ln(4.2)
    pdf.ln(3)


def _pdf_caption(pdf, w, text, size, style=""):
    from fpdf.enums import XPos, YPos

    pdf.set_font("Helvetica", style, size)
    pdf.multi_cell(w, 3.2 if size >= 7 else 3.0, _latin1(text), new_x=XPos.LEFT, new_y=YPos.NEXT)


def _pdf_figure(pdf, item, index, cell, x, y0, w) -> float:
    """One figure at (x, y0), ``w`` wide: the crop, a map with its colour bar, or a map's region
    view; with its caption. Returns the y below it."""
    kind, m, letter = cell
    if kind == "outline":
        h = _pdf_image(pdf, m.outline, x, y0, w)
        pdf.set_xy(x, y0 + h + 1)
        _pdf_caption(pdf, w, f"Figure {index}{letter}. {METHODS[m.method].label}, as regions.", 7, "B")
        _pdf_caption(pdf, w, m.outline_legend, 6.5)
        return pdf.get_y()
    if kind == "crop":
        h = _pdf_image(pdf, item.crop, x, y0, w)
        pdf.set_xy(x, y0 + h + 1)
        _pdf_caption(pdf, w, f"Figure {index}a. What the model sees: the crop of {item.name}.", 7)
        return pdf.get_y()
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
    _pdf_caption(pdf, w, f'Figure {index}{letter}. {label}, explaining "{m.target_label}".', 7, "B")
    text = m.legend + diagnostics_text(m)
    if METHODS[m.method].caution:
        text += " Caution: " + METHODS[m.method].caution
    _pdf_caption(pdf, w, text, 6.5)
    return pdf.get_y()


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
        pdf.multi_cell(text_w, 3.4, _latin1(f'Prediction: "{top[1]}", {percent(top[2])}'))
        x = pdf.l_margin + text_w
        _pdf_image(pdf, thumb_image(item.crop, 160), x, y, side)
        for j, m in enumerate(report.methods, 1):
            if m in item.maps:
                _pdf_image(pdf, thumb_image(item.maps[m].overlay, 160), x + j * (side + 2), y, side)
        pdf.set_xy(pdf.l_margin, y + side + 4)
    para(f"Figure: thumbnails of {len(report.images)} images and their maps.", size=7.5)
