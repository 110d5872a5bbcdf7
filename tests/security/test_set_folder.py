"""Files in a set's folder that lead outside it or never end: a labelled set (gallery) or an
annotated image folder (validation) read from a server folder takes only regular files inside it.
A labels.csv / classes.json / image linking outside is never read (its content never appears), a
named pipe is never opened (the run and the page cannot block), and every read is bounded."""

from __future__ import annotations

import os
import shutil
import threading

import pytest
import skimage

import saliency_core as sc
from saliency_core.evaluation.annotations.datasets import dataset_from_folder
from saliency_core.evaluation.labelled import open_folder

SECRET = "espresso_outside_secret"
CHELSEA = os.path.join(skimage.data_dir, "chelsea.png")


def _within(seconds: float, fn, *args):
    """``fn(*args)`` in a thread; fails the test (instead of hanging it) if it blocks."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args)
        except Exception as err:  # noqa: BLE001  handed to the test
            out["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__} blocked for more than {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.fixture
def set_folder(tmp_path):
    root = tmp_path / "set"
    (root / "tiger_cat").mkdir(parents=True)
    shutil.copy(CHELSEA, root / "tiger_cat" / "chelsea.png")
    outside = tmp_path / "outside"
    outside.mkdir()
    return root, outside


def _words(labelled) -> str:
    return " ".join(f"{p.item}: {p.reason}" for p in labelled.problems)


def test_labels_csv_linking_outside_the_set_is_not_read(demo, set_folder):
    root, outside = set_folder
    (outside / "labels.csv").write_text(f"image,label\ntiger_cat/chelsea.png,{SECRET}\n")
    (root / "labels.csv").symlink_to(outside / "labels.csv")
    labelled = open_folder(root, demo.labels)
    assert [it.label for it in labelled.items] == ["tiger_cat"]
    assert SECRET not in _words(
        labelled
    ) and "labels.csv: not read: it is a link that leads outside" in _words(labelled)


def test_classes_json_linking_outside_the_set_is_not_read(demo, set_folder):
    root, outside = set_folder
    (outside / "classes.json").write_text(f'{{"tiger_cat": ["{SECRET}"]}}')
    (root / "classes.json").symlink_to(outside / "classes.json")
    labelled = open_folder(root, demo.labels)
    assert labelled.classes == {"tiger_cat": (demo.labels.index("tiger cat"),)}
    assert SECRET not in _words(labelled) and "classes.json: not read" in _words(labelled)


def test_image_linking_outside_the_set_is_left_out(demo, set_folder):
    root, outside = set_folder
    shutil.copy(CHELSEA, outside / "private.png")
    (root / "tiger_cat" / "private.png").symlink_to(outside / "private.png")
    labelled = open_folder(root, demo.labels)
    assert [it.name for it in labelled.items] == ["tiger_cat/chelsea.png"]
    assert "points outside the set's folder" in _words(labelled)


def test_named_pipe_in_a_class_folder_never_blocks(demo, set_folder):
    root, _ = set_folder
    os.mkfifo(root / "tiger_cat" / "stuck.png")
    labelled = _within(30, open_folder, root, demo.labels)
    assert [it.name for it in labelled.items] == ["tiger_cat/chelsea.png"]
    assert "tiger_cat/stuck.png: not a regular file (a named pipe" in _words(labelled)


def test_named_pipe_as_labels_csv_never_blocks(demo, set_folder):
    root, _ = set_folder
    os.mkfifo(root / "labels.csv")
    labelled = _within(30, open_folder, root, demo.labels)
    assert len(labelled) == 1 and "labels.csv: not read" in _words(labelled)


def test_file_swapped_for_a_named_pipe_after_listing_is_refused_not_waited_for(demo, set_folder):
    root, _ = set_folder
    labelled = open_folder(root, demo.labels)
    os.remove(root / "tiger_cat" / "chelsea.png")
    os.mkfifo(root / "tiger_cat" / "chelsea.png")
    with pytest.raises(ValueError, match="not a regular file"):
        _within(30, labelled.items[0].read)


def test_image_path_that_is_a_named_pipe_is_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(ValueError, match="pipe.png"):
        _within(30, sc.load_image, tmp_path / "pipe.png")


def test_annotation_folder_skips_pipes_and_links_outside(tmp_path):
    images, notes, outside = tmp_path / "images", tmp_path / "notes", tmp_path / "outside"
    for folder in (images, notes, outside):
        folder.mkdir()
    shutil.copy(CHELSEA, images / "chelsea.png")
    (notes / "boxes.csv").write_text("image,x_min,y_min,x_max,y_max,label\nchelsea.png,10,10,200,200,cat\n")
    (outside / "secret.csv").write_text(
        f"image,x_min,y_min,x_max,y_max,label\nchelsea.png,0,0,5,5,{SECRET}\n"
    )
    (notes / "linked.csv").symlink_to(outside / "secret.csv")
    os.mkfifo(notes / "stuck.csv")
    os.mkfifo(images / "stuck_mask.png")
    dataset = _within(30, dataset_from_folder, images, notes)
    assert [b.label for item in dataset.items for b in item.annotation.boxes] == ["cat"]
    assert SECRET not in repr(dataset)
