"""The gallery's batch run and result store (saliency_core/gallery/) on the real demo model and
real SQLite: stored maps equal ``sc.explain``, a second run computes nothing, cancel and kill
keep what was finished, bad images are listed and remembered, filters / confusion / exports."""

from __future__ import annotations

import io
import os
import shutil
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import skimage
from PIL import Image

import saliency_core as sc
from saliency_core import gallery
from saliency_core.evaluation.labelled import open_folder
from saliency_core.gallery import ResultStore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(os.path.dirname(skimage.__file__), "data")
CHEAP = ["gradient", "gradcam"]
# (path in the set, scikit-image photo): folder names are ImageNet classes; the clock is a mistake
PHOTOS = [
    ("tiger_cat/chelsea.png", "chelsea.png"),
    ("espresso/coffee.png", "coffee.png"),
    ("tripod/camera.png", "camera.png"),
    ("analog_clock/clock_motion.png", "clock_motion.png"),
]


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "set"
    for rel, photo in PHOTOS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(DATA, photo), root / rel)
    return root


@pytest.fixture
def store(tmp_path):
    s = ResultStore(tmp_path / "gallery.sqlite")
    yield s
    s.close()


def test_stored_maps_equal_explain(demo, folder, store):
    labelled = open_folder(folder, demo.labels)
    methods, params = ["gradient", "gradcam", "smoothgrad"], {"samples": 4, "noise": 0.2, "seed": 3}
    report = gallery.run(demo, labelled, methods, params, store)
    assert (report.computed, report.stored, report.failed, report.errors) == (4, 0, [], [])
    rows = gallery.table(store, demo, labelled, methods, params).set_index("name")
    for item in labelled.items:
        h = rows.loc[item.name, "image_hash"]
        top5, maps, missing = gallery.explanations(store, demo, h, methods, params, crop=None)
        assert not missing
        for m in methods:
            reference = sc.explain(demo, item.path, method=m, samples=4, noise=0.2, seed=3)
            np.testing.assert_array_equal(maps[m].saliency, reference.saliency)
            assert maps[m].saliency.dtype == np.float32
            assert (maps[m].target, maps[m].params, maps[m].image_hash) == (
                reference.target,
                reference.params,
                reference.image_hash,
            )
        assert [i for i, _, _ in top5] == [i for i, _, _ in reference.prediction]
        assert top5[0][2] == pytest.approx(reference.prediction[0][2], abs=1e-6)
    assert (
        rows.loc["espresso/coffee.png", "correct"]
        and not rows.loc["analog_clock/clock_motion.png", "correct"]
    )
    assert rows.loc["analog_clock/clock_motion.png", "predicted_label"] == "other: bubble"


def test_second_run_computes_nothing_and_a_new_method_only_its_maps(demo, folder, store, monkeypatch):
    labelled = open_folder(folder, demo.labels)
    assert gallery.run(demo, labelled, ["gradient"], {}, store).computed == 4
    with monkeypatch.context() as patch:
        patch.setattr(gallery, "explain_images", lambda *a, **k: pytest.fail("the pipeline ran again"))
        again = gallery.run(demo, labelled, ["gradient"], {}, store)
    assert (again.computed, again.stored, again.cancelled) == (0, 4, False)
    computed = []
    real = gallery.explain

    def counting(model, image, method, **kwargs):
        computed.append(method)
        return real(model, image, method, **kwargs)

    monkeypatch.setattr(gallery, "explain", counting)
    more = gallery.run(demo, labelled, ["gradient", "gradcam"], {}, store)
    assert more.computed == 4 and computed == ["gradcam"] * 4  # gradient maps came from the store
    # other parameters are other results
    computed.clear()
    assert gallery.run(demo, labelled, ["gradcam"], {"layer": "features.5"}, store).computed == 4
    assert computed == ["gradcam"] * 4


