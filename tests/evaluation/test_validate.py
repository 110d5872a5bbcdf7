"""The streaming validation run: tables, intervals, bad input reported item by item, the
pasted-object benchmark on the real demo model, and the ``validate`` command."""

from __future__ import annotations

import io
import json
import math
import os

import numpy as np
import pandas as pd
import pytest
import skimage
from PIL import Image

import saliency_core as sc
from saliency_core.cli import main
from saliency_core.evaluation import annotations as an
from saliency_core.evaluation.data import pasted_objects
from saliency_core.evaluation.validate import (
    BASELINES,
    CENTRE,
    RANDOM,
    ValidationSettings,
    mean_interval,
    run_validation,
)

PHOTOS = os.path.join(os.path.dirname(skimage.__file__), "data")
SCORES = ["pointing_game", "relevance_mass", "relevance_rank", "iou_top_k", "deletion_auc", "insertion_auc"]


def _photo(name: str) -> bytes:
    with open(os.path.join(PHOTOS, name), "rb") as f:
        return f.read()


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


BOXES = (
    "image,x_min,y_min,x_max,y_max,label\n"
    "chelsea.png,125,70,355,285,cat face\n"
    "coffee.png,170,15,420,300,cup\n"
    "camera.png,228,195,405,512,tripod\n"
    "motorcycle_left.png,800,10,900,50,motorcycle\n"  # the image is 741 px wide
    "ghost.png,1,1,50,50,nothing\n"  # no such image
    "coffee.png,300,20,200,90,saucer\n"
)  # x_max < x_min


@pytest.fixture(scope="module")
def messy():
    """Three good images and one of each kind of bad input."""
    images = [
        (n, _photo(n))
        for n in (
            "chelsea.png",
            "coffee.png",
            "camera.png",
            "astronaut.png",
            "motorcycle_left.png",
            "rocket.jpg",
        )
    ]
    wrong_size = np.zeros((100, 100), np.uint8)
    wrong_size[20:60, 20:60] = 255
    return an.dataset_from_files(
        images, [("boxes.csv", BOXES.encode()), ("masks/astronaut.png", _png(wrong_size))]
    )


@pytest.fixture(scope="module")
def messy_result(demo, messy):
    seen = []
    settings = ValidationSettings(["gradient", "gradcam", "gradient_x_input"], step_fraction=0.2, worst=2)
    result = run_validation(demo, messy, settings, progress=lambda *a: seen.append(a))
    return result, seen


def test_tables_have_the_expected_columns_and_sane_values(messy_result):
    result, _ = messy_result
    rows = result.per_image()
    assert result.images == 3 and result.total == 5
    assert sorted(rows["image"].unique()) == ["camera.png", "chelsea.png", "coffee.png"]
    assert list(rows["method"].unique()) == ["gradient", "gradcam", "gradient_x_input", CENTRE, RANDOM]
    for column in [
        "image",
        "method",
        "method_label",
        "signed",
        "target",
        "target_label",
        "target_probability",
        "top1_label",
        "annotation",
        "region_fraction",
        "seconds",
        "notes",
        *SCORES,
    ]:
        assert column in rows, column
    assert rows[SCORES].notna().all().all()
    assert ((rows[SCORES] >= 0) & (rows[SCORES] <= 1)).all().all()
    assert rows.loc[rows["method"] == "gradient_x_input", "signed"].all()
    assert not rows.loc[rows["method"] == "gradcam", "signed"].any()
    assert set(rows.loc[rows["image"] == "camera.png", "target_label"]) == {"tripod"}
    # each image's prediction is the same for every method, and the centre map hits centred objects
    assert rows.groupby("image")["target"].nunique().max() == 1
    assert rows.loc[rows["method"] == CENTRE, "pointing_game"].tolist() == [1.0, 1.0, 1.0]

    summary = result.summary()
    assert set(summary["method"]) == {"gradient", "gradcam", "gradient_x_input", *BASELINES}
    assert set(summary["metric"]) == set(SCORES)
    assert (summary["n"] == 3).all()
    assert (
        (summary["ci_low"] <= summary["mean"] + 1e-12) & (summary["mean"] <= summary["ci_high"] + 1e-12)
    ).all()
    assert summary["gain_vs_centre"].isna().tolist() == (summary["method"] == CENTRE).tolist()
    assert summary["interval"].iloc[0].startswith("95% CI: percentile bootstrap over images, 2000 resamples")
    table = result.summary_table()
    assert table["method"].tolist() == [
        "Gradient",
        "Grad-CAM",
        "Gradient x input",
        "Centre bias (Gaussian)",
        "Random map",
    ]
    assert table["Pointing game"].str.match(r"^\d\.\d{3}( \[\d\.\d{3}, \d\.\d{3}\])?$").all()
    assert result.warnings and "Only 3 annotated example(s)" in result.warnings[0]
    record = json.loads(json.dumps(result.record(), default=str))
    assert record["settings"]["step_pixels"] == math.ceil(0.2 * 224 * 224)
    assert record["settings"]["deletion_replacement"] == "mean"
    assert record["settings"]["insertion_replacement"] == "blurred"


