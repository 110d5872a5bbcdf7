"""Drive the Validate page with AppTest: the bundled demo set, and uploads with a malformed
annotation file."""

import os
import re

import skimage
from conftest import open_page, rerun_page
from streamlit.testing.v1 import AppTest

PHOTOS = os.path.join(os.path.dirname(skimage.__file__), "data")
METHODS = ["gradient", "gradcam"]


def _shown(text: str) -> str:
    """What a reader sees of Markdown source: pages escape user text (file names, labels,
    messages) with backslashes, which the Markdown renderer removes."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


def _page() -> AppTest:
    return open_page("pages/validate.py", METHODS)


def _run(at) -> AppTest:
    return rerun_page(at, METHODS)


def _by_label(elements, start: str):
    return next(e for e in elements if e.label.startswith(start))


def _table(at, column: str):
    """The first table on the page with ``column``."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _photo(name: str) -> bytes:
    with open(os.path.join(PHOTOS, name), "rb") as f:
        return f.read()


def test_demo_set_summary_charts_worst_images_and_exports():
    at = _page()
    assert not at.exception, at.exception
    assert _by_label(at.radio, "Data set").value.startswith("Demo")
    step = _by_label(at.selectbox, "Pixels changed per step")
    assert step.value.startswith("10 %")  # the demo default: 11 points per curve
    estimate = " ".join(c.value for c in at.caption if "on this machine" in c.value)
    assert "This run (5 images × 2 maps, 11 points per curve)" in estimate, estimate
    assert any(b.label.startswith("Use the full setting (0.5 % steps") for b in at.button)
    step.set_value("20 % (6 points per curve, quick look)")
    _by_label(at.button, "Run validation").click()
    at = _run(at)
    assert not at.exception, at.exception
    assert not at.error, [_shown(e.value) for e in at.error]

    warnings = [_shown(w.value) for w in at.warning]
    assert any("Only 5 annotated example(s) were scored; at least 50" in w for w in warnings), warnings
    summary = _table(at, "Images")
    assert summary["Method"].tolist() == ["Gradient", "Grad-CAM", "Centre bias (Gaussian)", "Random map"]
    for column in (
        "Pointing game",
        "Relevance mass",
        "Relevance rank accuracy",
        "IoU of the top-k %",
        "Deletion AUC",
        "Insertion AUC",
    ):
        assert summary[column].str.match(r"^\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]$").all(), summary[column]
    assert (summary["Images"] == 5).all() and set(summary["Scored on"]) == {"raw map"}
    captions = " ".join(_shown(c.value) for c in at.caption)
    assert "percentile bootstrap over images, 2000 resamples" in captions
    assert (
        "deleted pixels become the image's mean colour" in captions
        and "10036 px (20.0%) per step" in captions
    ), [c for c in captions.split(". ") if "per step" in c or "bootstrap" in c]

    rows = _table(at, "Image")
    assert len(rows) == 20 and {"Image", "Method", "Pointing game", "Deletion AUC"} <= set(rows.columns)
    assert not [c for c in rows.columns if "_" in c]  # headers in words, no code names
    scores = rows["Pointing game"].tolist()
    assert scores == sorted(scores)  # sorted by the first measure, worst first
    text = " ".join(_shown(m.value) for m in at.markdown)
    assert "Worst images" in text and "rocket.jpg" in text and "Prediction: missile" in text
    assert "centre-bias baseline" in text
    assert len(at.get("plotly_chart")) == 2
    assert any("Brighter" in c.value or "brighter" in c.value for c in at.caption)  # the map legend
    assert "low → high influence" in [c.value for c in at.caption]
    assert all(b.proto.icon == ":material/download:" for b in at.get("download_button"))
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == [
        "Per-image table (CSV)",
        "Summary (CSV)",
        "Skipped items (CSV)",
        "Settings and summary (JSON)",
    ]


def test_malformed_annotation_file_gives_the_skipped_list_not_an_exception():
    at = _page()
    _by_label(at.radio, "Data set").set_value("My data set (upload)")
    at = _run(at)
    _by_label(at.file_uploader, "Images").set_value(
        [
            ("chelsea.png", _photo("chelsea.png"), "image/png"),
            ("coffee.png", _photo("coffee.png"), "image/png"),
        ]
    )
    _by_label(at.file_uploader, "Annotation files").set_value(
        [
            ("boxes.csv", b"image,x_min,y_min,x_max,y_max\ncoffee.png,170,15,420,300\n", "text/csv"),
            ("chelsea.xml", b"<annotation><filename>chelsea.png</filename><object>", "text/xml"),
        ]
    )
    at = _run(at)
    assert not at.exception, at.exception
    assert "1 annotated image(s) found" in " ".join(_shown(c.value) for c in at.caption)
    _by_label(at.checkbox, "Deletion / insertion").uncheck()
    _by_label(at.button, "Run validation").click()
    at = _run(at)
    assert not at.exception, at.exception
    assert not at.error, [_shown(e.value) for e in at.error]
    skipped = _table(at, "Reason")
    reasons = dict(zip(skipped["Item"], skipped["Reason"]))
    assert "not well-formed XML" in reasons["chelsea.xml"]
    assert "no annotation for this image" in reasons["chelsea.png"]
    summary = _table(at, "Images")
    assert (summary["Images"] == 1).all() and "Deletion AUC" not in summary


def test_cancel_stops_the_run_keeps_what_was_done_and_goes_on():
    """A Cancel click interrupts the script at its next Streamlit call (here: the progress bar
    after the second image), as a click does on a live server; what was scored stays."""
    from saliency_core.evaluation import validate as va

    at = _page()
    _by_label(at.checkbox, "Deletion / insertion").uncheck()
    at = _run(at)
    original = va.ValidationRun.step
    seen = []

    def step(self):  # after the second image, the reviewer presses Cancel
        original(self)
        seen.append(self.done)
        if self.done == 2:
            at.session_state["validate__running"] = False  # what the Cancel button's callback does
            raise __import__("streamlit").runtime.scriptrunner.StopException()

    va.ValidationRun.step = step
    try:
        _by_label(at.button, "Run validation").click()
        at = _run(at)
    finally:
        va.ValidationRun.step = original
    assert not at.exception, at.exception
    at = _run(at)  # the rerun the click starts
    assert seen == [1, 2]
    warnings = " ".join(_shown(w.value) for w in at.warning)
    assert "Stopped after 2 of 5 images: the results below cover those." in warnings
    summary = _table(at, "Images")
    assert (summary["Images"] == 2).all()  # what was done is shown
    _by_label(at.button, "Go on with the other 3 image(s)").click()
    at = _run(at)
    assert not at.exception, at.exception
    assert (_table(at, "Images")["Images"] == 5).all()
    assert not any("Stopped after" in _shown(w.value) for w in at.warning)
