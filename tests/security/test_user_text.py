"""Hostile user text reaches other users as text, never as Markdown: a reviewer's note with an
image link (which made the admin's browser fetch a remote address), a batch name with a link,
an uploaded file name with an image link. And no server stack trace reaches the page.

Real pages through AppTest, the real demo model, a real SQLite file and accounts file."""

from __future__ import annotations

import os
import tomllib

import pytest
import skimage
from streamlit.testing.v1 import AppTest

import saliency_core as sc
from saliency_core.engine.samples import sample_images
from saliency_core.review import auth
from saliency_core.review import store as rs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PHOTO = os.path.join(os.path.dirname(skimage.__file__), "data", "chelsea.png")
REMOTE = "http://example.invalid/a.png"
NOTE = f"![x]({REMOTE}) see [this](http://example.invalid/phish) <img src={REMOTE}> :red[alarm]"
ADMIN, ADMIN_PW = "quinn", "quinn-password-1"


def _markdown_elements(at) -> list[str]:
    """The source of every element Streamlit renders as Markdown (text, captions, alerts,
    headings, toasts, image captions, expander labels)."""
    kinds = (
        "markdown",
        "caption",
        "error",
        "warning",
        "info",
        "success",
        "subheader",
        "header",
        "title",
        "toast",
        "expander",
    )
    out = []
    for kind in kinds:
        for el in at.get(kind):
            value = getattr(el, "value", None) if kind != "expander" else el.proto.label
            out.append(str(value))
    for img in at.get("image"):
        out += [str(c) for c in img.captions]
    return out


def _assert_no_live_markup(at) -> None:
    for source in _markdown_elements(at):
        assert "](http" not in source and "![" not in source and "<img" not in source, source
        assert ":red[" not in source, source


@pytest.fixture
def db(tmp_path, monkeypatch):
    users = tmp_path / "users.toml"
    auth.add_user(ADMIN, ADMIN_PW, role="admin", path=users, rounds=4)
    path = tmp_path / "reviews.sqlite"
    monkeypatch.setenv("SALIENCY_DB", str(path))
    monkeypatch.setenv("SALIENCY_USERS", str(users))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SALIENCY_REVIEW_DIR", raising=False)
    return rs.sqlite_url(path)


def _admin_on_first_sample(batch: str = "") -> AppTest:
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300).run()
    at = at.switch_page("pages/review.py").run()
    at.text_input(key="signin_user").input(ADMIN)
    at.text_input(key="signin_password").input(ADMIN_PW)
    next(b for b in at.button if b.label == "Sign in").click()
    at = at.run()
    at.multiselect(key="rb_methods").set_value(["gradient"])
    if batch:
        at.text_input(key="rb_name").input(batch)
    next(b for b in at.button if b.label == "Open batch").click()
    return at.run()


def test_markdown_note_reaches_the_admin_as_text(db):
    """Hostile input: a reviewer's note ``![x](http://example.invalid/a.png)`` (plus a link, an
    HTML image and a colour directive)."""
    first = list(sample_images().values())[0]
    with rs.ReviewStore(db) as store:
        store.open_batch(
            "sample-photos",
            source="samples",
            created_by="bob",
            model_fingerprint="x",
            methods={"gradient": {}},
        )
        store.record(
            "sample-photos",
            sc.image_hash(sc.load_image(first)),
            os.path.basename(first),
            "bob",
            "reject",
            note=NOTE,
            seconds=3,
        )
    at = _admin_on_first_sample()
    assert not at.exception, at.exception
    # the note is on the page, exactly as typed, in a plain-text element
    assert f"bob: Reject. Note: {NOTE}" in [t.value for t in at.text]
    _assert_no_live_markup(at)
    # and in the admin's tables, which render cells as text
    notes = next(d.value for d in at.dataframe if "note" in d.value.columns and "version" in d.value.columns)
    assert NOTE in set(notes["note"])


def test_markdown_batch_name_is_shown_as_text(db):
    """Hostile input: a batch name with a Markdown link, shown to every reviewer who opens it."""
    name = "[urgent](http://example.invalid/phish) ![x](http://example.invalid/a.png)"
    at = _admin_on_first_sample(batch=name)
    assert not at.exception, at.exception
    subheaders = [s.value for s in at.subheader]
    assert any(s.startswith("Batch ") and "example\\.invalid" in s for s in subheaders), subheaders
    _assert_no_live_markup(at)


def test_markdown_file_name_is_shown_as_text():
    """Hostile input: an uploaded image named ``![x](http://example.invalid/a.png).png``."""
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300).run()
    at.multiselect[0].set_value([])
    with open(PHOTO, "rb") as f:
        at.file_uploader[0].set_value([(f"![x]({REMOTE}) **bold**.png", f.read(), "image/png")])
    at.sidebar.multiselect(key="methods").set_value(["gradient"])
    at.sidebar.button[0].click()
    at = at.run()
    assert not at.exception, at.exception
    assert any("example\\.invalid" in s.value for s in at.subheader), [s.value for s in at.subheader]
    _assert_no_live_markup(at)
    assert not any("**bold**" in s for s in _markdown_elements(at))


def test_unexpected_error_shows_a_reference_not_a_stack_trace(monkeypatch):
    """Hostile input: anything that makes a page raise; the page must not show the trace or the
    exception's text (which can hold paths and values from the server)."""
    import pages._settings as sidebar

    def broken():
        raise RuntimeError("secret server detail /etc/saliency/keys")

    monkeypatch.setattr(sidebar, "settings", broken)
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300).run()
    assert not at.exception, [e.value for e in at.exception]
    [error] = [e.value for e in at.error]
    assert "Something went wrong in this page" in error and "reference" in error
    assert "secret server detail" not in error and "RuntimeError" not in error and "Traceback" not in error


def test_production_config_hides_error_details_and_developer_tools():
    """Uncaught errors (outside the guard) show Streamlit's generic text only; no developer menu;
    no table CSV download that would write note cells unneutralised."""
    from streamlit import config

    with open(os.path.join(ROOT, ".streamlit", "config.toml"), "rb") as f:
        client = tomllib.load(f)["client"]
    assert client["showErrorDetails"] == config.ShowErrorDetailsConfigOptions.NONE.value
    assert client["toolbarMode"] == "minimal"
    assert client["disableDataExport"] is True
    # the options exist under these names in this Streamlit version
    for key in ("showErrorDetails", "toolbarMode", "disableDataExport"):
        assert f"client.{key}" in config._config_options_template
