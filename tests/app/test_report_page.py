"""Drive the Report page with AppTest: real demo model, a real sample photo and a real upload."""

import io
import os
import re
from html.parser import HTMLParser

import pypdf
import skimage
from conftest import open_page, rerun_page
from streamlit.testing.v1 import AppTest

from saliency_core import report as rp

COFFEE = os.path.join(os.path.dirname(skimage.__file__), "data", "coffee.png")
METHODS = ["gradient", "gradcam"]


def _shown(text: str) -> str:
    """What a reader sees of Markdown source: pages escape user text (file names, labels,
    messages) with backslashes, which the Markdown renderer removes."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


def _report_page() -> AppTest:
    return open_page("pages/report.py", METHODS)


def _rerun(at) -> AppTest:
    return rerun_page(at, METHODS)


class _Images(HTMLParser):
    def __init__(self, text):
        super().__init__()
        self.src = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.src.append(dict(attrs)["src"])


def test_images_chosen_on_explain_are_carried_over_and_an_empty_choice_says_what_to_do():
    at = _report_page()  # app.py opened Explain first: its sample photo is chosen
    assert not at.exception, at.exception
    carry = next(c for c in at.checkbox if c.label.startswith("The 1 image(s) chosen on the Explain page"))
    assert carry.value and "Cat (chelsea.png)" in _shown(carry.label)
    assert "1 image(s) × 2 method(s)" in " ".join(m.value for m in at.markdown)
    assert any(
        "Building it (0 of 2 maps still to compute)" in c.value for c in at.caption
    )  # Explain drew them
    carry.uncheck()
    at = _rerun(at)
    assert not at.exception, at.exception
    assert not at.error, [_shown(e.value) for e in at.error]
    info = " ".join(_shown(i.value) for i in at.info)
    assert "Choose at least one image" in info and "Gradient, Grad-CAM" in info
    assert not at.get("download_button")
    assert not [b for b in at.button if b.label == "Build report"]


def test_report_page_produces_downloadable_files():
    from pages._verdicts import forget_sanity_verdicts

    forget_sanity_verdicts()  # a sanity check run by an earlier test would add its section
    at = _report_page()
    next(c for c in at.checkbox if c.label.startswith("The 1 image(s) chosen")).uncheck()
    next(m for m in at.multiselect if m.label.endswith("sample photos")).set_value(["Cat (chelsea.png)"])
    with open(COFFEE, "rb") as f:
        at.file_uploader[0].set_value(
            [("coffee.png", f.read(), "image/png"), ("notes.png", b"not a picture", "image/png")]
        )
    at = _rerun(at)
    next(b for b in at.button if b.label == "Build report").click()
    at = _rerun(at)
    assert not at.exception, at.exception
    errors = [_shown(e.value) for e in at.error]
    assert len(errors) == 1 and "notes.png" in errors[0] and "not an image" in errors[0], errors
    assert not any("Traceback" in e for e in errors)
    assert "Report ready: 2 image(s) × 2 method(s)" in " ".join(_shown(s.value) for s in at.success)
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download HTML report", "Download PDF report"]

    files = at.session_state["report_files"]
    html_text = files["html"].decode("utf-8")
    assert html_text.startswith("<!DOCTYPE html>") and "https://" not in html_text
    sources = _Images(html_text).src
    assert len(sources) == 2 * (1 + len(METHODS)) and all(
        s.startswith("data:image/png;base64,") for s in sources
    )
    record = rp.read_replay(html_text)
    assert [i["name"] for i in record["images"]] == ["coffee.png", "Cat (chelsea.png)"]
    assert [i["prediction"][0]["label"] for i in record["images"]] == ["espresso", "tiger cat"]
    assert [r.status for r in rp.replay(record)] == ["match"] * 4  # the page's cached maps replay exactly
    pdf = pypdf.PdfReader(io.BytesIO(files["pdf"]))
    assert len(pdf.pages) == 3 + 2 + 1
    assert "espresso" in pdf.pages[3].extract_text() and "tiger cat" in pdf.pages[4].extract_text()

    # with outlined regions: each map also as regions, at the share chosen on the page
    assert not [s for s in at.slider if s.key == "report_outline_share"]  # no slider until asked for
    at.checkbox(key="report_outlines").check()
    at = _rerun(at)
    at.slider(key="report_outline_share").set_value(40)
    at = _rerun(at)
    next(b for b in at.button if b.label == "Build report").click()
    at = _rerun(at)
    assert not at.exception, at.exception
    outlined = at.session_state["report_files"]["html"].decode("utf-8")
    assert outlined.count("as regions.</b>") == 2 * len(METHODS) and "(asked: at least 40%)" in outlined
    assert rp.read_replay(outlined)["render"]["outline_share"] == 0.4

    # a changed selection makes the built report stale instead of offering it for the new choice
    next(m for m in at.multiselect if m.label.endswith("sample photos")).set_value([])
    at = _rerun(at)
    assert not at.exception, at.exception
    assert not at.get("download_button")
    assert "changed since the last report" in " ".join(_shown(i.value) for i in at.info)
