"""Drive the Explain page with streamlit's AppTest: real model, real photo, real uploads."""

import os
import re

import skimage
from conftest import shown
from streamlit.testing.v1 import AppTest

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
    at.file_uploader[0].set_value(
        [
            ("notes.png", b"this is a text file, not a picture", "image/png"),
            ("chelsea.png", good, "image/png"),
            ("broken.png", good[: len(good) // 3], "image/png"),
        ]
    )
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
    assert "a re-run with other random noise" in captions or "a re-run with other noise" in captions
    assert "Estimated agreement with a re-run at 4 samples, at full detail: Spearman" in captions
    assert captions.count("Estimated agreement") == 1  # single-pass gradient has no readout
    assert "Computed in float32" in captions  # the execution plan (SALIENCY_PLANS=float32 in the tests)
    at.checkbox(key="until_settled").check()
    at.number_input(key="max_samples").set_value(8)
    at = next(b for b in at.button if b.label == "Apply" and b.form_id == "settle").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    captions = " ".join(c.value for c in at.caption)
    assert "Stopped at the maximum after 8 samples." in captions, captions
    # the sidebar names the plan once the model has been used for an averaging method
    assert any(c.value.startswith("Averaging methods: computed in float32") for c in at.sidebar.caption)


def test_outline_view_for_any_method():
    """Display "Outline": each map becomes the outline of the regions holding the chosen share,
    said in the caption; a model-agnostic method (occlusion) and a gradient one alike."""
    at = _app()
    # occlusion at a 32 px step (7 x 7 squares, 50 forward passes): estimated under the page's
    # ask-first limit even on a busy CPU, so it is computed at once
    at.sidebar.select_slider(key="stride").set_value(32)
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


# ---- issue 17: what a live demo showed ----------------------------------------------------------------


def _target_panel(at, mode: str):
    next(r for r in at.radio if r.label == "Explain the score of").set_value(mode)
    return at


def test_class_by_name_computes_nothing_before_a_class_is_picked(monkeypatch):
    from saliency_core import pipeline

    at = _app()
    at = _apply(at, ["gradient", "gradcam"], 4)
    calls = []
    original = pipeline.explain_image

    def counting(model, image, name, methods, *args, **kwargs):
        calls.append((name, list(methods), args[1] if len(args) > 1 else kwargs.get("target")))
        return original(model, image, name, methods, *args, **kwargs)

    monkeypatch.setattr(pipeline, "explain_image", counting)
    at = _target_panel(at, "Class by name").run()
    assert not at.exception, at.exception
    assert calls == []  # no map for "tench" or any class
    assert any("Pick the class to explain" in i.value for i in at.info)
    box = next(s for s in at.selectbox if s.label == "Class")
    assert box.value is None
    box.set_value(967)  # espresso
    at = at.run()
    assert not at.exception, at.exception
    assert [c[2] for c in calls] == [967]
    assert "Maps explain **espresso**" in " ".join(c.value for c in at.caption)


def test_rank_two_target_keeps_the_chart_in_rank_order_and_flags_an_unsure_model():
    at = _app()
    at = _apply(at, ["gradcam"], 4)
    at = _target_panel(at, "Top-5 rank").run()
    next(n for n in at.number_input if n.label.startswith("Rank")).set_value(2)
    at = at.run()
    assert not at.exception, at.exception
    chart = next(c for c in at.get("plotly_chart") if "five most likely" in c.proto.spec)
    import json

    spec = json.loads(chart.proto.spec)
    bar = spec["data"][0]
    order = spec["layout"]["yaxis"]["categoryarray"]
    assert order == bar["y"][::-1]  # rank 1 drawn at the top, then 2, 3...
    assert bar["x"] == sorted(bar["x"], reverse=True)
    assert "(explained)" in bar["text"][1] and "(explained)" not in bar["text"][0]
    # the cat photo's top class has 39 %: the page says the model is unsure
    assert any("The model is **unsure**" in w.value for w in at.warning)
    assert "**Prediction:** tiger cat (39.5%)" in [m.value for m in at.markdown]


def test_layout_words_alt_text_downloads_and_one_caution_per_method():
    from conftest import image_alts

    at = _app()
    at = _apply(at, ["gradient", "guided_backprop", "smoothgrad", "gradcam"], 4)
    assert not at.exception, at.exception
    alts = image_alts(at)
    assert alts and all(alt for _, alt in alts), alts  # every image says what it shows
    overlay = next(alt for caption, alt in alts if caption == "Grad-CAM")
    assert "Grad-CAM saliency map over Cat (chelsea.png), explaining the class tiger cat" in overlay
    captions = [c.value for c in at.caption]
    assert captions.count("low → high influence") == 4  # colour bars in words
    assert not any("percentile" in c for c in captions if c != "low → high influence")
    labels = [b.proto.label for b in at.get("download_button")]
    assert len(labels) == len(set(labels))  # distinct download labels
    assert "Grad-CAM map (PNG)" in labels and "Grad-CAM overlay only (PNG)" in labels
    guided = [w.value for w in at.warning if "Guided backprop" in w.value]
    assert len(guided) == 1  # one caution, not two
    assert all(not b.proto.icon or b.proto.icon.startswith(":material/") for b in at.get("download_button"))


def test_sanity_verdict_shows_only_under_the_maps_of_its_photo():
    import saliency_core as sc
    from pages._verdicts import forget_sanity_verdicts, record_sanity_verdict
    from saliency_core.evaluation import sanity as rz

    forget_sanity_verdicts()
    at = _app()
    at.multiselect[0].set_value(["Cat (chelsea.png)", "Espresso (coffee.png)"])
    at = _apply(at, ["guided_backprop"], 4)
    model = sc.load_model("demo")
    cat = sc.image_hash(sc.load_image(PHOTO))
    verdict = rz.SanityVerdict(
        "guided_backprop",
        False,
        "spearman_abs",
        0.9,
        0.5,
        "cascading",
        10,
        19,
        model.fingerprint,
        cat,
        "Cat (chelsea.png)",
    )
    record_sanity_verdict(model, verdict)
    at = at.run()
    assert not at.exception, at.exception
    warnings = [w.value for w in at.warning if "Guided backprop" in w.value]
    assert len(warnings) == 2  # the method's caution, once per photo
    with_verdict = [w for w in warnings if "Fails the randomisation sanity check" in w]
    assert len(with_verdict) == 1 and "Cat" in with_verdict[0]
    # the verdict sits in the cat's container, before the espresso's heading
    texts = [
        e.value
        for e in at.main
        if getattr(e, "type", "") in ("subheader", "alert")
        or e.__class__.__name__ in ("Subheader", "Warning")
    ]
    headings = [i for i, t in enumerate(texts) if "coffee" in str(t)]
    verdict_at = [i for i, t in enumerate(texts) if "Fails the randomisation" in str(t)]
    assert headings and verdict_at and verdict_at[0] < headings[0]
    forget_sanity_verdicts()


def test_gif_upload_is_read_and_errors_name_the_file_once():
    import io

    from PIL import Image

    at = _app()
    at.multiselect[0].set_value([])
    buf = io.BytesIO()
    Image.open(PHOTO).convert("P").save(buf, format="GIF")
    at.file_uploader[0].set_value(
        [
            ("cat.gif", buf.getvalue(), "image/gif"),
            ("notes.png", b"this is a text file, not a picture", "image/png"),
        ]
    )
    at = _apply(at, ["gradcam"], 4)
    assert not at.exception, at.exception
    errors = [_shown(e.value) for e in at.error]
    assert len(errors) == 1 and errors[0].count("notes.png") == 1, errors
    assert "cat.gif" in " ".join(_shown(s.value) for s in at.subheader)
    assert ".gif" in next(u for u in at.file_uploader if u.label == "Upload images").proto.type


def test_interactive_map_is_drawn_over_the_photo_with_pixel_axes():
    import json

    at = _app()
    at = _apply(at, ["gradcam"], 4)
    heat = next(c for c in at.get("plotly_chart") if "map over the photo" in c.proto.spec)
    spec = json.loads(heat.proto.spec)
    kinds = [t["type"] for t in spec["data"]]
    assert kinds == ["image", "heatmap"]
    assert spec["layout"]["xaxis"]["range"] == [0, 223] and spec["layout"]["yaxis"]["range"] == [223, 0]


def test_cancel_keeps_the_maps_done_and_computes_the_rest_on_request(monkeypatch):
    import pages._maps as maps

    at = _app()
    at = _apply(at, ["gradient"], 4)
    at.multiselect[0].set_value(["Espresso (coffee.png)"])
    original, calls = maps.cached_explain, []

    def cancelled_on_the_second_map(model, image, method, *args, **kwargs):
        calls.append(method)
        if len(calls) == 2:  # Cancel pressed while the second map computes
            at.session_state["explain__cancelled"] = True
            at.session_state["explain__running"] = False
            raise __import__("streamlit").runtime.scriptrunner.StopException()
        return original(model, image, method, *args, **kwargs)

    monkeypatch.setattr(maps, "cached_explain", cancelled_on_the_second_map)
    at.sidebar.multiselect(key="methods").set_value(["gradient", "gradcam"])
    at.sidebar.button[0].click()
    at = at.run()
    at = at.run()  # the rerun the click starts
    assert not at.exception, at.exception
    assert calls[:2] == ["gradient", "gradcam"] and calls.count("gradcam") == 1  # no new attempt after Cancel
    assert any("Stopped: the maps computed so far are shown" in w.value for w in at.warning)
    captions = [c for el in _images(at) for c in _captions(el)]
    assert "Gradient" in captions and "Grad-CAM" not in captions
    assert any("Not computed yet: Grad-CAM" in c.value for c in at.caption)
    monkeypatch.setattr(maps, "cached_explain", original)
    next(b for b in at.button if b.label == "Compute 1 map(s)").click()
    at = at.run()
    assert not at.exception, at.exception
    captions = [c for el in _images(at) for c in _captions(el)]
    assert "Gradient" in captions and "Grad-CAM" in captions


def test_averaged_map_drawn_at_its_reproducible_detail_and_the_switch_shows_full_detail(demo):
    """The default run (SmoothGrad at the sidebar's 50 samples) draws SmoothGrad at the detail a
    re-run reproduces, with words saying so; the gradient (exact) is drawn at full detail with no
    such words; "Show full detail" draws SmoothGrad raw and says what a re-run would change."""
    import saliency_core as sc
    from saliency_core.engine import render

    exp = sc.explain(demo, PHOTO, "smoothgrad", samples=50, seed=0)
    px = exp.diagnostics["convergence"]["reproducible_px"]
    assert px is not None and px > 0  # SmoothGrad-50 on the cat: reproducible at a blurred detail
    at = _app()
    at = _apply(at, ["smoothgrad", "gradient"], 50)
    if any(b.key == "explain_go" for b in at.button):  # a run estimated long waits for a click
        at = at.button(key="explain_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    captions = " ".join(c.value for c in at.caption)
    agreement = next(r["rerun_spearman"] for r in exp.diagnostics["convergence"]["levels"] if r["px"] == px)
    assert (
        f"Shown at {px:g}-pixel detail, the finest that a re-run with other noise reproduces "
        f"(estimated agreement {agreement:.2f}). Finer speckle is random noise." in captions
    ), captions
    assert captions.count("-pixel detail") == 1  # the gradient map: exact, at full detail, no words
    drawn = render.shown_map(exp.saliency, "smoothgrad", exp.diagnostics)
    assert drawn.detail_px == px and drawn.saliency.std() < exp.saliency.std()
    gradient = render.shown_map(sc.explain(demo, PHOTO, "gradient").saliency, "gradient", {})
    assert gradient.detail_px == 0 and gradient.words == ""
    at.sidebar.toggle(key="full_detail").set_value(True)
    at = at.run()
    assert not at.exception, at.exception
    captions = " ".join(c.value for c in at.caption)
    assert f"Shown at full detail: finer than {px:g}-pixel detail a re-run" in captions, captions
    assert f"Shown at {px:g}-pixel detail" not in captions
    # a display detail applies to any map, and the words say it was smoothed for display
    at.sidebar.toggle(key="full_detail").set_value(False)
    at.sidebar.select_slider(key="display_px").set_value(8)
    at = at.run()
    captions = " ".join(c.value for c in at.caption)
    assert "Smoothed for display at 8-pixel detail (a Gaussian blur); the map itself is finer." in captions