def test_cancel_keeps_finished_images_and_the_next_run_does_the_rest(demo, folder, store):
    labelled = open_folder(folder, demo.labels)
    seen = []
    report = gallery.run(
        demo,
        labelled,
        CHEAP,
        {},
        store,
        progress=seen.append,
        cancel=lambda: sum(p.computed > 0 for p in seen) >= 2,
    )
    assert report.cancelled and report.computed == 2
    assert seen[-1].done == 2 and seen[-1].total == 4 and seen[-1].rate > 0
    assert "2 of 4 images" in seen[-1].words() and "left" in seen[-1].words()
    rest = gallery.run(demo, labelled, CHEAP, {}, store)
    assert (rest.stored, rest.computed, rest.cancelled) == (2, 2, False)


KILLED_RUN = """
import sys, torch
torch.set_num_threads(1)
import saliency_core as sc
from saliency_core import gallery
from saliency_core.evaluation.labelled import open_folder
model = sc.load_model("demo")
labelled = open_folder(sys.argv[1], model.labels)
store = gallery.ResultStore(sys.argv[2])
gallery.run(model, labelled, ["gradient", "gradcam"], {}, store,
            progress=lambda p: print("done", p.computed, flush=True))
print("finished", flush=True)
"""


def test_killed_run_resumes_where_it_stopped(demo, folder, tmp_path):
    path = tmp_path / "killed.sqlite"
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(folder), str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() == "done 2":
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(30)
    assert "done 2" in lines and "finished" not in lines, lines[-5:]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        before = db.execute("SELECT count(*) FROM predictions").fetchone()[0]
    assert 2 <= before < 4
    store = ResultStore(path)
    labelled = open_folder(folder, demo.labels)
    resumed = gallery.run(demo, labelled, CHEAP, {}, store)
    assert (resumed.stored, resumed.computed) == (before, 4 - before)
    # what the killed process stored equals what this process computes
    rows = gallery.table(store, demo, labelled, CHEAP, {}).set_index("name")
    first = labelled.items[0]
    exp = gallery.explanations(store, demo, rows.loc[first.name, "image_hash"], CHEAP, {}, None)[1]
    for m in CHEAP:
        np.testing.assert_array_equal(exp[m].saliency, sc.explain(demo, first.path, method=m).saliency)
    store.close()


def test_unreadable_and_duplicate_images_are_listed_and_remembered(demo, folder, store, monkeypatch):
    (folder / "tiger_cat" / "broken.png").write_bytes(b"not a picture at all")
    Image.open(folder / "espresso" / "coffee.png").save(
        folder / "espresso" / "coffee_again.bmp"
    )  # same pixels
    labelled = open_folder(folder, demo.labels)
    report = gallery.run(demo, labelled, CHEAP, {}, store)
    assert [(f.item, "not an image file" in f.reason) for f in report.failed] == [
        ("tiger_cat/broken.png", True)
    ]
    assert report.computed == 5
    rows = gallery.table(store, demo, labelled, CHEAP, {}).set_index("name")
    assert rows.loc["tiger_cat/broken.png", "status"] == "unreadable"
    assert "not an image file" in rows.loc["tiger_cat/broken.png", "reason"]
    assert rows.loc["espresso/coffee_again.bmp", "status"] == "duplicate"
    assert rows.loc["espresso/coffee_again.bmp", "duplicate_of"] == "espresso/coffee.png"
    assert (rows["status"] == "done").sum() == 4
    # the bad file is not tried again, and still listed
    monkeypatch.setattr(gallery, "explain_images", lambda *a, **k: pytest.fail("the pipeline ran again"))
    again = gallery.run(demo, labelled, CHEAP, {}, store)
    assert again.computed == 0 and [f.item for f in again.failed] == ["tiger_cat/broken.png"]