def test_each_bad_input_is_a_named_skipped_item(messy_result):
    result, _ = messy_result
    reasons = {s.item: s.reason for s in result.skipped}
    assert "the mask is 100x100 pixels but the image is 512x512" in reasons["astronaut.png"]
    assert "lies outside the image (741x500 pixels)" in reasons["motorcycle_left.png"]
    assert "no image named 'ghost' was given" in reasons["ghost.png"]
    assert "no annotation for this image" in reasons["rocket.jpg"]
    assert "x_max (200) is smaller than x_min (300)" in reasons["boxes.csv line 7"]
    assert len(result.skipped) == 5
    assert result.skipped_table().columns.tolist() == ["item", "reason"]


def test_progress_and_only_thumbnails_are_kept(messy_result):
    result, seen = messy_result
    assert seen[0] == (0, 5, None)
    assert [d for d, _, _ in seen] == list(range(6)) and seen[-1][2] == 0
    assert all(eta is None or eta >= 0 for _, _, eta in seen)
    assert set(result.worst) == {"gradient", "gradcam", "gradient_x_input"}
    for method, cases in result.worst.items():
        assert len(cases) == 2
        masses = [c.scores["relevance_mass"] for c in cases]
        assert masses == sorted(masses)  # worst first
        table = result.per_image()
        others = table[table["method"] == method]["relevance_mass"]
        assert masses[-1] <= others.sort_values().iloc[1] + 1e-12
        for c in cases:
            assert c.crop.shape == (112, 112, 3) and c.saliency.shape == c.region.shape == (112, 112)
    for curve in result.curves.values():
        assert curve["deletion"].shape == curve["fractions"].shape == (6,) and curve["n"] == 3


def test_mean_intervals():
    t = ValidationSettings(["gradient"], interval="t")
    mean, low, high, n = mean_interval([0, 1, 1, 1, float("nan")], t)
    half = 3.182446305284263 * 0.5 / 2  # t(0.975, 3) x sd / sqrt(4)
    assert (mean, n) == (0.75, 4) and low == pytest.approx(0.75 - half) and high == pytest.approx(0.75 + half)
    boot = ValidationSettings(["gradient"])
    assert mean_interval([0.3] * 10, boot)[1:3] == pytest.approx((0.3, 0.3))
    values = np.random.default_rng(0).normal(0.5, 0.1, 400)
    _, low, high, _ = mean_interval(values, boot)
    assert low < 0.5 < high and high - low == pytest.approx(2 * 1.96 * 0.1 / 20, rel=0.15)
    assert math.isnan(mean_interval([0.2], boot)[1]) and mean_interval([], boot)[3] == 0


def test_bad_settings_say_what_is_wrong(demo, messy):
    for settings, message in (
        (ValidationSettings(["nope"]), "Unknown method"),
        (ValidationSettings([]), "at least one"),
        (ValidationSettings(["gradient"], step_fraction=0), "step"),
        (ValidationSettings(["gradient"], deletion_replacement="grey"), "replacement"),
        (ValidationSettings(["gradient"], interval="z"), "interval"),
        (ValidationSettings(["gradient"], measure_on="blurred"), "measure_on"),
    ):
        with pytest.raises(ValueError, match=message):
            run_validation(demo, messy, settings)


