"""Drive the Stability page with AppTest: real demo model, real photos and uploads."""

import os
import re

import skimage
from conftest import image_alts
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
    _by_label(at.number_input, "Number of changed copies").set_value(4)  # noise, brightness, contrast, shift
    at = _check(at)
    assert not at.exception, at.exception
    assert not at.error or all("fragile prediction" in _shown(e.value) for e in at.error), [
        _shown(e.value) for e in at.error
    ]

    table = at.dataframe[0].value
    assert list(table["Method"]) == ["Gradient", "Grad-CAM"]
    assert set(table["Verdict"]) <= {"stable", "unstable explanation", "fragile prediction"}
    cam = table[table["Method"] == "Grad-CAM"].iloc[0]
    grad = table[table["Method"] == "Gradient"].iloc[0]
    assert cam["Mean rank correlation"] > grad["Mean rank correlation"]
    messages = [_shown(m.value) for m in list(at.success) + list(at.warning) + list(at.error)]
    assert any(m.startswith("**Grad-CAM: ") for m in messages) and any(
        m.startswith("**Gradient: ") for m in messages
    )
    assert "Prediction on the original:** espresso" in " ".join(_shown(m.value) for m in at.markdown)

    captions = [_shown(c) for el in at.get("image") for c in el.captions]
    assert sum(c.startswith("original · espresso") for c in captions) == 2
    assert sum(c.startswith("shift 4 px right · ") and "follows the original" in c for c in captions) == 2
    alts = [a for _, a in image_alts(at)]
    assert (
        all(alts)
        and sum(
            "Grad-CAM saliency map over Espresso (coffee.png) (original), explaining the class espresso" in a
            for a in alts
        )
        == 1
    )
    assert len(at.get("plotly_chart")) == 1
    assert any("Brighter =" in _shown(c.value) for c in at.caption)
    assert any("Thresholds: stable if the mean rank correlation" in _shown(c.value) for c in at.caption)
    assert {b.proto.label for b in at.get("download_button")} == {
        "Scores per changed copy (CSV)",
        "Verdicts and settings (JSON)",
    }

    # thresholds re-judge the same maps without recomputing: demand perfection -> unstable
    _by_label(at.slider, "Stable if the mean rank correlation").set_value(1.0)
    at = at.run()
    assert not at.exception, at.exception
    verdicts = set(at.dataframe[0].value["Verdict"])
    assert "stable" not in verdicts


def test_shift_too_large_for_the_image_is_explained():
    at = _stability_page(["gradcam"])
    _by_label(at.number_input, "Number of changed copies").set_value(10)  # the 2nd shift goes down
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
    assert table.iloc[0]["Verdict"] == "stable" and table.iloc[0]["Mean rank correlation"] == 1.0
    captions = [_shown(c) for el in at.get("image") for c in el.captions]
    assert any(
        c.startswith("frame1.png · tiger cat") and "follows the original 1.00" in c for c in captions
    ), captions


def test_nothing_runs_before_the_button_and_cancel_keeps_the_finished_methods():
    from saliency_core.evaluation import stability as stab

    at = _stability_page(["gradient", "gradcam"])
    assert not at.exception, at.exception
    assert _by_label(at.number_input, "Number of changed copies").value == 6  # one of each kind
    assert any("Nothing is computed until you press" in i.value for i in at.info)
    assert any("This check (2 methods × 7 images)" in c.value for c in at.caption)
    assert any(b.label.startswith("Use the full setting (24 changed copies") for b in at.button)
    _by_label(at.number_input, "Number of changed copies").set_value(2)
    original = stab.stability_check

    def stopped_after_one_method(*args, on_result=None, **kwargs):
        def keep(so_far):  # the page keeps it, then the Cancel click stops the script
            on_result(so_far)
            at.session_state["stability__running"] = False
            raise __import__("streamlit").runtime.scriptrunner.StopException()

        return original(*args, on_result=keep, **kwargs)

    stab.stability_check = stopped_after_one_method
    try:
        at = _check(at)
    finally:
        stab.stability_check = original
    at = at.run()
    assert not at.exception, at.exception
    assert any("Stopped after 1 of 2 methods" in _shown(w.value) for w in at.warning)
    assert list(at.dataframe[0].value["Method"]) == ["Gradient"]
    _by_label(at.button, "Go on with Grad-CAM").click()
    at = at.run()
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["Method"]) == ["Gradient", "Grad-CAM"]
    assert not any("Stopped after" in _shown(w.value) for w in at.warning)
