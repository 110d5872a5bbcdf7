"""Drive the Sanity check page with AppTest: real demo model, real photo; its verdicts then show
on the Explain page."""

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


def _sanity_page(methods) -> AppTest:
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300).run()
    at.switch_page("pages/sanity.py").run()
    at.sidebar.multiselect(key="methods").set_value(methods)
    next(b for b in at.sidebar.button if b.label == "Apply").click()
    return at.run()


def _run(at, depth: int) -> AppTest:
    next(s for s in at.slider if s.label.startswith("Layer blocks")).set_value(depth)
    next(b for b in at.button if b.label == "Run the sanity check").click()
    return at.run()


def test_sanity_page_verdicts_and_explain_caution():
    at = _sanity_page(["gradient", "guided_backprop", "gradcam"])
    assert not at.exception, at.exception
    assert any("Nothing is computed until you press **Run the sanity check**" in i.value for i in at.info)
    assert any("This check (3 methods × 5 maps)" in c.value for c in at.caption)  # estimate before the run
    assert any(b.label.startswith("Use the full setting (maps at every step") for b in at.button)
    at = _run(at, 3)  # _fc, _conv_head + _bn1, _blocks.15
    assert not at.exception, at.exception
    assert not at.error, [_shown(e.value) for e in at.error]

    passed = " ".join(_shown(s.value) for s in at.success)
    failed = " ".join(_shown(w.value) for w in at.warning)
    assert passed.count("Passes the randomisation sanity check on Cat (chelsea.png)") == 2, passed
    assert "Fails the randomisation sanity check" in failed and "3 of 19" in failed
    table = at.dataframe[0].value
    assert dict(zip(table["Method"], table["Verdict"])) == {
        "Gradient": "passes",
        "Guided backprop": "fails",
        "Grad-CAM": "passes",
    }
    assert "Prediction of the trained model:** tiger cat" in " ".join(_shown(m.value) for m in at.markdown)
    captions = [_shown(c) for el in at.get("image") for c in el.captions]
    assert sum(c.startswith("trained model · predicts tiger cat") for c in captions) == 3
    assert sum(c.startswith("top 3 of 19 blocks random · predicts") for c in captions) == 3
    assert not any("_blocks" in c for c in captions)  # no layer names
    # guided backprop: one warning (verdict and known limit together), not two
    assert (
        len([w for w in at.warning if "Guided" in w.value or "guided" in w.value or "edges" in w.value]) == 1
    )
    assert len(at.get("plotly_chart")) == 3
    assert "Brighter =" in " ".join(_shown(c.value) for c in at.caption)  # legend
    assert {b.proto.label for b in at.get("download_button")} == {
        "Similarities per step (CSV)",
        "Verdicts and settings (JSON)",
    }

    # the verdicts feed the Explain page's caution marks for this model
    at = at.switch_page("pages/explain.py").run()
    assert not at.exception, at.exception
    warnings = " ".join(_shown(w.value) for w in at.warning)
    assert "Fails the randomisation sanity check on Cat (chelsea.png)" in warnings
    assert sum("Passes the randomisation sanity check" in _shown(c.value) for c in at.caption) == 2


def test_sanity_page_bad_upload_keeps_the_page():
    at = _sanity_page(["gradcam"])
    at.file_uploader[0].set_value(("notes.png", b"not a picture", "image/png"))
    at = at.run()
    assert not at.exception, at.exception
    errors = [_shown(e.value) for e in at.error]
    assert len(errors) == 1 and "notes.png" in errors[0] and "not an image" in errors[0]
    assert not any("Traceback" in e for e in errors)


def test_cancel_keeps_the_methods_done_and_go_on_computes_the_rest():
    from saliency_core.evaluation import sanity as rz

    at = _sanity_page(["gradient", "gradcam"])
    original, calls = rz.sanity_check, []

    def second_is_cancelled(*args, **kwargs):  # Cancel pressed while the second method runs
        calls.append(args[2])
        if len(calls) == 2:
            at.session_state["sanity__running"] = False
            raise __import__("streamlit").runtime.scriptrunner.StopException()
        return original(*args, **kwargs)

    rz.sanity_check = second_is_cancelled
    try:
        next(r for r in at.radio if r.label.startswith("How the weights")).set_value("independent")
        at = _run(at, 2)
    finally:
        rz.sanity_check = original
    at = at.run()
    assert not at.exception, at.exception
    assert calls == [["gradient"], ["gradcam"]]
    assert any("Stopped after 1 of 2 methods" in w.value for w in at.warning)
    assert list(at.dataframe[0].value["Method"]) == ["Gradient"]
    next(b for b in at.button if b.label == "Go on with Grad-CAM").click()
    at = at.run()
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["Method"]) == ["Gradient", "Grad-CAM"]


def test_smoothgrad_maps_are_drawn_at_their_reproducible_detail():
    """An averaged map at each step is drawn at the detail a re-run reproduces and says so; the
    similarity stays on the raw maps. SmoothGrad-50 on chelsea.png with the demo model is
    reproducible from 4-pixel detail."""
    at = _run(_sanity_page(["smoothgrad"]), 1)
    assert not at.exception, at.exception
    captions = [_shown(c) for el in at.get("image") for c in el.captions]
    trained = next(c for c in captions if c.startswith("trained model"))
    assert "drawn at 4-pixel detail" in trained, captions
    assert any("on the raw maps" in _shown(c.value) for c in at.caption)
    words = " ".join(_shown(m.value) for m in at.markdown)
    assert "trained model: Shown at 4-pixel detail, the finest that a re-run with other noise" in words
    at.sidebar.toggle(key="full_detail").set_value(True)
    at = at.run()
    captions = [_shown(c) for el in at.get("image") for c in el.captions]
    assert not any("drawn at" in c for c in captions), captions
