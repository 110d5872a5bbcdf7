"""The Gallery page with annotations and shortcut groups (AppTest), on the hand-built model that
scores "apple" by a corner watermark: the mapping is shown, the 2x2 count, the "right answer,
looked elsewhere" filter lists the watermarked apples, a flagged shortcut group shows them in
the grid, ready to send to review."""

from __future__ import annotations

import os

from conftest import models_app, select_model

from tests._watermark import write_model, write_set


def _ok(at) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def _tiles(at) -> list[str]:
    return sorted(b.key[len("gopen_") :] for b in at.button if (b.key or "").startswith("gopen_"))


def test_reasons_filters_and_a_shortcut_group(tmp_path, monkeypatch):
    sets = tmp_path / "sets"
    truth = write_set(sets / "fruit")
    card = write_model(tmp_path / "models")
    monkeypatch.setenv("SALIENCY_DB", str(tmp_path / "data" / "reviews.sqlite"))
    monkeypatch.setenv("SALIENCY_GALLERY_DIR", str(sets))
    for name in ("DATABASE_URL", "SALIENCY_GALLERY_DB", "SALIENCY_REVIEW_DIR", "SALIENCY_RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    at = select_model(models_app(monkeypatch, tmp_path / "models"), card)
    at = at.switch_page("pages/gallery.py").run()
    _ok(at)
    at.radio(key="go_source").set_value("Server folder")
    at.selectbox(key="go_folder").set_value("fruit")
    at.multiselect(key="go_methods").set_value(["gradient"])
    uploader = next(u for u in at.get("file_uploader") if u.key == "go_annotations")
    uploader.set_value([("boxes.csv", truth["boxes"].read_bytes(), "text/csv")])
    next(b for b in at.button if b.label == "Open and compute").click()
    at.run()
    _ok(at)
    assert {m.label: m.value for m in at.metric}["Images with a result"] == "18 of 18"
    mapping = next(d.value for d in at.dataframe if "matched by" in d.value.columns).set_index("label")
    assert mapping.loc["apple", "model classes"] == "apple (#0)"
    assert mapping.loc["apple", "matched by"] == "exact class name"
    counts = next(d.value for d in at.dataframe if "looked elsewhere" in d.value.columns)
    assert counts.loc["correct", "looked elsewhere"] == 5 and counts.loc["wrong", "looked elsewhere"] == 1

    at.radio(key="gf_reason").set_value("Right answer, looked elsewhere")
    at.run()
    _ok(at)
    hashes = {h for h in _tiles(at)}
    assert len(hashes) == len(truth["marked_apples"]) == 5
    captions = " ".join(m.value for m in at.markdown)
    assert "inside the part · peak outside" in captions.replace("\\", "")
    at.slider(key="gf_threshold").set_value(0)  # everything "looked at the part" at 0 %
    at.run()
    assert _tiles(at) == []

    at.radio(key="gf_reason").set_value("All images")
    at.slider(key="gf_threshold").set_value(50)
    at.selectbox(key="gg_class").set_value("apple")
    at.run()
    next(b for b in at.button if b.key == "gg_find").click()
    at.run()
    _ok(at)
    flagged = [w.value for w in at.warning if "corner" in w.value]
    assert len(flagged) == 1 and "top-left corner" in flagged[0]
    show = [b for b in at.button if (b.key or "").startswith("gg_show_")]
    assert len(show) >= 2
    # the flagged group: the 5 watermarked apples and the watermarked plum the model calls apple
    group = next(b for b in show if b.label == "Show these 6 in the grid")
    group.click()
    at.run()
    _ok(at)
    assert len(_tiles(at)) == 6 and set(hashes) <= set(_tiles(at))
    assert any(b.label == "Send these 6 to review" for b in at.button)
    assert os.path.exists(tmp_path / "data" / "gallery.sqlite")