def test_scores_on_the_map_as_drawn_smooth_only_averaged_maps(demo, messy):
    """measure_on="shown": an exact map (the gradient) scores exactly as on the raw map; SmoothGrad
    is scored at the reproducible detail its readout recorded (> 0 px at 16 samples), which
    changes its scores; the tables say which map was scored."""
    from saliency_core.engine.detail import smooth
    from saliency_core.evaluation import localisation as lo

    def run(on):
        settings = ValidationSettings(
            ["gradient", "smoothgrad"], params={"samples": 16}, faithfulness=False, worst=0, measure_on=on
        )
        return run_validation(demo, messy, settings)

    raw, shown = run("raw"), run("shown")
    a, b = raw.per_image().set_index(["image", "method"]), shown.per_image().set_index(["image", "method"])
    scores = SCORES[:4]
    assert a.xs("gradient", level="method")[scores].equals(b.xs("gradient", level="method")[scores])
    assert (a["measured_px"] == 0).all() and (b.xs("gradient", level="method")["measured_px"] == 0).all()
    px = b.xs("smoothgrad", level="method")["measured_px"]
    assert (px > 0).all() and not b["measured_unsettled"].any(), px
    assert not a.xs("smoothgrad", level="method")["relevance_mass"].equals(
        b.xs("smoothgrad", level="method")["relevance_mass"]
    )
    # the scored map is the raw map blurred at the recorded detail: check one image by hand
    item = next(i for i in messy.items if i.name == "chelsea.png")
    exp = sc.explain(demo, item.image(), "smoothgrad", samples=16)
    assert exp.diagnostics["convergence"]["reproducible_px"] == px["chelsea.png"]
    region = item.annotation.region(item.image().size, an.CropGeometry.of(demo))
    by_hand = lo.localisation_scores(smooth(exp.saliency, px["chelsea.png"]), region.mask, signed=False)
    assert by_hand["relevance_mass"] == pytest.approx(
        b.loc[("chelsea.png", "smoothgrad"), "relevance_mass"], abs=1e-4
    )
    assert set(raw.summary_table()["measured on"]) == {"raw map"}
    words = dict(zip(shown.summary_table()["method"], shown.summary_table()["measured on"]))
    assert words["Gradient"] == "as drawn: full detail" and "pixel detail" in words["SmoothGrad"]
    assert shown.record()["settings"]["measured_on"].startswith("the map as drawn")


def test_pasted_object_benchmark_a_gradient_method_beats_the_centre_bias(demo, record):
    """60 real object photos pasted at random places on real textures (exact boxes): on pointing
    game, at least one gradient method beats the centre-bias Gaussian, with the 95% interval of
    the per-image difference above zero."""
    result = run_validation(
        demo,
        pasted_objects(60, seed=0),
        ValidationSettings(["gradient", "gradcam"], faithfulness=False, worst=0),
    )
    assert result.images == 60 and not result.skipped and not result.warnings
    summary = result.summary().set_index(["method", "metric"])
    centre = summary.loc[(CENTRE, "pointing_game"), "mean"]
    for method in ("gradient", "gradcam", CENTRE, RANDOM):
        for metric in ("pointing_game", "relevance_mass"):
            record(f"pasted-60 {method} {metric} mean", summary.loc[(method, metric), "mean"])
    beating = [m for m in ("gradient", "gradcam") if summary.loc[(m, "pointing_game"), "beats_centre"]]
    assert beating, summary.loc[(slice(None), "pointing_game"), ["mean", "gain_ci_low"]]
    for m in beating:
        assert summary.loc[(m, "pointing_game"), "mean"] > centre
    random = summary.loc[(RANDOM, "relevance_mass"), "mean"]
    region = result.per_image().query("method == @RANDOM")["region_fraction"].mean()
    assert random == pytest.approx(region, abs=0.02)  # noise puts its mass where the area is


# ---- command line -------------------------------------------------------------------------------


