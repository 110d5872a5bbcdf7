"""Review batch rules (saliency_core/review/batches.py): items, order, dedup, names, resume position."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from saliency_core import image_hash, load_image
from saliency_core.review import batches


def _png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


def _hash(name, where):
    return image_hash(load_image(where if isinstance(where, bytes) else open(where, "rb").read(), name=name))


def test_queue_keeps_order_drops_duplicates_and_names_unreadable_files():
    entries = [
        ("a.png", _png("red")),
        ("b.png", b"not an image"),
        ("c.png", _png("blue")),
        ("a-copy.png", _png("red")),
    ]
    items, problems = batches.queue_items(entries, _hash)
    assert [i["name"] for i in items] == ["a.png", "c.png"]
    assert problems[0].startswith("b.png: ") and not problems[0].startswith("b.png: b.png")
    assert problems[1] == "a-copy.png: the same image as an earlier item; reviewed once."
    assert all("data" in i for i in items)


def test_default_names():
    assert batches.default_name("samples", []) == "sample-photos"
    assert batches.default_name("folder:.", []) == "folder-root"
    assert batches.default_name("folder:line4", []) == "folder-line4"
    # the same uploads give the same name, whatever their order
    assert batches.default_name("upload", ["x", "y"]) == batches.default_name("upload", ["y", "x"])
    assert batches.default_name("upload", ["x"]) != batches.default_name("upload", ["y"])


def test_resume_at_the_first_undecided_item():
    items = [{"hash": h} for h in "abc"]
    assert batches.resume_position(items, []) == 0
    assert batches.resume_position(items, ["a"]) == 1
    assert batches.resume_position(items, ["a", "c"]) == 1
    assert batches.resume_position(items, ["a", "b", "c"]) == 2  # all decided: the last one
    assert batches.resume_position([], ["a"]) == 0


def test_folder_source_stays_inside_the_review_folder(tmp_path):
    root = tmp_path / "review"
    (root / "line4").mkdir(parents=True)
    (root / "line4" / "ok.png").write_bytes(_png("green"))
    outside = tmp_path / "secret.png"
    outside.write_bytes(_png("black"))
    os.symlink(outside, root / "line4" / "link.png")
    entries, problems = batches.source_entries(
        "folder:line4", samples={}, folder_root=str(root), suffixes=["png"]
    )
    assert [name for name, _ in entries] == ["ok.png"] and not problems
    with pytest.raises(ValueError, match="no review folder is configured"):
        batches.source_entries("folder:line4", samples={}, folder_root=None)
    entries, problems = batches.source_entries(
        "folder:line4", samples={}, folder_root=str(root), suffixes=["png"], max_items=0
    )
    assert entries == [] and "the queue takes the first 0" in problems[0]
