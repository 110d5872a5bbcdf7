"""The report: self-contained HTML, PDF, replay, bad input, a 500-image report.

The 3 photos x 2 methods report is made once per module through the command line and kept in
tests/artifacts/report/ (report.html, report.pdf, report_page1.png) for people to look at."""

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
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pypdf
import pypdfium2
import pytest
import skimage
from PIL import Image

import saliency_core as sc
from saliency_core import cli
from saliency_core import report as rp
from saliency_core.engine.convergence import describe as describe_convergence

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts", "report")
PHOTOS = ["chelsea.png", "coffee.png", "camera.png"]
METHODS = ["gradient", "gradcam"]
# summary + glossary + model and methods, one page per image, software and replay
PDF_PAGES = 3 + len(PHOTOS) + 1


def _photo(name: str) -> str:
    return os.path.join(os.path.dirname(skimage.__file__), "data", name)


class _Parsed(HTMLParser):
    """Everything the checks need from an HTML document."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.styles: list[str] = []
        self.scripts: list[tuple[dict, str]] = []
        self.text: list[str] = []
        self.figures: list[dict] = []
        self.stack: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if attrs.get("style"):
            self.styles.append(attrs["style"])
        if tag == "figure":
            self.figures.append({"caption": ""})
        self.stack.append(tag)
        if tag == "script":
            self.scripts.append((attrs, ""))

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop() != tag:
            pass

    def handle_data(self, data):
        inside = self.stack[-1] if self.stack else ""
        if inside == "style":
            self.styles.append(data)
        elif inside == "script":
            attrs, old = self.scripts[-1]
            self.scripts[-1] = (attrs, old + data)
        else:
            self.text.append(data)
            if "figcaption" in self.stack and self.figures:
                self.figures[-1]["caption"] += data

    def of(self, tag: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag]

    @property
    def visible(self) -> str:
        return " ".join(" ".join(self.text).split())


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """report.html + report.pdf for 3 photos x 2 methods, made with the command line."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    html_path, pdf_path = os.path.join(ARTIFACTS, "report.html"), os.path.join(ARTIFACTS, "report.pdf")
    for path in (html_path, pdf_path):
        if os.path.exists(path):
            os.remove(path)
    code = cli.main(
        [
            "report",
            *map(_photo, PHOTOS),
            "--methods",
            ",".join(METHODS),
            "--out",
            html_path,
            "--pdf",
            pdf_path,
            "--title",
            "Saliency report: three sample photos",
        ]
    )
    assert code == 0
    with open(html_path, encoding="utf-8") as f:
        text = f.read()
    page = pypdfium2.PdfDocument(pdf_path)[0].render(scale=1.5).to_pil()
    page.save(os.path.join(ARTIFACTS, "report_page1.png"))
    return {
        "html": html_path,
        "pdf": pdf_path,
        "text": text,
        "parsed": _Parsed(text),
        "record": rp.read_replay(html_path),
        "page1": page,
    }


