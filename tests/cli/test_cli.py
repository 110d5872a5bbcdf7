"""The command line, run as a subprocess the way an operator runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import skimage
from PIL import Image

import saliency_core as sc
from saliency_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
CHELSEA = os.path.join(os.path.dirname(skimage.__file__), "data", "chelsea.png")
CAT_LABELS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def _run(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "saliency_core", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def all_methods(tmp_path_factory):
    out = tmp_path_factory.mktemp("all")
    result = _run(
        "explain",
        CHELSEA,
        "--method",
        "all",
        "--samples",
        "4",
        "--steps",
        "8",
        "--masks",
        "16",
        "--window",
        "56",
        "--stride",
        "28",
        "--seed",
        "3",
        "--out",
        out,
    )
    return result, out


def _usable() -> list[str]:
    """The methods the demo (a convolutional network) can run: 'all' skips the others."""
    return [n for n, reason in sc.available_methods(sc.load_model("demo")).items() if reason is None]


def test_all_methods_write_one_png_each(all_methods):
    result, out = all_methods
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert len(sc.METHODS) >= 5
    usable = _usable()
    for name in sc.METHODS:
        if name not in usable:  # e.g. attention rollout needs a transformer: skipped with the reason
            assert f"skipping {name}: " in result.stderr
            continue
        png = out / f"chelsea_{name}.png"
        assert png.is_file(), name
        with Image.open(png) as im:
            im.verify()
        with Image.open(png) as im:
            assert im.mode == "RGB" and im.width == 224 and im.height > 224  # overlay + colour bar
        assert f"{name} " in result.stderr  # one progress line per method, with seconds
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"chelsea_{n}.png" for n in usable)


def test_json_record(all_methods):
    _, out = all_methods
    record = json.loads((out / "chelsea.json").read_text())
    assert record["image"].endswith("chelsea.png")
    assert record["image_hash"] == sc.image_hash(sc.load_image(CHELSEA))
    top = record["prediction"]
    assert len(top) == 5 and top[0]["label"] in CAT_LABELS
    assert [p["probability"] for p in top] == sorted((p["probability"] for p in top), reverse=True)
    fingerprint = sc.load_model("demo").fingerprint
    assert record["model"]["fingerprint"] == fingerprint
    assert record["schema"] == 2
    maps = {m["method"]: m for m in record["maps"]}
    assert list(maps) == _usable() and not record["errors"]
    for name, entry in maps.items():
        assert entry["method"] == name and entry["png"] == f"chelsea_{name}.png"
        assert entry["model_fingerprint"] == fingerprint
        assert entry["target"] == top[0]["index"] and entry["target_label"] == top[0]["label"]
        assert entry["versions"]["torch"] and entry["reduction"] in ("max_abs", "sum")
        assert entry["render"]["scale"] > 0 and entry["render"]["legend"]
        assert top[0]["label"] in entry["render"]["legend"]
    smooth = maps["smoothgrad"]["params"]
    assert smooth["seed"] == 3 and smooth["samples"] == 4 and smooth["noise"] == 0.15
    assert maps["integrated_gradients"]["params"]["steps"] == 8
    assert maps["rise"]["params"]["masks"] == 16 and maps["rise"]["params"]["seed"] == 3
    assert maps["occlusion"]["params"] == {"window": 56, "stride": 28, "fill": "grey"}
    assert "completeness_gap" in maps["integrated_gradients"]["diagnostics"]
    # Signed methods are drawn signed, on a diverging colormap.
    for name, method in sc.METHODS.items():
        if name not in maps:
            continue
        assert maps[name]["render"]["sign"] == ("signed" if method.signed else "absolute")


def test_bad_file_is_reported_and_the_rest_still_runs(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    out = tmp_path / "out"
    result = _run("explain", bad, CHELSEA, "--method", "gradient", "--out", out)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "bad.png" in line]
    assert len(lines) == 1 and "not an image" in lines[0]
    assert (out / "chelsea_gradient.png").is_file() and (out / "chelsea.json").is_file()
    assert not list(out.glob("bad*"))


def test_unknown_method_lists_the_available_ones(tmp_path):
    result = _run("explain", CHELSEA, "--method", "gradient", "--method", "magic", "--out", tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "magic" in result.stderr
    for name in sc.METHODS:
        assert name in result.stderr
    assert not list(tmp_path.glob("*.png"))  # refused before any work


@pytest.mark.parametrize(
    "args, words",
    [
        (["--samples", "0"], ["--samples", "at least 1"]),
        (["--noise", "abc"], ["--noise", "abc"]),
        (["--noise", "1.5"], ["--noise", "between 0 and 1"]),
        (["--sign", "signed", "--colormap", "inferno"], ["diverging"]),
        (["--colormap", "jet"], ["--colormap", "jet"]),
    ],
)
def test_bad_numbers_and_options_are_one_line_errors(tmp_path, capsys, args, words):
    # In-process: argparse errors need no model, and this saves a subprocess start per case.
    with pytest.raises(SystemExit) as info:
        main(["explain", CHELSEA, "--method", "gradient", *args, "--out", str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    for word in words:
        assert word in err


def test_target_out_of_range(tmp_path, capsys):
    assert main(["explain", CHELSEA, "--method", "gradient", "--target", "5000", "--out", str(tmp_path)]) == 2
    assert "--target" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))


def test_every_command_that_computes_maps_takes_every_method_parameter():
    """Flags derived from each method's defaults: every parameter the sidebar offers exists on every
    command that computes maps (explain, report, validate, stability, sanity, compare)."""
    from saliency_core.cli import build_parser
    from saliency_core.cli.common import FIXED_BY_NAME  # chosen by the method's name, not a flag

    wanted = {
        "--" + name.replace("_", "-")
        for m in sc.METHODS.values()
        for name in m.defaults
        if name not in FIXED_BY_NAME
    }
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name in ("explain", "report", "validate", "stability", "sanity", "compare"):
        flags = set(commands[name]._option_string_actions)
        assert wanted <= flags, (name, sorted(wanted - flags))