def test_tiles_thumbnails_and_words(demo, folder, store):
    labelled = open_folder(folder, demo.labels)
    gallery.run(demo, labelled, CHEAP, {}, store)
    rows = gallery.filter_rows(gallery.table(store, demo, labelled, CHEAP, {}), outcome="incorrect")
    (tile,) = gallery.tiles(store, demo, rows, "gradcam", {})
    assert tile.name == "analog_clock/clock_motion.png" and not tile.correct
    assert Image.open(io.BytesIO(tile.jpeg)).size == (gallery.THUMB, gallery.THUMB)
    assert "true: analog_clock" in tile.caption and "predicted: bubble" in tile.caption
    assert tile.alt.startswith("Grad-CAM overlay of analog_clock/clock_motion.png") and "mistake" in tile.alt
    # the plain photo when no map of that method is stored
    (plain,) = gallery.tiles(store, demo, rows, "smoothgrad", {})
    assert plain.jpeg and plain.jpeg != tile.jpeg


def _rows() -> pd.DataFrame:
    data = [  # name, label, predicted_label, confidence, correct
        ("a", "cat", "cat", 0.9, True),
        ("b", "cat", "other: reel", 0.8, False),
        ("c", "cat", "dog", 0.3, False),
        ("d", "dog", "dog", 0.5, True),
        ("e", "dog", "cat", 0.95, False),
        ("f", "dog", "other: bubble", 0.2, False),
        ("g", "dog", "other: reel", 0.1, False),
    ]
    rows = pd.DataFrame(
        [
            {
                "name": n,
                "label": lab,
                "status": "done",
                "predicted_label": p,
                "predicted_class": p,
                "confidence": c,
                "correct": ok,
                "flags": "",
                "review": "",
                "image_hash": n,
            }
            for n, lab, p, c, ok in data
        ]
    )
    rows.loc[rows["name"] == "c", "flags"] = "Guided backprop fails the sanity check"
    extra = rows.iloc[:1].assign(name="z", status="unreadable", correct=None, confidence=np.nan)
    return pd.concat([rows, extra], ignore_index=True)


def test_filters_and_orders():
    rows = _rows()
    names = lambda **kw: gallery.filter_rows(rows, **kw)["name"].tolist()  # noqa: E731
    assert names() == ["a", "b", "c", "d", "e", "f", "g"]  # unreadable rows never shown
    assert names(outcome="incorrect", order="confident mistakes first") == ["e", "b", "c", "f", "g"]
    assert names(order="confident mistakes first")[:5] == ["e", "b", "c", "f", "g"]
    assert names(order="least confident first") == ["g", "f", "c", "d", "b", "a", "e"]
    assert names(outcome="correct") == ["a", "d"]
    assert names(true_labels=["dog"], predicted_labels=["cat"]) == ["e"]
    assert names(confidence=(0.3, 0.8)) == ["b", "c", "d"]
    assert names(flagged=True) == ["c"] and "c" not in names(flagged=False)
    with pytest.raises(ValueError, match="outcome"):
        gallery.filter_rows(rows, outcome="wrong")
    many = pd.concat([rows] * 20, ignore_index=True)  # 160 rows
    assert (
        gallery.pages(many) == 4
        and len(gallery.page_of(many, 4)) == 16
        and len(gallery.page_of(many, 9)) == 16
    )


def test_confusion_matrix_and_class_accuracy():
    rows = _rows()
    counts = gallery.confusion(rows)
    assert list(counts.index) == ["cat", "dog"]
    assert list(counts.columns) == ["cat", "dog", "other: reel", "other: bubble"]
    assert (
        counts.loc["dog", "other: reel"] == 1 and counts.loc["cat", "cat"] == 1 and counts.values.sum() == 7
    )
    grouped = gallery.confusion(rows, max_other=1)
    assert list(grouped.columns) == ["cat", "dog", "other: reel", gallery.OTHER_REST]
    assert gallery.cell_labels(grouped, gallery.OTHER_REST) == ["other: bubble"]
    accuracy = gallery.class_accuracy(rows).set_index("label")
    assert accuracy.loc["cat", "accuracy"] == pytest.approx(1 / 3)
    assert accuracy.loc["all", "images"] == 7 and accuracy.loc["all", "correct"] == 2