def test_html_is_self_contained(made):
    parsed, text = made["parsed"], made["text"]
    images = parsed.of("img")
    assert len(images) == len(PHOTOS) * (1 + len(METHODS))  # crop + one overlay per method
    for attrs in images:
        src = attrs["src"]
        assert src.startswith("data:image/png;base64,"), src[:40]
        picture = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert picture.size == (224, 224)
        assert attrs.get("alt")
    # no external address anywhere: not in src/href, not in CSS url(), not even in text
    assert not re.search(r"(?i)\b(https?|ftp):", text), re.search(r"(?i)\b(https?|ftp):.{0,40}", text).group(
        0
    )
    assert not re.search(r"(?i)//[a-z0-9.-]+\.[a-z]{2,}/", text)
    for tag, attrs in parsed.tags:
        for name in ("src", "href", "action", "poster", "data"):
            if name in attrs:
                assert attrs[name].startswith(("data:", "#")), (tag, name, attrs[name][:60])
    urls = [u for s in parsed.styles for u in re.findall(r"url\(\s*['\"]?([^'\")]+)", s)]
    assert urls and all(u.startswith("data:image/png;base64,") for u in urls)
    assert not parsed.of("link") and not parsed.of("iframe") and not parsed.of("object")
    assert [a.get("type") for a, _ in parsed.scripts] == ["application/json"]  # data only, nothing runs
    csp = [a["content"] for a in parsed.of("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0] and "img-src data:" in csp[0]


def test_html_contents_for_readers(made, demo):
    parsed, record = made["parsed"], made["record"]
    visible = parsed.visible
    # fingerprint, parameters, seed, limits, versions, date
    assert demo.fingerprint in visible
    assert "1._act_head" in visible and "layer" in visible  # Grad-CAM's parameter
    assert "Seed: not used" in visible
    assert rp.GENERAL_LIMITS in visible
    assert sc.__version__ in visible and record["versions"]["torch"] in visible
    assert record["created"][:10] in visible
    # summary first, glossary with every term, every figure captioned
    headings = [a.get("id") for a in parsed.of("section")]
    assert headings[:5] == ["summary", "glossary", "model", "methods", "images"]
    for term, _ in rp.GLOSSARY.values():
        assert term in visible
    assert len(parsed.figures) == len(PHOTOS) * (1 + len(METHODS))
    assert all(len(f["caption"].split()) >= 5 for f in parsed.figures), parsed.figures
    # each image's prediction and each method's legend and colour bar
    for item in record["images"]:
        top = item["prediction"][0]
        assert f"“{top['label']}” with {100 * top['probability']:.1f} %" in visible
        assert {m["method"] for m in item["maps"]} == set(METHODS)
    assert visible.count("Brighter =") == len(PHOTOS) * len(METHODS)
    assert len([d for d in parsed.of("div") if "bar" in d.get("class", "").split()]) == len(PHOTOS) * len(
        METHODS
    )
    assert [i["prediction"][0]["label"] for i in record["images"]] == ["tiger cat", "espresso", "tripod"]


def test_replay_block_has_what_a_recomputation_needs(made, demo):
    record = made["record"]
    assert record["model"] == {"source": "demo", "fingerprint": demo.fingerprint, "card": demo.describe()}
    assert record["environment"]["threads"] >= 1
    assert [i["name"] for i in record["images"]] == PHOTOS
    for item in record["images"]:
        data = base64.b64decode(item["input"]["base64"])
        with open(_photo(item["name"]), "rb") as f:
            assert data == f.read()  # the file itself, embedded
        assert item["input"]["kind"] == "original"
        for m in item["maps"]:
            assert set(m) >= {"method", "params", "target", "saliency"}
            assert len(m["saliency"]["sha256"]) == 64 and m["saliency"]["shape"] == [224, 224]
            assert m["saliency"]["data"]  # 6 maps: stored, for the difference
        assert next(m for m in item["maps"] if m["method"] == "gradcam")["params"] == {
            "layer": "1._act_head",
            "reshape": None,
        }


def test_pdf_pages_and_text(made):
    reader = pypdf.PdfReader(made["pdf"])
    assert len(reader.pages) == PDF_PAGES
    pages = [p.extract_text() for p in reader.pages]
    assert "Summary in plain words" in pages[0] and "Saliency report: three sample photos" in pages[0]
    assert "Words used" in pages[1] and "Fingerprint (sha256)" in pages[2] and "1._act_head" in pages[2]
    for k, item in enumerate(made["record"]["images"]):
        page = pages[3 + k]
        label = item["prediction"][0]["label"]
        assert item["name"] in page and f'Prediction: "{label}"' in page, page[:300]
        assert "Figure" in page and "Brighter" in page
        assert label in pages[0]  # and in the summary
    assert "Software, date and replay" in pages[-1]
    # the first page renders and is not blank
    grey = np.asarray(made["page1"].convert("L"), dtype=np.float32)
    assert grey.std() > 10 and (grey < 128).mean() > 0.01


def test_replay_reproduces_every_map(made, capsys):
    assert cli.main(["replay", made["html"]]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == len(PHOTOS) * len(METHODS)
    assert all(" match  max abs difference 0" in line for line in lines), lines
    assert f"{len(lines)} of {len(lines)} map(s) match" in err


def test_replay_of_tampered_report_is_a_mismatch(made, tmp_path, capsys):
    record = made["record"]
    gradcam = next(m for m in record["images"][1]["maps"] if m["method"] == "gradcam")
    gradcam["params"]["layer"] = "1._blocks.15"  # another layer than the one recorded
    tampered = re.sub(
        r'(<script type="application/json" id="saliency-replay">).*?(</script>)',
        lambda m: m.group(1) + json.dumps(record).replace("</", "<\\/") + m.group(2),
        made["text"],
        flags=re.S,
    )
    path = tmp_path / "tampered.html"
    path.write_text(tampered, encoding="utf-8")
    assert cli.main(["replay", str(path)]) == 1
    out, err = capsys.readouterr()
    lines = {tuple(line.split("  ")[:3]) for line in out.strip().splitlines()}
    assert ("coffee.png", "gradcam", "mismatch") in lines
    assert sum(s == "match" for _, _, s in lines) == len(PHOTOS) * len(METHODS) - 1
    diff = float(re.search(r"coffee.png  gradcam  mismatch  max abs difference (\S+)", out).group(1))
    assert diff > 1e-3
    assert "5 of 6 map(s) match; 1 do not" in err


def test_replay_from_stored_crops_without_maps(made, demo):
    """Large reports store the crop (the exact input) and only each map's fingerprint."""
    record = dict(made["record"])
    crop = next(i for i in _crop_record(made, demo) if i["name"] == "chelsea.png")
    record["images"] = [crop]
    results = rp.replay(record, demo)
    assert [(r.method, r.status, r.max_abs_diff) for r in results] == [
        ("gradient", "match", 0.0),
        ("gradcam", "match", 0.0),
    ]
    crop["maps"][0]["saliency"]["sha256"] = "0" * 64
    bad = rp.replay(record, demo)[0]
    assert bad.status == "mismatch" and bad.max_abs_diff is None and "not stored" in bad.detail


def _crop_record(made, model) -> list[dict]:
    """The report's images re-stored as crops (as a large report does), maps by fingerprint only."""
    out = []
    for item in json.loads(json.dumps(made["record"]["images"])):
        original = Image.open(io.BytesIO(base64.b64decode(item["input"]["base64"])))
        buf = io.BytesIO()
        model.crop(original).save(buf, format="PNG")
        png = buf.getvalue()
        item["input"] = {
            "kind": "crop",
            "sha256": hashlib.sha256(png).hexdigest(),
            "base64": base64.b64encode(png).decode(),
        }
        for m in item["maps"]:
            m["saliency"].pop("data", None)
        out.append(item)
    return out


def test_replay_of_other_files_says_why(tmp_path, capsys):
    page = tmp_path / "page.html"
    page.write_text("<html><body>nothing here</body></html>")
    assert cli.main(["replay", str(page)]) == 1
    assert "no replay data found" in capsys.readouterr().err
    assert cli.main(["replay", str(tmp_path / "gone.html")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("gone.html: no such file.") and len(err.splitlines()) == 1


def test_empty_selection_and_missing_images(demo, tmp_path, capsys):
    with pytest.raises(ValueError, match="No images were chosen for the report"):
        rp.build_report(demo, [], METHODS)
    with pytest.raises(ValueError, match="No saliency method was chosen"):
        rp.build_report(demo, [_photo("chelsea.png")], [])
    with pytest.raises(ValueError, match=r"None of the 1 image\(s\) could be read: gone.png: no such file"):
        rp.build_report(demo, [("gone.png", str(tmp_path / "gone.png"))], METHODS)
    # one missing next to a good one: the report is made and says what was left out
    report = rp.build_report(
        demo, [("chelsea.png", _photo("chelsea.png")), ("gone.png", str(tmp_path / "gone.png"))], ["gradient"]
    )
    assert [i.name for i in report.images] == ["chelsea.png"]
    assert report.skipped == [("gone.png", "gone.png: no such file (was it moved or deleted?).")]
    html_text = report.to_html()
    assert "Images left out" in html_text and "gone.png: no such file" in html_text
    # the command line: one line per problem, nonzero exit, no report when nothing could be read
    out = tmp_path / "r.html"
    assert cli.main(["report", str(tmp_path / "gone.png"), "--methods", "gradient", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: None of the 1 image(s) could be read") and not out.exists()
    with pytest.raises(SystemExit) as usage:
        cli.main(["report", _photo("chelsea.png"), "--methods", "nonsense", "--out", str(out)])
    assert usage.value.code == 2
    assert "unknown method 'nonsense'" in capsys.readouterr().err


def _fake_report(count: int, side: int = 24, **extra) -> rp.Report:
    """A report built from tiny random crops and maps, no model run."""
    rng = np.random.default_rng(0)
    images = []
    for i in range(count):
        crop = Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8))
        buf = io.BytesIO()
        crop.save(buf, format="PNG")
        maps = {
            m: rp.map_entry(
                m,
                rng.random((side, side), dtype=np.float32),
                crop,
                target=i % 3,
                target_label=f"class {i % 3}",
                params={"layer": "x"} if m == "gradcam" else {},
            )
            for m in METHODS
        }
        images.append(
            rp.ImageEntry(
                name=f"img{i:03d}.png",
                data=buf.getvalue(),
                crop=crop,
                prediction=[(i % 3, f"class {i % 3}", 0.5 + 0.4 * (i % 2)), (7, "other", 0.05)],
                maps=maps,
            )
        )
    model = {
        "name": "fake",
        "fingerprint": "f" * 64,
        "classes": 3,
        "input_size": side,
        "resize": side,
        "crop": "centre",
        "interpolation": "bilinear",
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "gradcam_layer": "x",
    }
    return rp.Report(model=model, methods=list(METHODS), images=images, **extra)


def test_500_images_stay_usable():
    report = _fake_report(500)
    assert report.large
    text = report.to_html()
    parsed = _Parsed(text)
    assert len(text) < 12 * 2**20  # tiny maps: well under 12 MiB
    pages = [a for a in parsed.of("section") if a.get("class") == "page"]
    assert [p["id"] for p in pages] == [f"page-{k}" for k in range(1, 21)]  # 25 images a page
    assert {a["href"] for a in parsed.of("a") if a.get("href", "").startswith("#page-")} == {
        f"#page-{k}" for k in range(1, 21)
    }
    assert text.count("<details>") == 500 and text.count("Full-size maps, colour bars and legends") == 500
    images = parsed.of("img")
    assert len(images) == 500 * 3 * 2  # thumbnails + full maps on demand
    assert all(a["src"].startswith("data:image/jpeg;base64,") for a in images)
    assert sum(a.get("loading") == "lazy" for a in images) == len(images)
    assert "Most frequent answers" in parsed.visible and "images 476–500" in parsed.visible
    record = rp.read_replay(text)
    assert len(record["images"]) == 500
    assert all(
        "data" not in m["saliency"] and len(m["saliency"]["sha256"]) == 64
        for i in record["images"]
        for m in i["maps"]
    )  # 1000 maps: fingerprints only
    pdf = pypdf.PdfReader(io.BytesIO(report.to_pdf()))
    assert len(pdf.pages) == 3 + math.ceil(500 / rp.PDF_ROWS_PER_PAGE) + 1
    assert "img499.png" in pdf.pages[-2].extract_text()


def test_optional_sections_from_plain_data():
    @dataclasses.dataclass
    class Decision:  # the shape of store.Decision, without importing it
        item_name: str
        reviewer: str
        decision: str
        note: str
        decided_at: datetime

    sanity = [
        {
            "method": "gradient",
            "verdict": "passes",
            "final_similarity": 0.12,
            "threshold": 0.5,
            "image_name": "img000.png",
        },
        {"method": "gradcam", "passed": False, "final_similarity": 0.81, "threshold": 0.5},
    ]
    stability = {
        "img000.png/gradient": {
            "method": "gradient",
            "verdict": "stable",
            "mean": {"spearman_abs": 0.91, "top_k_overlap": 0.7},
        }
    }
    validation = pd.DataFrame({"method": METHODS, "pointing_game": [0.8, 0.9], "iou_top10": [0.31, 0.42]})
    reviews = [Decision("img001.png", "ana", "accept", "clear", datetime(2025, 3, 1, 9, 30, tzinfo=UTC))]
    report = _fake_report(2, sanity=sanity, stability=stability, validation=validation, reviews=reviews)
    parsed = _Parsed(report.to_html())
    ids = [a.get("id") for a in parsed.of("section")]
    assert ids[-5:] == ["sanity", "stability", "validation", "reviews", "software"]
    visible = parsed.visible
    assert "Gradient passed and Grad-CAM failed" in visible
    assert "mean: rank correlation" in visible and "0.91" in visible and "pointing game" in visible
    assert "final_similarity" not in visible and "rank correlation at the end" in visible  # words, not code
    assert "ana" in visible and "2025-03-01T09:30:00+00:00" in visible
    pdf = pypdf.PdfReader(io.BytesIO(report.to_pdf()))
    assert len(pdf.pages) == 3 + 2 + 4 + 1
    assert "Review decisions" in pdf.pages[-2].extract_text()
    with pytest.raises(ValueError, match="Expected a list of rows"):
        _fake_report(1, validation=42).to_html()


def test_cli_report_with_seeded_method_and_result_files(demo, tmp_path, capsys):
    """SmoothGrad's seed and parameters are shown and replayed; --sanity reads 'sanity --out' JSON."""
    sanity = tmp_path / "sanity.json"
    sanity.write_text(
        json.dumps(
            {
                "model": {},
                "command": [],
                "images": {
                    "/photos/chelsea.png": {
                        "verdicts": {
                            "smoothgrad": {
                                "method": "smoothgrad",
                                "passed": True,
                                "verdict": "passes",
                                "final_similarity": 0.08,
                                "threshold": 0.5,
                                "mode": "cascading",
                                "blocks": 3,
                                "total_blocks": 19,
                            }
                        }
                    }
                },
            }
        )
    )
    validation = tmp_path / "validation.csv"
    pd.DataFrame({"method": ["smoothgrad"], "pointing_game": [0.75]}).to_csv(validation, index=False)
    out = tmp_path / "seeded.html"
    code = cli.main(
        [
            "report",
            _photo("chelsea.png"),
            "--methods",
            "smoothgrad",
            "--samples",
            "2",
            "--seed",
            "7",
            "--out",
            str(out),
            "--sanity",
            str(sanity),
            "--validation",
            str(validation),
        ]
    )
    assert code == 0, capsys.readouterr().err
    parsed = _Parsed(out.read_text(encoding="utf-8"))
    visible = parsed.visible
    assert "Seed 7: the same seed gives the same map." in visible
    assert "samples 2 number of noisy copies" in visible and "noise 0.15" in visible
    assert "SmoothGrad passed" in visible and "method pointing game smoothgrad 0.75" in visible
    assert [a.get("id") for a in parsed.of("section")][-3:] == ["sanity", "validation", "software"]
    record = rp.read_replay(out)
    assert record["images"][0]["maps"][0]["params"]["seed"] == 7
    assert [r.status for r in rp.replay(record, demo)] == ["match"]
    record["images"][0]["maps"][0]["params"]["seed"] = 8  # another seed: other noise, other map
    changed = rp.replay(record, demo)[0]
    assert changed.status == "mismatch" and changed.max_abs_diff > 0


def test_tables_shorten_hashes_once_and_fit_the_page():
    """Sanity verdict rows as the dashboard records them: two 64-character hashes per row."""
    fingerprint, image = "a" * 64, "b" * 64
    sanity = [
        {
            "method": m,
            "passed": m == "gradcam",
            "measure": "spearman_abs",
            "final_similarity": 0.4,
            "threshold": 0.5,
            "mode": "cascading",
            "blocks": 10,
            "total_blocks": 19,
            "model_fingerprint": fingerprint,
            "image_hash": image,
            "image_name": "Cat (chelsea.png)",
            "final_map_zero": False,
            "verdict": "passes",
        }
        for m in METHODS
    ]
    report = _fake_report(1, sanity=sanity)
    parsed = _Parsed(report.to_html())
    visible = parsed.visible
    assert visible.count(fingerprint) == 1 and visible.count(image) == 1  # each full value once
    assert "aaaaaaaaaaaa\u2026" in visible and "model weights (sha256)" in visible
    assert ".wide { max-width: 100%; overflow-x: auto; }" in " ".join(parsed.styles)
    text = "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(report.to_pdf())).pages)
    assert text.count(fingerprint) == 1
    # no word of the table is broken over two lines: every header word and value survives whole
    for word in ("correlation", "re-initialised", "aaaaaaaaaaaa...", "cascading", "Cat", "(chelsea.png)"):
        assert word in text, word
    assert "final_similarity" not in text and "(guided_backprop)" not in text


def test_outlined_regions_in_the_html_and_pdf(demo, tmp_path, capsys):
    """--outline 0.3: each map also as the regions holding 30 % of it, beside the overlay, in both formats."""
    from saliency_core.engine.regions import outline_regions, segment

    out, pdf = tmp_path / "outlined.html", tmp_path / "outlined.pdf"
    code = cli.main(
        [
            "report",
            _photo("chelsea.png"),
            "--methods",
            "gradient,gradcam",
            "--outline",
            "0.3",
            "--out",
            str(out),
            "--pdf",
            str(pdf),
        ]
    )
    assert code == 0, capsys.readouterr().err
    parsed = _Parsed(out.read_text(encoding="utf-8"))
    regions = [f["caption"] for f in parsed.figures if "as regions" in f["caption"]]
    assert len(regions) == 2 and all("holding" in c and "(asked: at least 30%)" in c for c in regions), (
        regions
    )
    alts = [a["alt"] for a in parsed.of("img") if "as outlines" in a.get("alt", "")]
    assert len(alts) == 2 and all("30 %" in a for a in alts)
    assert rp.read_replay(out)["render"]["outline_share"] == 0.3
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(str(pdf)).pages)
    assert text.count("as regions.") == 2

    # what is outlined holds the share asked for, on the regions of the crop the model saw
    report = rp.build_report(demo, [_photo("chelsea.png")], ["gradcam"], outline_share=0.3)
    entry = report.images[0].maps["gradcam"]
    labels = segment(report.images[0].crop)
    choice = outline_regions(entry.saliency, labels, share=0.3)
    assert choice.share >= 0.3 and f"holding {choice.share:.0%}" in entry.outline_legend
    crop = np.asarray(report.images[0].crop, dtype=np.int16)
    from scipy.ndimage import binary_erosion

    dimmed = binary_erosion(~choice.selected, iterations=4)  # away from the drawn outline
    assert entry.outline.shape == crop.shape
    assert (entry.outline[dimmed].astype(np.int16) <= crop[dimmed]).all()  # the rest is darker
    assert (entry.outline[dimmed].astype(np.int16) < crop[dimmed]).mean() > 0.5
    assert (
        rp.build_report(demo, [_photo("chelsea.png")], ["gradient"]).images[0].maps["gradient"].outline
        is None
    )
    for bad in (0, 1, 1.5, float("nan"), "0.3", True):
        with pytest.raises(ValueError, match="outline share"):
            rp.build_report(demo, [_photo("chelsea.png")], ["gradient"], outline_share=bad)


def test_convergence_readout_is_in_the_report_text(demo):
    """An averaging method's readout (settled / still changing, with its numbers) under its map."""
    report = rp.build_report(demo, [_photo("chelsea.png")], ["smoothgrad"], params={"samples": 8, "seed": 1})
    readout = report.images[0].maps["smoothgrad"].diagnostics["convergence"]
    parsed = _Parsed(report.to_html())
    caption = next(f["caption"] for f in parsed.figures if "SmoothGrad" in f["caption"])
    words = describe_convergence(readout)[0]
    assert words.split(":")[0].split(",")[0] in caption
    assert f"Spearman {readout['rerun_spearman']:.2f}" in caption
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(report.to_pdf())).pages)
    assert words.split(":")[0].split(",")[0] in " ".join(text.split())


def test_methods_share_their_strongest_pixels_at_the_stated_detail(demo):
    """The summary's "the two methods share N % of their strongest pixels" is measured at the
    coarser of the two maps' reproducible details, the raw-pixel share beside it."""
    import html

    report = rp.build_report(
        demo, [_photo("chelsea.png")], ["smoothgrad", "gradient"], params={"samples": 50}
    )
    maps = report.images[0].maps
    px = maps["smoothgrad"].diagnostics["convergence"]["reproducible_px"]
    assert px  # SmoothGrad-50 on the cat: reproducible at a blurred detail; the gradient is exact
    at = rp.agreement(maps["smoothgrad"], maps["gradient"], px)
    raw = rp.agreement(maps["smoothgrad"], maps["gradient"])
    text = " ".join(html.unescape(report.to_html()).split())
    assert (
        f"SmoothGrad and Gradient share {100 * at:.0f} % of their strongest pixels at {px:g}-pixel detail "
        f"(pixel by pixel {100 * raw:.0f} %)" in text
    )
