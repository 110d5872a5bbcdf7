"""The gallery's batch run on a real Ray cluster (the one-node cluster of tests/_ray_cluster.py): the
workers' maps are stored, equal the local ``sc.explain`` ones, and a second run computes nothing."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import skimage

import saliency_core as sc
from saliency_core import gallery
from saliency_core.evaluation.labelled import open_folder

PHOTOS = [
    ("tiger_cat/chelsea.png", "chelsea.png"),
    ("espresso/coffee.png", "coffee.png"),
    ("tripod/camera.png", "camera.png"),
]


def test_large_runs_go_through_ray_with_the_local_maps(cluster, one_thread, tmp_path, monkeypatch):
    address, _ = cluster
    for rel, photo in PHOTOS:
        (tmp_path / "set" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(os.path.dirname(skimage.__file__), "data", photo), tmp_path / "set" / rel)
    model = sc.load_model("demo")
    labelled = open_folder(tmp_path / "set", model.labels)
    store = gallery.ResultStore(tmp_path / "gallery.sqlite")
    monkeypatch.setattr(gallery, "explain_images", lambda *a, **k: pytest.fail("ran locally, not on Ray"))
    seen = []
    report = gallery.run(
        model,
        labelled,
        ["gradient", "gradcam"],
        {},
        store,
        progress=seen.append,
        ray_address=address,
        model_source="demo",
        ray_min_images=2,
    )
    assert (report.computed, report.failed, report.errors) == (3, [], [])
    assert [p.done for p in seen] == [0, 1, 2, 3]
    rows = gallery.table(store, model, labelled, ["gradient", "gradcam"], {}).set_index("name")
    for item in labelled.items:
        maps = gallery.explanations(
            store, model, rows.loc[item.name, "image_hash"], ["gradient", "gradcam"], {}, None
        )[1]
        for m in ("gradient", "gradcam"):
            np.testing.assert_array_equal(maps[m].saliency, sc.explain(model, item.path, method=m).saliency)
    again = gallery.run(
        model,
        labelled,
        ["gradient", "gradcam"],
        {},
        store,
        ray_address=address,
        model_source="demo",
        ray_min_images=2,
    )
    assert (again.computed, again.stored) == (0, 3)
    store.close()