def test_csv_export_defuses_formulas():
    rows = _rows()
    rows.loc[0, "label"] = '=HYPERLINK("http://x","y")'
    rows.loc[1, "name"] = "@SUM(1)"
    text = gallery.to_csv(gallery.filter_rows(rows))
    table = pd.read_csv(io.StringIO(text))
    by_name = table.set_index("name")
    assert by_name.loc["a", "label"] == '\'=HYPERLINK("http://x","y")'
    assert by_name.loc["'@SUM(1)", "label"] == "cat"
    assert by_name["confidence"].tolist()[:2] == [0.8, 0.9]  # numbers stay numbers


def test_report_of_the_filtered_set_uses_the_stored_maps(demo, folder, store, monkeypatch):
    labelled = open_folder(folder, demo.labels)
    gallery.run(demo, labelled, CHEAP, {}, store)
    rows = gallery.filter_rows(
        gallery.table(store, demo, labelled, CHEAP, {}), true_labels=["espresso", "tripod"]
    )
    monkeypatch.setattr(gallery, "explain", lambda *a, **k: pytest.fail("a map was computed again"))
    report = gallery.build_report(store, demo, labelled, rows, CHEAP, {})
    assert [i.name for i in report.images] == ["espresso/coffee.png", "tripod/camera.png"]
    stored = gallery.explanations(store, demo, rows.iloc[0]["image_hash"], CHEAP, {}, None)[1]
    np.testing.assert_array_equal(report.images[0].maps["gradcam"].saliency, stored["gradcam"].saliency)
    assert "espresso" in report.to_html()


def test_selections_for_review(store):
    items = [("a.png", "cat", (281, 282), "h1", b"aaa"), ("b.png", "dog", (5,), "h2", b"bbb")]
    first = store.save_selection("mistakes", "alice", "model", "demo", "2 mistakes", {"gradcam": {}}, items)
    assert store.save_selection("again", "bob", "model", "demo", "", {"gradcam": {}}, items) == first
    assert [(i["data"], i["classes"]) for i in store.selection_items(first)] == [
        (b"aaa", (281, 282)),
        (b"bbb", (5,)),
    ]
    assert store.selection(first)["name"] == "mistakes" and store.selection("nope") is None
    with pytest.raises(ValueError, match="filters leave none"):
        store.save_selection("x", "a", "m", "s", "", {}, [])
    with pytest.raises(ValueError, match="too many for one review batch"):
        store.save_selection("x", "a", "m", "s", "", {}, items * (gallery.MAX_REVIEW_ITEMS // 2 + 1))


def test_map_encoding_is_exact_and_bounded():
    rng = np.random.default_rng(0)
    saliency = rng.standard_normal((224, 224)).astype(np.float32)
    blob = gallery.encode_map(saliency)
    np.testing.assert_array_equal(gallery.decode_map(blob, (224, 224)), saliency)
    with pytest.raises(ValueError, match="inflates to more than"):
        gallery.decode_map(blob, (10, 10))
    with pytest.raises(ValueError, match="impossible shape"):
        gallery.decode_map(blob, (10**6, 10**6))
    with pytest.raises(ValueError, match="damaged"):
        gallery.decode_map(b"garbage", (224, 224))


def test_store_lives_next_to_the_review_database(tmp_path, monkeypatch):
    monkeypatch.delenv("SALIENCY_GALLERY_DB", raising=False)
    monkeypatch.setenv("SALIENCY_DB", str(tmp_path / "db" / "reviews.sqlite"))
    assert gallery.gallery_path() == tmp_path / "db" / "gallery.sqlite"
    monkeypatch.setenv("SALIENCY_GALLERY_DB", str(tmp_path / "elsewhere.sqlite"))
    assert gallery.gallery_path() == tmp_path / "elsewhere.sqlite"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="Cannot create the folder"):
        ResultStore(tmp_path / "file" / "gallery.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError, match="SALIENCY_GALLERY_DB"):
        ResultStore(tmp_path / "junk.sqlite")
