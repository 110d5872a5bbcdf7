"""Comparing two model versions (saliency_core/evaluation/compare.py, the ``compare`` command): two ResNet-18
checkpoints with random weights, B with its last layer changed, saved as state dict + card. The
ground truth (which top-1 classes change) is computed here directly with the torchvision networks."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import skimage
import torch
import torchvision.transforms as T
from _checkpoints import CLASSES, accepted_and_candidate
from PIL import Image

import saliency_core as sc
from saliency_core.cli import main
from saliency_core.engine.classifier import file_sha256
from saliency_core.evaluation import compare as cmp
from saliency_core.evaluation import compare_labels as cmp_labels
from saliency_core.evaluation.similarity import spearman, top_k_overlap

DATA = os.path.join(os.path.dirname(skimage.__file__), "data")
PHOTOS = ["chelsea.png", "coffee.png", "camera.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png"]

CARD = "name: {name}\nfile: {file}\narchitecture: resnet18\nlabels: [{labels}]\ninput_size: 64\nresize: 72\n"
METHODS = ["gradient", "smoothgrad", "gradcam"]
PARAMS = {"samples": 4, "noise": 0.15, "seed": 0}


def _write(folder, stem, state, name, labels=CLASSES, size=(64, 72)):
    if state is not None:
        torch.save(state, folder / f"{stem}.pth")
    card = CARD.format(name=name, file=f"{stem}.pth", labels=", ".join(labels))
    card = card.replace("input_size: 64\nresize: 72", f"input_size: {size[0]}\nresize: {size[1]}")
    (folder / f"{stem}.yaml").write_text(card)
    return folder / f"{stem}.yaml"


@pytest.fixture(scope="module")
def nets():
    return accepted_and_candidate(CLASSES)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, nets):
    folder = tmp_path_factory.mktemp("models")
    a, b = nets
    _write(folder, "accepted", a.state_dict(), "Inspector v1")
    _write(folder, "candidate", b.state_dict(), "Inspector v2")
    shutil.copy(folder / "accepted.pth", folder / "copy.pth")  # identical weights, another file
    _write(folder, "copy", None, "Inspector v1 copy")
    _write(
        folder, "other_classes", b.state_dict(), "Other", labels=["sound", "scratch", "dent", "hole", "rust"]
    )
    return folder


@pytest.fixture(scope="module")
def photos():
    return [os.path.join(DATA, p) for p in PHOTOS]


def _truth(nets, photos) -> tuple[list[int], list[int]]:
    """Top-1 of each network, computed directly: resize 72, centre crop 64, ImageNet normalisation."""
    prep = T.Compose(
        [
            T.Resize(72, interpolation=T.InterpolationMode.BILINEAR),
            T.CenterCrop(64),
            T.ToTensor(),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    x = torch.stack([prep(Image.open(p).convert("RGB")) for p in photos])
    with torch.no_grad():
        return [net(x).argmax(1).tolist() for net in nets]


@pytest.fixture(scope="module")
def loaded(models_dir):
    return {
        k: sc.load_model(models_dir / f"{k}.yaml") for k in ("accepted", "candidate", "copy", "other_classes")
    }


@pytest.fixture(scope="module")
def differing(loaded, photos):
    settings = cmp.CompareSettings(METHODS, PARAMS, resamples=500)
    return cmp.compare_models(loaded["accepted"], loaded["candidate"], photos, settings)


def test_finds_exactly_the_images_whose_top1_changed(differing, nets, photos):
    top_a, top_b = _truth(nets, photos)
    expected = {os.path.basename(p) for p, x, y in zip(photos, top_a, top_b) if x != y}
    assert 0 < len(expected) < len(photos), "the fixture must change some predictions and keep others"
    found = {os.path.basename(i.name) for i in differing.changed()}
    assert found == expected
    for item, x, y in zip(differing.images, top_a, top_b):
        assert (item.top_a[0], item.top_b[0]) == (x, y)
        assert item.change == ("changed" if x != y else "unchanged")  # no labels: changed / unchanged
    lines = differing.summary_lines()
    assert f"The top class changed on {len(expected)} of {len(photos)} images" in " ".join(lines)
    assert not differing.identical_weights and not differing.skipped and not differing.cancelled
    table = differing.table()
    assert set(table.loc[table["prediction"] == "changed", "image"].map(os.path.basename)) == expected


def test_map_agreement_and_seed_baseline(differing):
    agreement = differing.method_agreement()
    assert set(agreement) == set(METHODS)
    held = [i for i in differing.images if not i.changed]
    for m, s in agreement.items():
        assert s.over == "held" and s.spearman.n == len(held)
        values = [i.agreement[m]["spearman"] for i in held]
        assert s.spearman.mean == pytest.approx(np.mean(values))
        assert s.spearman.low <= s.spearman.mean <= s.spearman.high
        assert 0 <= s.top_overlap.mean <= 1
    # the seed baseline exists only for the averaging method, and a new seed does move SmoothGrad
    assert agreement["gradient"].seed_spearman is None and agreement["gradcam"].seed_spearman is None
    seed = agreement["smoothgrad"].seed_spearman
    assert seed is not None and seed.n == len(held) and seed.mean < 1
    # the per-image numbers are the similarity measures of the two maps, recomputed here
    item = held[0]
    a, b = item.saliency_a["gradient"], item.saliency_b["gradient"]
    assert item.agreement["gradient"]["spearman"] == pytest.approx(spearman(np.abs(a), np.abs(b)))
    assert item.agreement["gradient"]["top_overlap"] == pytest.approx(top_k_overlap(a, b, 0.1))
    # Grad-CAM at the shared backbone: the last layer changed, so maps of a held class differ
    assert agreement["gradcam"].verdict in ("changed", "identical")
    moved = differing.most_moved()
    assert moved and all(not i.changed for i in moved)
    assert [i.lowest_spearman() for i in moved] == sorted(i.lowest_spearman() for i in moved)


def test_identical_checkpoints(loaded, photos):
    settings = cmp.CompareSettings(METHODS, PARAMS, resamples=500)
    result = cmp.compare_models(loaded["accepted"], loaded["copy"], photos[:3], settings)
    text = " ".join(result.summary_lines())
    assert "No prediction changed" in text
    assert (
        "identical weights (the same fingerprint" in text
        and "the same preprocessing: no difference is expected" in text
    )
    assert result.identical_weights
    assert not result.changed()
    for m, s in result.method_agreement().items():
        assert s.spearman.mean == 1.0 and s.top_overlap.mean == 1.0, m
        assert s.verdict == "identical"
    assert result.most_moved() == []
    assert result.method_agreement()["smoothgrad"].seed_spearman.mean < 1  # the baseline is not trivial


def test_different_class_lists_give_the_message(loaded, photos):
    with pytest.raises(ValueError) as err:
        cmp.compare_models(
            loaded["accepted"], loaded["other_classes"], photos[:1], cmp.CompareSettings(["gradient"])
        )
    text = str(err.value)
    assert "different class lists" in text
    assert "Only in model A (2): 'crack', 'stain'" in text and "Only in model B (2): 'hole', 'rust'" in text
    order = cmp_labels.class_difference(["a", "b", "c"], ["a", "c", "b"])
    assert "different order" in order and "class 1 is 'b' in A and 'c' in B" in order
    assert cmp_labels.class_difference(CLASSES, list(CLASSES)) is None
    long = cmp_labels.class_difference([f"x{i}" for i in range(50)], [f"y{i}" for i in range(50)])
    assert "and 40 more" in long and len(long) < 600


def test_labels_classify_fixed_broken_and_both_wrong(loaded, photos, nets):
    top_a, top_b = _truth(nets, photos)
    changed = [k for k in range(len(photos)) if top_a[k] != top_b[k]]
    assert len(changed) >= 2
    other = next(c for c in range(len(CLASSES)) if c not in (top_a[changed[0]], top_b[changed[0]]))
    rows = {
        os.path.basename(photos[changed[0]]): CLASSES[other],  # both wrong
        os.path.basename(photos[changed[1]]): str(top_b[changed[1]]),  # fixed (label as an index)
        os.path.basename(photos[0]): CLASSES[top_a[0]],
    }  # A right
    if len(changed) > 2:
        rows[os.path.basename(photos[changed[2]])] = CLASSES[top_a[changed[2]]]  # broken
    text = "image,label\n" + "".join(f"{k},{v}\n" for k, v in rows.items())
    text += (
        "nowhere.png,unicorn\n,dent\nshort-row\n"
        + f"{os.path.basename(photos[0])},{CLASSES[(top_a[0] + 1) % 5]}\n"
    )
    labels, problems = cmp_labels.read_labels(text.encode(), CLASSES, where="labels.csv")
    assert len(labels) == len(rows)
    assert any("'unicorn'" in p and "not one of the models' 5 classes" in p for p in problems)
    assert any("labelled twice" in p for p in problems)
    assert any("image name is empty" in p for p in problems)
    assert any("expected an image name and a label" in p and "short-row" in p for p in problems)
    result = cmp.compare_models(
        loaded["accepted"],
        loaded["candidate"],
        photos,
        cmp.CompareSettings(["gradient"], resamples=200),
        labels,
    )
    by_name = {os.path.basename(i.name): i for i in result.images}
    assert by_name[os.path.basename(photos[changed[0]])].change == "changed, both wrong"
    assert by_name[os.path.basename(photos[changed[1]])].change == "fixed"
    if len(changed) > 2:
        assert by_name[os.path.basename(photos[changed[2]])].change == "broken"
    right_a, right_b, known = result.accuracy()
    assert known == len(rows)
    assert right_a == sum(by_name[n].top_a[0] == by_name[n].truth for n in rows)
    assert "Accuracy on the" in " ".join(result.summary_lines())


def test_labels_file_refusals():
    with pytest.raises(ValueError, match="first row must name the columns 'image' and 'label'"):
        cmp_labels.read_labels(b"a,b\n1,2\n", CLASSES)
    with pytest.raises(ValueError, match="not UTF-8"):
        cmp_labels.read_labels(b"image,label\n\xff\xfe\n", CLASSES)
    with pytest.raises(ValueError, match="larger than 16 MiB"):
        cmp_labels.read_labels(b"image,label\n" + b"x" * (16 << 20), CLASSES)
    labels, problems = cmp_labels.read_labels(
        b"image,label\n" + b"".join(b"a%d.png,99\n" % i for i in range(40)), CLASSES
    )
    assert labels == {} and len(problems) == cmp_labels.MAX_PROBLEMS + 1 and "20 more rows" in problems[-1]
    assert cmp.label_for("Cat (chelsea.png)", {"chelsea.png": 1}) == 1
    assert cmp.label_for("dir/chelsea.png", {"chelsea.png": 2}) == 2


def test_different_resolution_same_region_is_aligned(models_dir, nets, loaded, photos, tmp_path):
    card = models_dir / "small.yaml"  # A's weights file, a smaller input of the same region
    card.write_text(
        (models_dir / "accepted.yaml")
        .read_text()
        .replace("input_size: 64\nresize: 72", "input_size: 32\nresize: 36")
    )
    small = sc.load_model(card)
    result = cmp.compare_models(
        loaded["accepted"], small, photos[:2], cmp.CompareSettings(["gradcam"], resamples=200)
    )
    assert result.maps_not_compared is None and len(result.images) == 2
    text = " ".join(result.summary_lines())
    assert (
        "identical weights" in text
        and "but differ in input_size 64 in A, 32 in B; resize 72 in A, 36 in B" in text
    )
    assert all("gradcam" in i.agreement for i in result.images)
    wide = sc.load_model(_write(tmp_path, "wide", nets[0].state_dict(), "Inspector v1 wide", size=(64, 64)))
    result = cmp.compare_models(
        loaded["accepted"], wide, photos[:2], cmp.CompareSettings(["gradient"], resamples=200)
    )
    assert "different parts of the image" in result.maps_not_compared
    assert all(not i.agreement for i in result.images) and len(result.images) == 2
    assert "The maps were not compared" in " ".join(result.summary_lines())


def test_cancel_keeps_what_was_done(loaded, photos):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 4  # three runs check once per image: stop during the second image

    result = cmp.compare_models(
        loaded["accepted"],
        loaded["candidate"],
        photos,
        cmp.CompareSettings(["gradient", "smoothgrad"], PARAMS, resamples=200),
        cancel=cancel,
    )
    assert result.cancelled and len(result.images) == 1
    assert "cancelled: 1 of 6 done" in " ".join(result.summary_lines())


def test_cli_end_to_end(models_dir, nets, photos, tmp_path, capsys):
    top_a, top_b = _truth(nets, photos[:4])
    folder = tmp_path / "images"
    folder.mkdir()
    for p in photos[:4]:
        shutil.copy(p, folder)
    (folder / "broken.png").write_bytes(b"not a picture")
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "image,label\n" + "".join(f"{os.path.basename(p)},{CLASSES[t]}\n" for p, t in zip(photos[:4], top_a))
    )
    out, report = tmp_path / "out", tmp_path / "compare.html"
    code = main(
        [
            "compare",
            "--model-a",
            str(models_dir / "accepted.yaml"),
            "--model-b",
            str(models_dir / "candidate.yaml"),
            "--images",
            str(folder),
            "--out",
            str(out),
            "--labels",
            str(labels),
            "--report",
            str(report),
            "--method",
            "gradient,smoothgrad",
            "--samples",
            "4",
            "--device",
            "cpu",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1, captured.err  # the unreadable image is a failure, the rest goes on
    assert "broken.png" in captured.err and "not an image" in captured.err
    expected = {os.path.basename(p) for p, x, y in zip(photos[:4], top_a, top_b) if x != y}
    table = pd.read_csv(out / "comparison.csv")
    assert sorted(table["image"]) == sorted(os.path.basename(p) for p in photos[:4])
    assert set(table.loc[table["prediction"] != "unchanged", "image"]) == expected
    assert set(table.loc[table["prediction"] != "unchanged", "prediction"]) <= {
        "broken"
    }  # A was right on all
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_a"]["fingerprint"] == file_sha256(models_dir / "accepted.pth")
    assert summary["model_b"]["fingerprint"] == file_sha256(models_dir / "candidate.pth")
    assert (
        summary["model_a"]["card"]["name"] == "Inspector v1"
        and summary["model_b"]["card"]["architecture"] == "resnet18"
    )
    assert summary["predictions"]["broken"] == len(expected) and summary["accuracy"]["a"] == 4
    assert summary["skipped"][0]["image"].endswith("broken.png")
    assert set(summary["agreement"]) == {"gradient", "smoothgrad"}
    assert summary["summary"][0].startswith("Model A (accepted): Inspector v1")
    methods = pd.read_csv(out / "methods.csv")
    assert list(methods["method"]) == ["Gradient", "SmoothGrad"]
    assert f"The top class changed on {len(expected)} of 4 images" in captured.out
    html = report.read_text()
    assert 'id="comparison"' in html and summary["model_a"]["fingerprint"] in html
    assert summary["model_b"]["fingerprint"] in html and "Compared with another version of the model" in html


def test_cli_different_classes_and_bad_labels(models_dir, photos, tmp_path, capsys):
    code = main(
        [
            "compare",
            "--model-a",
            str(models_dir / "accepted.yaml"),
            "--model-b",
            str(models_dir / "other_classes.yaml"),
            "--images",
            photos[0],
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "different class lists" in err and "'hole', 'rust'" in err
    bad = tmp_path / "labels.csv"
    bad.write_bytes(b"\x00\x01")
    code = main(
        [
            "compare",
            "--model-a",
            str(models_dir / "accepted.yaml"),
            "--model-b",
            str(models_dir / "candidate.yaml"),
            "--images",
            photos[0],
            "--out",
            str(tmp_path / "o"),
            "--labels",
            str(bad),
        ]
    )
    assert code == 1 and "labels.csv" in capsys.readouterr().err


def test_report_section_html_and_pdf(differing, loaded, photos):
    from saliency_core import report as rp

    section = differing.report_section()
    assert section["headline"].startswith("The top class changed on")
    report = rp.build_report(loaded["candidate"], photos[:2], ["gradient"], comparison=section)
    html = report.to_html()
    assert (
        "Compared with another version of the model (see \u201cComparison\u201d): The top class changed"
        in html
    )
    assert '<a href="#comparison">Comparison</a>' in html
    for title, _ in section["tables"]:
        assert f"<h3>{title}</h3>" in html
    assert differing.model_a["fingerprint"] in html and differing.model_b["fingerprint"] in html
    pdf = report.to_pdf()
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000


def test_demo_against_itself_agrees_at_the_stated_detail(demo, chelsea_path, coffee_path):
    """SmoothGrad-50 of the demo model against itself: A vs B is the same map, and A against a
    re-run with another seed agrees at the stated detail (the coarsest reproducible detail of
    the maps) at 0.9 or more, while the raw pixels, kept beside it, agree far less."""
    settings = cmp.CompareSettings(["smoothgrad"], {"samples": 50, "noise": 0.15, "seed": 0}, resamples=200)
    result = cmp.compare_models(demo, demo, [chelsea_path, coffee_path], settings)
    for item in result.images:
        got, seed = item.agreement["smoothgrad"], item.seed_agreement["smoothgrad"]
        assert got["spearman"] == pytest.approx(1.0) and got["detail_px"] == seed["detail_px"] > 0
        assert seed["spearman"] >= 0.9, seed
        assert seed["spearman_raw"] < seed["spearman"] - 0.3  # pixel speckle: the raw figure beside it
    table = result.table()
    assert {"SmoothGrad: detail (px)", "SmoothGrad: rank correlation, raw pixels"} <= set(table.columns)
    assert result.method_agreement()["smoothgrad"].seed_spearman.mean >= 0.9
