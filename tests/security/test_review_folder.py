"""The Review page's server folder (SALIENCY_REVIEW_DIR): a symbolic link inside it, to a file or
to a folder, that leads outside it is neither listed nor read, even when the link appears after
the folder was listed.

Real files and links in a temporary folder, the real Review page through AppTest."""

from __future__ import annotations

import os
import shutil

import pytest
import skimage
from streamlit.testing.v1 import AppTest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(os.path.dirname(skimage.__file__), "data")


@pytest.fixture
def review_dir(tmp_path, monkeypatch):
    """inbox/line-3/a_cat.png (real), inbox/line-3/b_secret.png -> ../../private/secret.png,
    inbox/linked -> ../private (a folder outside), inbox/line-3/c_inner.png -> a_cat.png (inside)."""
    private = tmp_path / "private"
    private.mkdir()
    shutil.copy(os.path.join(DATA, "coffee.png"), private / "secret.png")
    line = tmp_path / "inbox" / "line-3"
    line.mkdir(parents=True)
    shutil.copy(os.path.join(DATA, "chelsea.png"), line / "a_cat.png")
    (line / "b_secret.png").symlink_to(private / "secret.png")
    (line / "c_inner.png").symlink_to(line / "a_cat.png")
    (tmp_path / "inbox" / "linked").symlink_to(private, target_is_directory=True)
    monkeypatch.setenv("SALIENCY_REVIEW_DIR", str(tmp_path / "inbox"))
    monkeypatch.setenv("SALIENCY_DB", str(tmp_path / "reviews.sqlite"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return tmp_path / "inbox"


def test_linked_file_leading_outside_the_review_folder_is_not_listed_or_read(review_dir):
    """Hostile input: a symbolic link to a file outside the review folder (it was listed and read)."""
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300).run()
    at = at.switch_page("pages/review.py").run()
    assert at.selectbox(key="rb_folder").options == [".", "line-3"]  # the linked folder is not offered
    at.radio(key="rb_source").set_value("Server folder")
    at.selectbox(key="rb_folder").set_value("line-3")
    at.multiselect(key="rb_methods").set_value(["gradient"])
    next(b for b in at.button if b.label == "Open batch").click()
    at = at.run()
    assert not at.exception, at.exception
    everything = " ".join(
        str(getattr(e, "value", ""))
        for kind in ("markdown", "caption", "warning", "error", "info", "text")
        for e in at.get(kind)
    )
    assert "secret" not in everything
    position = next(m.value for m in at.markdown if m.value.startswith("**Item "))
    assert position.startswith("**Item 1 of 1:**")  # c_inner.png is the same image, reviewed once
    assert "espresso" not in everything  # the outside photo was not classified either


def test_link_swapped_in_after_listing_is_not_read(review_dir, tmp_path):
    """Hostile input: a listed file replaced by a link to a file outside, before it is read."""
    from saliency_core.review import folders

    listed = folders.list_files(review_dir, "line-3", ["png"])
    assert [p.name for p in listed] == ["a_cat.png", "c_inner.png"]
    target = listed[0]
    assert folders.read_file(review_dir, target)[:4] == b"\x89PNG"
    target.unlink()
    target.symlink_to(tmp_path / "private" / "secret.png")
    with pytest.raises(ValueError, match="not a file inside the review folder"):
        folders.read_file(review_dir, target)
    with pytest.raises(ValueError, match="not available"):
        folders.list_files(review_dir, "linked", ["png"])
    with pytest.raises(ValueError, match="not available"):
        folders.list_files(review_dir, "../private", ["png"])
