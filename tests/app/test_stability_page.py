"""Drive the Stability page with AppTest: real demo model, real photos and uploads."""
import os
import re

import skimage
from streamlit.testing.v1 import AppTest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PHOTO = os.path.join(os.path.dirname(skimage.__file__), "data", "chelsea.png")



def _shown(text: str) -> str:
    """What a reader sees of Markdown source: pages escape user text (file names, labels,
    messages) with backslashes, which the Markdown renderer removes."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)

def _stability_page(methods) -> AppTest:
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300).run()
    at.switch_page("pages/stability.py").run()
    at.sidebar.multiselect(key="methods").set_value(methods)
    next(b for b in at.sidebar.button if b.label == "Apply").click()
    return at.run()


def _by_label(elements, start: str):
    return next(e for e in elements if e.label.startswith(start))


def _check(at) -> AppTest:
    _by_label(at.button, "Check stability").click()
    return at.run()


def test_generated_variants_grid_chart_and_export():
    at = _stability_page(["gradient", "gradcam"])
    assert not at.exception, at.exception
    _by_label(at.selectbox, "…or use a sample photo").set_value("Espresso (coffee.png)")
    _by_label(at.number_input, "Number of variants").set_value(4)   # noise, brightness, contrast, shift
    at = _check(at)
    assert not at.exception, at.exception
    assert not at.error or all("fragile prediction" in _shown(e.value) for e in at.error), [_shown(e.value) for e in at.error]

    table = at.dataframe[0].value
    assert list(table["method"]) == ["Gradient", "Grad-CAM"]
    assert set(table["verdict"]) <= {"stable", "unstable explanation", "fragile prediction"}
    cam = table[table["method"] == "Grad-CAM"].iloc[0]
    grad = table[table["method"] == "Gradient"].iloc[0]
    assert cam["mean rank correlation"] > grad["mean rank correlation"]
    messages = [_shown(m.value) for m in list(at.success) + list(at.warning) + list(at.error)]
    assert any(m.startswith("**Grad-CAM: ") for m in messages) and any(m.startswith("**Gradient: ") for m in messages)
    assert "Prediction on the original:** espresso" in " ".join(_shown(m.value) for m in at.markdown)

    captions = [_shown(c) for el in at.get("image") for c in el.captions]
    assert sum(c.startswith("original · espresso") for c in captions) == 2
    assert sum(c.startswith("shift 4 px right · ") and "ρ " in c and "SSIM" in c for c in captions) == 2
    assert len(at.get("plotly_chart")) == 1
    assert any("Brighter =" in _shown(c.value) for c in at.caption)
    assert any("Thresholds: stable if the mean rank correlation" in _shown(c.value) for c in at.caption)
    assert {b.proto.label for b in at.get("download_button")} == {
        "Scores per variant (CSV)", "Verdicts and settings (JSON)"}

    # thresholds re-judge the same maps without recomputing: demand perfection -> unstable
    _by_label(at.slider, "Stable if the mean rank correlation").set_value(1.0)
    at = _check(at)
    assert not at.exception, at.exception
    verdicts = set(at.dataframe[0].value["verdict"])
    assert "stable" not in verdicts


def test_shift_too_large_for_the_image_is_explained():
    at = _stability_page(["gradcam"])
    _by_label(at.number_input, "Number of variants").set_value(10)   # the 2nd shift goes down
    _by_label(at.slider, "Shift (pixels)").set_value(32)
    at = _check(at)
    assert not at.exception, at.exception
    errors = [_shown(e.value) for e in at.error]
    assert len(errors) == 1 and "too small for a 32 px shift" in errors[0], errors
    # nothing else lost: the form and the photo choice are still there
    assert _by_label(at.selectbox, "…or use a sample photo").value == "Cat (chelsea.png)"
    assert _by_label(at.slider, "Shift (pixels)").value == 32


def test_similar_images_uploaded_with_a_bad_one():
    at = _stability_page(["gradient"])
    _by_label(at.radio, "Compare with").set_value("Similar images I upload")
    at = at.run()
    with open(PHOTO, "rb") as f:
        good = f.read()
    at.file_uploader[1].set_value([("frame1.png", good, "image/png"), ("notes.png", b"text", "image/png")])
    at = at.run()
    at = _check(at)
    assert not at.exception, at.exception
    errors = [_shown(e.value) for e in at.error]
    assert len(errors) == 1 and "notes.png" in errors[0], errors
    table = at.dataframe[0].value
    assert table.iloc[0]["verdict"] == "stable" and table.iloc[0]["mean rank correlation"] == 1.0
    captions = [_shown(c) for el in at.get("image") for c in el.captions]
    assert any(c.startswith("frame1.png · tiger cat") and "ρ 1.00" in c for c in captions), captions
