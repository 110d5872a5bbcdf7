"""Drive the Gallery page with AppTest on the real demo model, real SQLite files and a real
accounts file: open the demo set, filter to the mistakes, open one, send them to review, follow
the review item back; a hostile ZIP upload is listed item by item."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import zipfile

import numpy as np
import pytest
from conftest import shown
from PIL import Image
from streamlit.testing.v1 import AppTest

import saliency_core
from saliency_core import gallery
from saliency_core.review import auth
from saliency_core.review import store as rs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALICE, ALICE_PW = "alice", "alice-password-1"
DEMO_ERRORS = 12  # the demo model's mistakes on the 32-image demo set (see saliency_core.labelled)
HOSTILE = "<img src=x onerror=alert(1)> [link](javascript:alert(1)) :red[y]"  # a folder name: no "/"


@pytest.fixture
def env(tmp_path, monkeypatch):
    users = tmp_path / "users.toml"
    auth.add_user(ALICE, ALICE_PW, path=users, rounds=4)
    monkeypatch.setenv("SALIENCY_DB", str(tmp_path / "data" / "reviews.sqlite"))
    monkeypatch.setenv("SALIENCY_USERS", str(users))
    for name in (
        "DATABASE_URL",
        "SALIENCY_GALLERY_DB",
        "SALIENCY_REVIEW_DIR",
        "SALIENCY_GALLERY_DIR",
        "SALIENCY_RAY_ADDRESS",
    ):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _gallery() -> AppTest:
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=600).run()
    return at.switch_page("pages/gallery.py").run()


def _ok(at) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def _button(at, label: str):
    return next(b for b in at.button if b.label == label)


def _tiles(at) -> list:
    return [b for b in at.button if (b.key or "").startswith("gopen_")]


def _markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def _metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _predictions(path) -> int:
    if not os.path.exists(path):
        return 0
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM predictions").fetchone()[0]


def test_demo_set_mistakes_open_one_send_to_review_and_back(env, monkeypatch):
    db = env / "data" / "gallery.sqlite"
    at = _gallery()
    _ok(at)
    assert _predictions(db) == 0  # nothing computed before asked
    _button(at, "Open the demo set").click()
    at.run()
    _ok(at)
    assert _predictions(db) == 32
    assert _metric(at, "Images with a result") == "32 of 32"
    assert _metric(at, "Predicted correctly") == "62%" and _metric(at, "Mistakes") == str(DEMO_ERRORS)
    assert "The model gets **20 of 32** images right" in _markdown(at)
    assert len(_tiles(at)) == 32
    images = at.get("image")
    assert len(images) >= 32 and all(i.alt for img in images for i in img.proto.imgs), (
        "every image needs alt text"
    )
    assert "Last run: 32 images computed" in " ".join(c.value for c in at.caption)

    # filter to the mistakes, surest first
    at.radio(key="gf_outcome").set_value("Mistakes only")
    at.selectbox(key="gf_order").set_value("Confident mistakes first")
    at.run()
    _ok(at)
    assert len(_tiles(at)) == DEMO_ERRORS
    assert f"**{DEMO_ERRORS} of 32 images** match" in _markdown(at)
    assert "clock\\_motion" in _markdown(at)

    # open the first: every map from the store, nothing recomputed
    def refuse(*args, **kwargs):
        raise AssertionError("a map was computed again")

    with monkeypatch.context() as patch:
        for module in (gallery, saliency_core.pipeline):
            patch.setattr(module, "explain", refuse)
        _tiles(at)[0].click()
        at.run()
    _ok(at)
    text = _markdown(at)
    assert (
        "### clock/clock\\_motion\\.png" in text
        and ":red-badge[Mistake]" in text
        and "True class **clock**" in text
    )
    captions = [c for img in at.get("image") for c in img.captions]
    assert {"What the model sees", "Grad-CAM", "Gradient"} <= set(captions), captions
    assert any("nothing recomputed" in c.value for c in at.caption)

    # the same maps as outlined regions, still from the store
    with monkeypatch.context() as patch:
        for module in (gallery, saliency_core.pipeline):
            patch.setattr(module, "explain", refuse)
        at.radio(key="gallery_item_view").set_value("Outline")
        at.run()
    _ok(at)
    outlined = [i.alt for img in at.get("image") for i in img.proto.imgs if "as outlines" in i.alt]
    assert len(outlined) == 2 and all("30 % of the map" in a for a in outlined), outlined
    assert sum(shown(c.value).startswith("Outlined:") and "holding" in c.value for c in at.caption) == 2
    at.radio(key="gallery_item_view").set_value("Heatmap")
    at.run()

    # sign in on the Review page, come back, send the 12 mistakes to review
    at.switch_page("pages/review.py").run()
    at.text_input(key="signin_user").input(ALICE)
    at.text_input(key="signin_password").input(ALICE_PW)
    _button(at, "Sign in").click()
    at.run()
    at.switch_page("pages/gallery.py").run()
    _ok(at)
    assert len(_tiles(at)) == DEMO_ERRORS  # the filters were kept
    at.text_input(key="gallery_batch_name").input("demo mistakes")
    _button(at, f"Send these {DEMO_ERRORS} to review").click()
    at.run()
    _ok(at)
    assert [s.value for s in at.success] == [
        f"Sent {DEMO_ERRORS} images to review as batch **demo mistakes**."
    ]
    with rs.ReviewStore(rs.sqlite_url(env / "data" / "reviews.sqlite")) as review:
        batch = review.batch("demo mistakes")
        assert batch.source.startswith("gallery:") and batch.created_by == ALICE
        assert set(batch.methods) == {"gradcam", "gradient"}

    # the review queue holds them; a decision there shows here
    at.switch_page("pages/review.py").run()
    _ok(at)
    position = next(m.value for m in at.markdown if m.value.startswith("**Item "))
    assert shown(position) == "**Item 1 of 12:** clock/clock_motion.png"  # the name escaped as text
    next(b for b in at.button if b.label == "Reject" and (b.key or "").startswith("decide::")).click()
    at.run()
    _ok(at)
    at.button(key="review_prev").click()
    at.run()
    _button(at, "Open in the Gallery").click()
    at.run()
    _ok(at)
    assert "From review batch **demo mistakes**" in " ".join(c.value for c in at.caption)
    assert any(t.value.startswith("Review (demo mistakes): Reject by alice") for t in at.text)
    assert "Review: Reject \\(alice\\)" in _markdown(at)  # on the item's tile too


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
        buf, "PNG"
    )
    return buf.getvalue()


def test_hostile_zip_lists_each_bad_item_and_shows_the_rest(env):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("tabby/a.png", _png(1))
        z.writestr("espresso/b.png", _png(2))
        z.writestr("espresso/broken.png", b"not an image")
        z.writestr("tripod/same.png", _png(1))
        z.writestr("unicorn/c.png", _png(3))
        z.writestr("../../escape.png", _png(4))
        z.writestr(f"{HOSTILE}/d.png", _png(5))  # user text: shown as text, never markup
        # a class no other label names: labels naming the same class would be merged into one
        z.writestr("classes.json", json.dumps({HOSTILE: ["tiger cat"]}))
    at = _gallery()
    at.radio(key="go_source").set_value("Upload a ZIP")
    at.get("file_uploader")[0].set_value(("set.zip", buf.getvalue(), "application/zip"))
    at.multiselect(key="go_methods").set_value(["gradcam"])
    _button(at, "Open and compute").click()
    at.run()
    assert not at.exception, at.exception
    left_out = next(d.value for d in at.dataframe if "why" in d.value.columns).set_index("file or label")
    assert "archive's root" in left_out.loc["../../escape.png", "why"]
    assert "duplicate file" in left_out.loc["tripod/same.png", "why"]
    assert "names no class" in left_out.loc["unicorn/c.png", "why"]
    assert "not an image file" in left_out.loc["espresso/broken.png", "why"]
    assert len(_tiles(at)) == 3 and _metric(at, "Images with a result") == "3 of 4", left_out.to_dict()
    text = _markdown(at)
    assert (
        "true\\: \\<img src\\=x onerror\\=alert\\(1\\)\\> \\[link\\]\\(javascript\\:alert\\(1\\)\\) "
        "\\:red\\[y\\]"
    ) in text, text
    assert "[link](javascript" not in text
    charts = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("&lt;img src=x" in spec for spec in charts) and not any("<img" in spec for spec in charts)
