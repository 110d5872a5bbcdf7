"""Drive the Explain page with streamlit's AppTest: real model, real photo, real uploads."""
import os
import re

import skimage
from streamlit.testing.v1 import AppTest

from conftest import shown

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PHOTO = os.path.join(os.path.dirname(skimage.__file__), "data", "chelsea.png")



def _shown(text: str) -> str:
    """What a reader sees of Markdown source: pages escape user text (file names, labels,
    messages) with backslashes, which the Markdown renderer removes."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)

def _app() -> AppTest:
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300)
    return at.run()


def _images(at):
    return list(at.get("image"))


def _apply(at, methods, samples):
    at.sidebar.multiselect(key="methods").set_value(methods)
    at.sidebar.slider(key="samples").set_value(samples)
    at.sidebar.button[0].click()  # form submit "Apply"
    return at.run()


def test_upload_photo_several_methods():
    at = _app()
    assert not at.exception
    at.multiselect[0].set_value([])  # no sample photo: only the upload
    with open(PHOTO, "rb") as f:
        at.file_uploader[0].set_value(("chelsea.png", f.read(), "image/png"))
    at = _apply(at, ["gradient", "smoothgrad", "gradcam"], 4)
    assert not at.exception, at.exception
    assert not at.error, [_shown(e.value) for e in at.error]
    # original + one overlay per method, each with a colour bar
    captions = [c for el in _images(at) for c in _captions(el)]
    assert "What the model sees" in captions
    for label in ("Gradient", "SmoothGrad", "Grad-CAM"):
        assert label in captions, captions
    text = " ".join(_shown(m.value) for m in at.markdown)
    # the page's prediction is the model's own (the photo is cropped once, not twice)
    assert "**Prediction:** tiger cat (" in text, text
    legends = " ".join(_shown(c.value) for c in at.caption)
    assert "tiger cat" in legends or "Egyptian cat" in legends or "tabby" in legends
    assert any(b.proto.label.startswith("Download everything") for b in at.get("download_button"))


def test_corrupt_upload_next_to_good_one():
    at = _app()
    at.multiselect[0].set_value([])
    with open(PHOTO, "rb") as f:
        good = f.read()
    at.file_uploader[0].set_value([("notes.png", b"this is a text file, not a picture", "image/png"),
                                   ("chelsea.png", good, "image/png"),
                                   ("broken.png", good[: len(good) // 3], "image/png")])
    at = _apply(at, ["gradient", "gradcam"], 4)
    assert not at.exception, at.exception
    errors = [_shown(e.value) for e in at.error]
    assert len(errors) == 2, errors
    assert "notes.png" in errors[0] and "not an image" in errors[0]
    assert "broken.png" in errors[1]
    assert not any("Traceback" in e for e in errors)
    captions = [c for el in _images(at) for c in _captions(el)]
    assert "Gradient" in captions and "Grad-CAM" in captions


def _captions(el):
    return el.captions


def test_convergence_readout_and_sample_until_settled():
    at = _app()  # the first sample photo (the cat)
    at = _apply(at, ["smoothgrad", "gradient"], 4)
    assert not at.exception, at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "Still changing: a re-run with other random noise" in captions, captions
    assert "Estimated agreement with a re-run at 4 samples: Spearman" in captions
    assert captions.count("Estimated agreement") == 1  # single-pass gradient has no readout
    at.checkbox(key="until_settled").check()
    at.number_input(key="max_samples").set_value(8)
    at = next(b for b in at.button if b.label == "Apply" and b.form_id == "settle").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    captions = " ".join(c.value for c in at.caption)
    assert "Stopped at the maximum after 8 samples." in captions, captions


def test_outline_view_for_any_method():
    """Display "Outline": each map becomes the outline of the regions holding the chosen share,
    said in the caption; a model-agnostic method (occlusion) and a gradient one alike."""
    at = _app()
    at = _apply(at, ["gradient", "occlusion"], 4)
    assert not at.exception, at.exception
    at = at.radio(key="display").set_value("Outline").run()
    at = at.slider(key="outline_share").set_value(40).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    captions = [c for el in _images(at) for c in _captions(el)]
    assert "Gradient" in captions and "Occlusion" in captions
    legends = [shown(c.value) for c in at.caption if shown(c.value).startswith("Outlined:")]
    assert len(legends) == 2, [c.value for c in at.caption]
    assert all("(asked: at least 40%)" in legend and "SLIC" in legend for legend in legends)
    assert any("positive attribution" in legend for legend in legends)  # occlusion is signed