def test_cli_demo_writes_the_tables(tmp_path, capsys):
    code = main(
        ["validate", "--demo", "--methods", "gradient,gradcam", "--no-faithfulness", "--out", str(tmp_path)]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    for name in ("per_image.csv", "summary.csv", "summary_table.csv", "skipped.csv", "validation.json"):
        assert (tmp_path / name).is_file(), name
    rows = pd.read_csv(tmp_path / "per_image.csv")
    assert len(rows) == 5 * 4 and "deletion_auc" not in rows
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert {"method", "metric", "n", "mean", "ci_low", "ci_high", "gain_vs_centre", "interval"} <= set(
        summary
    )
    assert "Centre bias (Gaussian)" in out and "Pointing game" in out
    assert "warning: Only 5 annotated example(s)" in err
    record = json.loads((tmp_path / "validation.json").read_text())
    assert record["images_scored"] == 5 and record["model"]["name"].startswith("EfficientNet-Lite0")
    assert set(pd.read_csv(tmp_path / "summary_table.csv")["measured on"]) == {"raw map"}


def test_cli_scores_the_map_as_drawn_when_asked(tmp_path, capsys):
    args = ["validate", "--demo", "--methods", "gradient", "--no-faithfulness", "--measure-on", "shown"]
    assert main([*args, "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    table = pd.read_csv(tmp_path / "summary_table.csv")
    assert table.loc[table["method"] == "Gradient", "measured on"].tolist() == ["as drawn: full detail"]
    assert json.loads((tmp_path / "validation.json").read_text())["settings"]["measure_on"] == "shown"


def test_cli_folder_with_bad_input_reports_and_goes_on(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("chelsea.png", "coffee.png", "rocket.jpg"):
        (images / name).write_bytes(_photo(name))
    (tmp_path / "boxes.csv").write_text(
        "image,x_min,y_min,x_max,y_max\nchelsea.png,125,70,355,285\n"
        "coffee.png,170,15,420,300\nghost.png,1,1,5,5\n"
    )
    code = main(
        [
            "validate",
            "--images",
            str(images),
            "--annotations",
            str(tmp_path / "boxes.csv"),
            "--methods",
            "gradient",
            "--step",
            "0.25",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    _, err = capsys.readouterr()
    assert code == 1
    assert "skipped: ghost.png: annotated in boxes.csv line 4, but no image named 'ghost' was given" in err
    assert "skipped: rocket.jpg: no annotation for this image" in err
    assert "2 of 2 image(s) scored" in err
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert sorted(skipped["item"]) == ["ghost.png", "rocket.jpg"]
    rows = pd.read_csv(tmp_path / "out" / "per_image.csv")
    assert rows["deletion_auc"].between(0, 1).all() and len(rows) == 2 * 3


def test_cli_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["validate", "--methods", "gradient", "--out", str(tmp_path)])
    assert stop.value.code == 2
    assert "give one data set" in capsys.readouterr().err
    code = main(
        [
            "validate",
            "--images",
            str(tmp_path / "none"),
            "--annotations",
            str(tmp_path / "x.csv"),
            "--methods",
            "gradient",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 1 and "no such folder" in capsys.readouterr().err


def test_a_run_stopped_after_two_images_goes_on_to_the_same_result(demo, messy):
    from saliency_core.evaluation.validate import ValidationRun

    settings = ValidationSettings(["gradient"], step_fraction=0.2, resamples=200)
    whole = run_validation(demo, messy, settings)

    class Stop(Exception):
        pass

    run = ValidationRun(demo, messy, settings)

    def progress(done, total, eta):  # a Cancel click interrupts here (the page's progress bar)
        if done == 2:
            raise Stop

    with pytest.raises(Stop):
        run_validation(demo, messy, settings, progress=progress, run=run)
    partial = run.result()
    assert run.done == 2 and not run.finished
    assert set(partial.per_image()["image"]) == {i.name for i in messy.items[:2]} - {
        s.item for s in partial.skipped
    }
    assert partial.total == len(messy.items) and partial.images <= 2
    resumed = run_validation(demo, messy, settings, run=run)
    assert run.finished
    pd.testing.assert_frame_equal(
        resumed.per_image().drop(columns="seconds"), whole.per_image().drop(columns="seconds")
    )
    assert [s.record() for s in resumed.skipped] == [s.record() for s in whole.skipped]
    assert {m: [w.image for w in ws] for m, ws in resumed.worst.items()} == {
        m: [w.image for w in ws] for m, ws in whole.worst.items()
    }
