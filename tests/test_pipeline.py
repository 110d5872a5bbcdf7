"""The batch pipeline (saliency_core/pipeline.py): one loop, one record layout (schema 2).

Every writer's output is validated against saliency_core/schemas/record-2.json: the command
line and the pipeline here, Ray in tests/test_ray.py; records of schema 1 stay readable."""

from __future__ import annotations

import io
import json

import jsonschema
import numpy as np
import pytest
from _records import validate_record
from PIL import Image

import saliency_core as sc
from saliency_core import cli, pipeline


def test_schema_rejects_other_layouts():
    with pytest.raises(jsonschema.ValidationError):
        validate_record({"image": "a.png", "methods": {}, "errors": {}})  # the old command-line layout


def test_schema_2_records_the_reproducible_detail_and_schema_1_stays_valid(demo, chelsea_path):
    """An averaged map's record carries its detail levels and reproducible detail (schema 2); a
    record written before (schema 1, a readout without levels) still validates against its own."""
    result = pipeline.explain_image(
        demo, chelsea_path, "cat", ["smoothgrad"], {"samples": 8}, render=pipeline.RenderOptions()
    )
    record = json.loads(json.dumps(result.record()))
    validate_record(record)
    readout = record["maps"][0]["diagnostics"]["convergence"]
    assert record["schema"] == 2 and [row["px"] for row in readout["levels"]] == [0, 1, 2, 4, 8, 16]
    assert readout["reproducible_px"] is None or readout["reproducible_px"] in (0, 1, 2, 4, 8, 16)
    # the PNG is drawn at the reproducible detail, and its record says so in words
    drawn = record["maps"][0]["render"]
    assert drawn["detail_px"] == (readout["reproducible_px"] or 0) and drawn["detail_words"]
    old = json.loads(json.dumps(record))
    old["schema"] = 1
    for key in ("levels", "reproducible_px", "settled_at_px"):
        del old["maps"][0]["diagnostics"]["convergence"][key]
    validate_record(old)
    with pytest.raises(jsonschema.ValidationError):  # schema 2 asks for the levels
        validate_record({**old, "schema": 2})


def test_explain_images_order_errors_and_record(demo, chelsea_path, coffee_path):
    broken = ("broken.png", b"not an image")
    done = []
    results = list(
        pipeline.explain_images(
            demo,
            [chelsea_path, broken, coffee_path],
            ["gradient", "gradcam"],
            {"samples": 3, "steps": 4},
            progress=lambda d, t, label: done.append((d, t)),
        )
    )
    assert [r.name for r in results] == [chelsea_path, "broken.png", coffee_path]
    assert done[-1] == (6, 6) and [d for d, _ in done] == sorted(d for d, _ in done)
    assert results[1].failed.startswith("broken.png: ") and not results[1].failed.startswith(
        "broken.png: broken.png"
    )
    good = results[0]
    assert list(good.maps) == ["gradient", "gradcam"] and not good.errors
    record = good.record()
    validate_record(record)
    assert [m["method"] for m in record["maps"]] == ["gradient", "gradcam"]
    # the same map as sc.explain gives
    assert np.array_equal(good.maps["gradient"].saliency, sc.explain(demo, chelsea_path, "gradient").saliency)


def test_method_params_are_asked_of_the_method():
    params = {"samples": 7, "steps": 9, "seed": 2, "noise": 0.1}
    assert pipeline.method_params("gradient", params) == {}
    assert pipeline.method_params("integrated_gradients", params) == {"steps": 9, "seed": 2}
    assert pipeline.method_params("smoothgrad", params) == {"samples": 7, "seed": 2, "noise": 0.1}
    # per method, as a review batch stores them: each method gets its own, not another's
    per = {"smoothgrad": {"samples": 5, "seed": 1}, "integrated_gradients": {"steps": 3, "seed": 4}}
    assert pipeline.method_params("smoothgrad", per) == {"samples": 5, "seed": 1}
    assert pipeline.method_params("integrated_gradients", per) == {"steps": 3, "seed": 4}
    assert pipeline.method_params("gradient", per) == {}


def test_per_method_params_give_each_method_its_own_map(demo, chelsea_path):
    per = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 3, "seed": 5}}
    result = pipeline.explain_image(demo, chelsea_path, "cat", list(per), per)
    assert result.maps["integrated_gradients"].params["steps"] == 4
    assert result.maps["smoothgrad"].params["samples"] == 3 and result.maps["smoothgrad"].params["seed"] == 5
    alone = sc.explain(demo, chelsea_path, "smoothgrad", samples=3, seed=5)
    assert np.array_equal(result.maps["smoothgrad"].saliency, alone.saliency)


def test_a_failing_method_is_that_methods_error_and_the_rest_run(demo, chelsea_path):
    result = pipeline.explain_image(
        demo, chelsea_path, "cat", ["gradient", "integrated_gradients"], {"steps": 0}
    )
    assert "gradient" in result.maps and "integrated_gradients" not in result.maps
    assert "steps must be a whole number between 1" in result.errors["integrated_gradients"]
    validate_record(result.record())


def test_cancel_stops_before_the_next_image(demo, chelsea_path, coffee_path):
    seen = []
    results = pipeline.explain_images(
        demo, [chelsea_path, coffee_path], ["gradient"], cancel=lambda: len(seen) >= 1
    )
    for r in results:
        seen.append(r)
    assert [r.name for r in seen] == [chelsea_path]


def test_cli_explain_writes_schema_2(tmp_path, chelsea_path):
    assert (
        cli.main(
            ["explain", chelsea_path, "--method", "gradient", "--method", "gradcam", "--out", str(tmp_path)]
        )
        == 0
    )
    record = json.loads((tmp_path / "chelsea.json").read_text())
    validate_record(record)
    assert [m["png"] for m in record["maps"]] == ["chelsea_gradient.png", "chelsea_gradcam.png"]


def test_shipped_result_keeps_the_record(demo, chelsea_path):
    result = pipeline.explain_image(demo, chelsea_path, "cat", ["gradient"], render=pipeline.RenderOptions())
    light = result.shipped()
    assert light.maps["gradient"].attribution.size == 0 and light.pngs == result.pngs
    assert light.record() == result.record()
    Image.open(io.BytesIO(light.pngs["gradient"])).verify()
