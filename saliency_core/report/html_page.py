"""The self-contained HTML document."""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING

from ..engine.methods import METHODS
from .content import (
    GENERAL_LIMITS,
    GLOSSARY,
    REPLAY_ID,
    audit_sentence,
    cell_text,
    confidence_words,
    data_uri,
    date_text,
    diagnostics_text,
    json_block,
    jsonable,
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
    from .build import ImageEntry, Report

# ---- HTML ---------------------------------------------------------------------------------------


def _e(text) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
:root { --ink:#1d1d1f; --muted:#555; --line:#d0d0d0; --soft:#f4f4f6; --warn:#8a4b00; --warnbg:#fff4e5; }
* { box-sizing: border-box; }
body {
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  color: var(--ink);
  max-width: 1100px; margin: 0 auto; padding: 24px; line-height: 1.45; font-size: 15px; }
h1 { font-size: 1.8em; margin: 0 0 .2em; }
h2 { border-bottom: 2px solid var(--line); padding-bottom: .2em; margin-top: 2em; }
h3 { margin: 1.2em 0 .4em; }
.muted { color: var(--muted); }
code, .mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .9em; word-break: break-all; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .92em; max-width: 100%; }
.wide { max-width: 100%; overflow-x: auto; } td { overflow-wrap: break-word; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); }
.summary p { margin: .5em 0; } .summary { background: var(--soft); padding: 12px 18px; border-radius: 8px; }
.caution {
  background: var(--warnbg);
  color: var(--warn);
  border-left: 4px solid var(--warn);
  padding: 6px 10px;
  margin: .4em 0;
}
dl.glossary dt { font-weight: 600; margin-top: .4em; } dl.glossary dd { margin: 0 0 0 1.2em; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; margin: 14px 0; }
.row { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
figure { margin: 0; } figure.map, figure.crop { width: 232px; }
figure img {
  width: 100%;
  height: auto;
  image-rendering: auto;
  border: 1px solid var(--line);
  display: block;
}
figcaption { font-size: .85em; color: var(--muted); margin-top: 4px; }
.bar {
  height: 12px;
  width: 100%;
  margin-top: 4px;
  background-size: 100% 100%;
  -webkit-print-color-adjust: exact;
  print-color-adjust: exact;
}
.ticks { position: relative; height: 1.3em; font-size: .78em; }
.ticks span { position: absolute; transform: translateX(-50%); white-space: nowrap; }
.ticks span.first { transform: none; } .ticks span.last { transform: translateX(-100%); }
.pred td.p { text-align: right; font-variant-numeric: tabular-nums; }
.pbar { display: inline-block; height: .7em; background: #7570b3; vertical-align: middle; }
.thumbs { display: flex; gap: 6px; align-items: flex-start; } .thumbs figure { width: 96px; }
.thumbs figcaption { font-size: .72em; }
nav.pager a {
  display: inline-block;
  padding: 2px 8px;
  margin: 2px;
  border: 1px solid var(--line);
  border-radius: 4px;
  text-decoration: none;
}
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
  figure.map, figure.crop { width: 52mm; }
  .row { gap: 3mm; }
  .card { padding: 3mm; }
  figcaption { font-size: 7.5pt; }
  nav.pager, .screen-only { display: none; }
  .pages > .page, .pages > .page:first-child:not(:target) { display: block !important; }
  a { color: inherit; text-decoration: none; }
}
"""


class HtmlPage:
    def __init__(self, report: Report, page_size: int):
        self.r = report
        self.page_size = max(1, int(page_size))
        self.fmt = "JPEG" if report.large else "PNG"  # large reports: JPEG keeps the file usable
        self.figure = 0

    def document(self, record: dict) -> str:
        r = self.r
        bars = {m.colormap: m.bar for i in r.images for m in i.maps.values()}  # one per colormap
        css = _CSS + "".join(
            f".cb-{c} {{ background-image: url({data_uri(bar)}); }}\n" for c, bar in sorted(bars.items())
        )
        csp = (
            "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'none'; "
            "base-uri 'none'; form-action 'none'"
        )
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta name="generator" content="saliency_core {_e(r.versions.get("saliency_core", ""))}">',
            f"<title>{_e(r.title)}</title>",
            f"<style>{css}</style>",
            "</head>",
            "<body>",
            self.header(),
            self.summary(),
            self.glossary(),
            self.model(),
            self.methods(),
            self.images(),
            self.optional(),
            self.software(),
            f'<script type="application/json" id="{REPLAY_ID}">{json_block(record)}</script>',
            "</body>",
            "</html>",
        ]
        return "\n".join(p for p in parts if p)

    # -- sections
    def header(self) -> str:
        r = self.r
        toc = [
            ("summary", "Summary"),
            ("glossary", "Words used"),
            ("model", "The model"),
            ("methods", "Methods"),
            ("images", "Images"),
        ]
        toc += [
            (k, t)
            for k, t in (
                ("comparison", "Comparison"),
                ("sanity", "Sanity check"),
                ("stability", "Stability"),
                ("validation", "Validation"),
                ("reviews", "Review decisions"),
            )
            if getattr(r, k) is not None
        ]
        toc.append(("software", "Software and replay"))
        return (
            f"<header><h1>{_e(r.title)}</h1>"
            f'<p class="muted">Created {_e(date_text(r.created))} · model {_e(r.model.get("name"))} · '
            f"{len(r.images)} image(s) × {len(r.methods)} method(s)</p>"
            '<nav class="screen-only">'
            + " · ".join(f'<a href="#{k}">{_e(t)}</a>' for k, t in toc)
            + "</nav></header>"
        )

    def summary(self) -> str:
        paras = summary_paragraphs(self.r)
        return (
            '<section id="summary"><h2 class="first">Summary in plain words</h2><div class="summary">'
            + "".join(f"<p>{_e(p)}</p>" for p in paras)
            + '<p class="muted">Terms are explained under <a href="#glossary">Words '
            "used</a>.</p></div></section>"
        )

    def glossary(self) -> str:
        items = "".join(f'<dt id="g-{k}">{_e(t)}</dt><dd>{_e(d)}</dd>' for k, (t, d) in GLOSSARY.items())
        return (
            '<section id="glossary"><h2>Words used in this report</h2>'
            f'<dl class="glossary">{items}</dl></section>'
        )

    def model(self) -> str:
        d = self.r.model
        rows = [
            ("Name", d.get("name")),
            ("Fingerprint (sha256 of the weights)", d.get("fingerprint")),
            ("Classes", d.get("classes")),
            ("Input", f"{d.get('input_size')} × {d.get('input_size')} pixels"),
            (
                "Preprocessing",
                f"resize the short side to {d.get('resize')} px ({d.get('interpolation')}), "
                f"{d.get('crop')} crop of {d.get('input_size')} px, normalise with mean "
                f"{numbers_text(d.get('mean'))} and standard deviation {numbers_text(d.get('std'))}",
            ),
            ("Grad-CAM layer", d.get("gradcam_layer") or "none"),
            ("Loaded from", self.r.model_source),
        ]
        card = d.get("card") or {}
        for k, v in card.items():
            if k == "digest" or (isinstance(v, (dict, list)) and len(str(v)) > 200):
                continue
            rows.append((f"Card: {k}", v))
        body = "".join(
            f"<tr><th>{_e(k)}</th><td>{f'<code>{_e(v)}</code>' if 'sha256' in k else _e(v)}</td></tr>"
            for k, v in rows
        )
        return (
            '<section id="model"><h2>The model</h2>'
            "<p>The model card: what was explained and how images were prepared. The "
            '<a href="#g-fingerprint">fingerprint</a> identifies the exact weights.</p>'
            f"<table>{body}</table></section>"
        )

    def methods(self) -> str:
        out = [
            '<section id="methods"><h2>Methods, parameters and known limits</h2>',
            f'<p class="caution">{_e(GENERAL_LIMITS)}</p>',
        ]
        for m in self.r.methods:
            out.append(_method_html(m, self.r))
        out.append("</section>")
        return "".join(out)

    def images(self) -> str:
        r = self.r
        head = (
            '<section id="images"><h2>Images, predictions and maps</h2>'
            '<p>Each <a href="#g-overlay">overlay</a> is drawn on the <a href="#g-crop">crop</a> the model '
            'saw. Under each map a <a href="#g-colour-bar">colour bar</a> gives the values; colours are '
            "perceptually uniform and readable with colour-vision deficiencies (inferno; blue-grey-red for "
            'signed maps). Values are <a href="#g-clipping">clipped at the 99th percentile</a>.</p>'
        )
        skipped = ""
        if r.skipped:
            skipped = (
                '<div class="caution"><b>Images left out</b> (they could not be read):<ul>'
                + "".join(f"<li>{_e(msg)}</li>" for _, msg in r.skipped)
                + "</ul></div>"
            )
        if not r.large:
            cards = "".join(self.image_card(i, item) for i, item in enumerate(r.images, 1))
            return head + skipped + cards + "</section>"
        pages = [r.images[k : k + self.page_size] for k in range(0, len(r.images), self.page_size)]
        nav = (
            '<nav class="pager">Pages: '
            + "".join(f'<a href="#page-{p}">{p}</a>' for p in range(1, len(pages) + 1))
            + "</nav>"
        )
        note = (
            f'<p class="muted screen-only">{len(r.images)} images on {len(pages)} pages of {self.page_size}. '
            "Each row shows thumbnails; open <i>Full-size maps</i> for the maps with colour bars and "
            "legends. Pictures in this large report are stored as JPEG to keep the file small; the replay "
            "data at the end is exact. Printing prints the thumbnails.</p>"
        )
        body = ['<div class="pages">']
        for p, chunk in enumerate(pages, 1):
            first = (p - 1) * self.page_size + 1
            body.append(
                f'<section class="page" id="page-{p}"><h3>Page {p} of {len(pages)}: images {first}'
                f"\u2013{first + len(chunk) - 1}</h3>"
            )
            body += [self.image_row(first + j, item) for j, item in enumerate(chunk)]
            body.append("</section>")
        body.append("</div>")
        return head + skipped + note + nav + "".join(body) + nav + "</section>"

    def optional(self) -> str:
        r, out = self.r, []
        if isinstance(r.comparison, dict):
            out.append(self.comparison(r.comparison))
        specs = (
            (
                "sanity",
                "Sanity check: model randomisation",
                "Each method's maps were computed again after the model's weights were replaced, layer by "
                "layer, with random ones (Adebayo et al. 2018). A method <b>passes</b> when its map then "
                'changes (low <a href="#g-rank-correlation">rank correlation</a> with the original); a '
                "method "
                "that <b>fails</b> shows the image more than the model.",
            ),
            (
                "stability",
                "Stability",
                "Maps of slightly changed copies of each image (noise, brightness, small shifts) compared "
                "with the original's. A stable explanation changes little; a fragile one changes a lot "
                "although the prediction did not.",
            ),
            (
                "validation",
                "Validation against expert annotations",
                "How well the maps agree with regions experts marked on the images (higher is better unless "
                "the column says otherwise).",
            ),
            (
                "reviews",
                "Review decisions",
                "Accept / reject decisions recorded by reviewers, with who decided and when (times in UTC).",
            ),
        )
        for key, title, text in specs:
            data = getattr(r, key)
            if data is None:
                continue
            self.figure += 1
            columns, rows = table_rows(data)
            table = _html_table(columns, rows)
            audit = f"<p>{_e(audit_sentence(r.audit))}</p>" if key == "reviews" else ""
            out.append(
                f'<section id="{key}"><h2>{_e(title)}</h2><p>{text}</p>{audit}{table}'
                f'<p class="muted">Table {self.figure}: {_e(title.lower())}, {len(rows)} row(s), '
                "as supplied with the report.</p></section>"
            )
        if r.qualification:
            out.append(self.qualification(appendix(r.qualification)))
        return "".join(out)

    def qualification(self, data: dict) -> str:
        self.figure += 1
        paragraphs = "".join(f"<p>{_e(p)}</p>" for p in data["paragraphs"])
        return (
            f'<section id="qualification"><h2>{_e(data["title"])}</h2>{paragraphs}'
            f"{_html_table(data['columns'], data['rows'])}"
            f'<p class="muted">Table {self.figure}: the scorecard in force, {len(data["rows"])} row(s).</p>'
            "</section>"
        )

    def comparison(self, data: dict) -> str:
        parts = ['<section id="comparison"><h2>Comparison with another version of the model</h2>']
        parts += [f"<p>{_e(p)}</p>" for p in data.get("paragraphs") or []]
        for title, rows in data.get("tables") or []:
            self.figure += 1
            columns, rows = table_rows(rows)
            parts.append(
                f"<h3>{_e(title)}</h3>{_html_table(columns, rows)}"
                f'<p class="muted">Table {self.figure}: {_e(str(title).lower())}, {len(rows)} row(s).</p>'
            )
        return "".join(parts) + "</section>"

    def software(self) -> str:
        r = self.r
        rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in r.versions.items())
        env = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in r.environment.items())
        return (
            '<section id="software"><h2>Software, date and replay</h2>'
            f"<p>Created {_e(date_text(r.created))}.</p><table>{rows}{env}</table>"
            "<p><b>Replay.</b> This file contains a machine-readable block (JSON, element id "
            f"<code>{REPLAY_ID}</code>) with every input and parameter: the model's source and "
            "fingerprint, each image, each method with its parameters and seed, the explained class, and "
            "a fingerprint of each resulting map. The command <code>python -m saliency_core replay "
            "REPORT.html</code> recomputes every map and says whether it matches, with the largest "
            "difference. Use the same CPU thread count (recorded above) for bit-identical numbers.</p>"
            "</section>"
        )

    # -- per image
    def image_card(self, index: int, item: ImageEntry) -> str:
        return (
            f'<article class="card image-page" id="img-{index}"><h3>Image {index}: {_e(item.name)}</h3>'
            + _prediction_html(item, self.r.model)
            + self.figures(index, item)
            + _errors_html(item)
            + "</article>"
        )

    def figures(self, index: int, item: ImageEntry, fmt: str | None = None) -> str:
        fmt = fmt or self.fmt
        lazy = ' loading="lazy"' if self.r.large else ""  # eager in small reports: printing needs them
        self.figure += 1
        n = self.figure
        cells = [
            f'<figure class="crop"><img src="{data_uri(item.crop, fmt)}" alt="{_e(item.name)} as the model '
            f'sees it" width="{item.crop.size[0]}" height="{item.crop.size[1]}"{lazy}>'
            f"<figcaption>Figure {n}a. What the model sees: the {item.crop.size[0]}-pixel crop of "
            f"{_e(item.name)}.</figcaption></figure>"
        ]
        for k, m in enumerate(item.maps.values()):
            letter = chr(ord("b") + k) if k < 25 else f"-{k + 2}"
            label = METHODS[m.method].label
            ticks = "".join(
                f'<span class="{_tick_class(pos)}" style="left:{100 * pos:.0f}%">{_e(t)}</span>'
                for pos, t in m.ticks
            )
            caution = METHODS[m.method].caution
            cells.append(
                f'<figure class="map"><img src="{data_uri(m.overlay, fmt)}" alt="{_e(label)} map of '
                f'{_e(item.name)}" width="{m.overlay.shape[1]}" height="{m.overlay.shape[0]}"{lazy}>'
                f'<div class="bar cb-{m.colormap}" role="img" aria-label="colour bar"></div>'
                f'<div class="ticks">{ticks}</div>'
                f"<figcaption><b>Figure {n}{letter}. {_e(label)}</b>, explaining "
                f"\u201c{_e(m.target_label)}\u201d. {_e(m.legend)}"
                + (" Caution: " + _e(caution) if caution else "")
                + _e(diagnostics_text(m))
                + "</figcaption></figure>"
            )
            if m.outline is not None:
                share = f"{100 * self.r.outline_share:.0f} %"
                cells.append(
                    f'<figure class="map"><img src="{data_uri(m.outline, fmt)}" alt="{_e(label)} map of '
                    f'{_e(item.name)} as outlines: the regions holding {share} of the map; the rest dimmed" '
                    f'width="{m.outline.shape[1]}" height="{m.outline.shape[0]}"{lazy}>'
                    f"<figcaption><b>Figure {n}{letter}\u2032. {_e(label)}, as regions.</b> "
                    f"{_e(m.outline_legend)}</figcaption></figure>"
                )
        return (
            f'<div class="row">{"".join(cells)}</div>'
            f'<p class="muted">Figure {n}: {_e(item.name)}, the crop the model saw and one saliency map per '
            "method, side by side; the colour bar under each map gives its values.</p>"
        )

    def image_row(self, index: int, item: ImageEntry) -> str:
        (_, label, p) = item.prediction[0]
        thumbs = [
            f'<figure><img src="{data_uri(thumb_image(item.crop), "JPEG")}" alt="{_e(item.name)}" '
            f'loading="lazy"><figcaption>crop</figcaption></figure>'
        ]
        thumbs += [
            f'<figure><img src="{data_uri(thumb_image(m.overlay), "JPEG")}" '
            f'alt="{_e(METHODS[m.method].label)} thumbnail" '
            f'loading="lazy"><figcaption>{_e(METHODS[m.method].label)}</figcaption></figure>'
            for m in item.maps.values()
        ]
        return (
            f'<article class="card" id="img-{index}"><div class="row"><div style="min-width:220px">'
            f"<b>{index}. {_e(item.name)}</b><br>Prediction: \u201c{_e(label)}\u201d, {percent(p)}"
            f'</div><div class="thumbs">{"".join(thumbs)}</div></div>'
            f"<details><summary>Full-size maps, colour bars and legends</summary>"
            + _prediction_html(item, self.r.model)
            + self.figures(index, item)
            + "</details>"
            + _errors_html(item)
            + "</article>"
        )


def _tick_class(pos: float) -> str:
    return "first" if pos <= 0 else "last" if pos >= 1 else "mid"


def _prediction_html(item: ImageEntry, model: dict | None = None) -> str:
    rows = "".join(
        f'<tr><td>{k}</td><td>{_e(label)}</td><td class="p">{percent(p)}</td>'
        f'<td><span class="pbar" style="width:{max(1, round(120 * p))}px"></span></td></tr>'
        for k, (_, label, p) in enumerate(item.prediction, 1)
    )
    top = item.prediction[0]
    predicted = multilabel_set(model or {}, item.prediction)
    if predicted is not None:
        return (
            f"<p><b>Prediction (multi-label, each class on its own):</b> "
            f"{_e(set_words(model, predicted))}.</p>"
            '<table class="pred"><tr><th>rank</th><th>class</th><th>probability</th><th></th></tr>'
            f"{rows}</table>"
        )
    return (
        f"<p><b>Prediction:</b> \u201c{_e(top[1])}\u201d with {percent(top[2])} "
        f'<a href="#g-confidence">confidence</a> ({confidence_words(top[2])}).</p>'
        f'<table class="pred"><tr><th>rank</th><th>class</th><th>confidence</th><th></th></tr>{rows}</table>'
    )


def _errors_html(item: ImageEntry) -> str:
    if not item.errors:
        return ""
    return (
        '<p class="err">Maps that could not be computed: '
        + "; ".join(
            f"{_e(METHODS[m].label if m in METHODS else m)}: {_e(msg)}" for m, msg in item.errors.items()
        )
        + "</p>"
    )


def _same_params(method: str, report: Report) -> bool:
    seen = {
        json.dumps(jsonable(i.maps[method].params), sort_keys=True) for i in report.images if method in i.maps
    }
    return len(seen) <= 1


def _method_html(method: str, report: Report) -> str:
    meta = METHODS[method]
    params = params_text(method, report)
    rows = "".join(
        f"<tr><td><code>{_e(k)}</code></td><td><code>{_e(v)}</code></td><td>{_e(h)}</td></tr>"
        for k, v, h in params
    )
    table = (
        f"<table><tr><th>parameter</th><th>value</th><th>what it means</th></tr>{rows}</table>"
        if params
        else "<p>Parameters: none; this method has no settings.</p>"
    )
    varied = (
        ""
        if _same_params(method, report)
        else (
            '<p class="muted">Parameters differ between images; each image\'s values are in the replay '
            "data.</p>"
        )
    )
    caution = f'<p class="caution"><b>Known limit:</b> {_e(meta.caution)}</p>' if meta.caution else ""
    bright = meta.meaning.format(score="the score of the explained class")
    return (
        f'<div class="card" id="method-{_e(method)}"><h3>{_e(meta.label)}</h3><p>{_e(meta.description)}</p>'
        f"<p><b>Bright means:</b> {_e(bright)}.</p>{table}{varied}<p>{_e(seed_text(method, report))}</p>"
        f'{caution}<p class="muted">Reference: {_e(meta.reference)}.</p></div>'
    )


def _html_table(columns: list[str], rows: list[dict]) -> str:
    if not rows:
        return "<p>(no rows)</p>"
    columns, rows, full, common = readable_table(columns, rows)
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(cell_text(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows
    )
    same = (
        ("<p>In every row: " + "; ".join(f"{_e(c)}: {_e(v)}" for c, v in common) + ".</p>") if common else ""
    )
    notes = (
        (
            '<p class="muted">Full values: '
            + "; ".join(f"{_e(a)} = <code>{_e(b)}</code>" for a, b in full)
            + "</p>"
        )
        if full
        else ""
    )
    return f'{same}<div class="wide"><table><tr>{head}</tr>{body}</table></div>{notes}'
