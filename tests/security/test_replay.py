"""Hostile reports given to replay: a report naming a model path must not load it, a model with
another fingerprint is refused, a zlib bomb in a stored map is refused within a small memory and
time, and a hostile number in a record is that map's error."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import time
import tracemalloc
import warnings
import zlib
from pathlib import Path

import pytest
import torch
from test_model_files import WritesFile  # tests/security/test_model_files.py
from torch import nn

import saliency_core.report as report_module
from saliency_core import cli


class Plain(nn.Module):
    def forward(self, x):
        return torch.cat([x.mean(dim=(2, 3)), -x.mean(dim=(2, 3))], dim=1)


def _save(module: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(module), str(path))
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory, demo, chelsea_path):
    """A real report of the demo model (one photo, Gradient: the map is stored in the report)."""
    folder = tmp_path_factory.mktemp("report")
    report = report_module.build_report(demo, [chelsea_path], ["gradient"])
    record = report.replay_record()
    assert record["images"][0]["maps"][0]["saliency"].get("data")  # the map is embedded
    return {"folder": folder, "record": record, "html": report.to_html()}


def _html_with(made, record: dict, path: Path) -> Path:
    text = re.sub(
        r'(<script type="application/json" id="saliency-replay">).*?(</script>)',
        lambda m: m.group(1) + json.dumps(record).replace("</", "<\\/") + m.group(2),
        made["html"],
        flags=re.S,
    )
    path.write_text(text, encoding="utf-8")
    return path


def test_report_naming_a_model_path_does_not_load_it(made, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "MARKER"
    evil = _save(WritesFile(str(marker)), tmp_path / "evil.pt")
    record = copy.deepcopy(made["record"])
    record["model"]["source"] = str(evil)  # as if made with this model
    record["model"]["fingerprint"] = hashlib.sha256(evil.read_bytes()).hexdigest()
    loads = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: loads.append(a) or pytest.fail("torch.jit.load"))
    empty = tmp_path / "models"
    empty.mkdir()
    monkeypatch.setenv("SALIENCY_MODELS_DIR", str(empty))
    report = _html_with(made, record, tmp_path / "crafted.html")

    assert cli.main(["replay", str(report)]) == 1
    err = capsys.readouterr().err.strip()
    want = record["model"]["fingerprint"][:12]
    assert err == (
        f"error: No model with this report's fingerprint ({want}…) was found: it is not the demo and "
        f"not in the models folder {empty}. Put the model there or give it with --model PATH (its "
        "fingerprint must match); a model path written in the report is never used."
    )
    with pytest.raises(ValueError, match="a model path written in the report is never used"):
        report_module.replay(record)
    assert not loads and not marker.exists()


def test_replay_refuses_a_model_with_another_fingerprint(made, tmp_path, capsys):
    other = _save(Plain(), tmp_path / "other.pt")
    report = _html_with(made, made["record"], tmp_path / "report.html")
    assert cli.main(["replay", str(report), "--model", str(other)]) == 1
    out, err = capsys.readouterr()
    fingerprint = hashlib.sha256(other.read_bytes()).hexdigest()
    want = made["record"]["model"]["fingerprint"]
    assert out == ""  # no map was recomputed
    assert err.strip() == (
        f"error: The model given (other.pt) is not the one this report was made with: its "
        f"weights' sha256 is {fingerprint[:12]}…, the report's {want[:12]}…. Nothing was "
        "replayed."
    )


def _bomb(inflated: int) -> str:
    """base64 zlib data of ``inflated`` zero bytes, built in 1 MiB steps (never held whole)."""
    packer, chunk, parts = zlib.compressobj(9), bytes(1 << 20), []
    for _ in range(inflated >> 20):
        parts.append(packer.compress(chunk))
    parts.append(packer.flush())
    return base64.b64encode(b"".join(parts)).decode()


@pytest.mark.parametrize("inflated", [256 << 20, 1200 << 20], ids=["256MiB", "1.2GiB"])
def test_zlib_bomb_in_a_stored_map_is_refused(made, demo, inflated):
    record = copy.deepcopy(made["record"])
    stored = record["images"][0]["maps"][0]["saliency"]
    stored["data"] = _bomb(inflated)
    side = stored["shape"]
    tracemalloc.start()
    start = time.monotonic()
    try:
        results = report_module.replay(record, demo)
        seconds = time.monotonic() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(r.status, r.detail) for r in results] == [
        (
            "error",
            f"the map stored in the report is not a float32 map of {side[0]} x {side[1]} "
            + (
                "(it inflates to more than 200,704 bytes)"
                if inflated == 256 << 20
                else "(it is not compressed data of a map this size)"
            )
            + "; it was not used",
        )
    ]
    assert len(stored["data"]) < 2_000_000  # a report of under 2 MB ...
    assert peak < 32 << 20, f"peak {peak / 2**20:.0f} MiB while replaying"  # ... stays far below GBs
    assert seconds < 60


@pytest.mark.parametrize(
    "where, value, detail",
    [
        ("target", 1e400, "the class index must be a whole number from 0 to 999; got inf"),
        (
            "target",
            [1] * 10_000,
            "the class index must be a whole number from 0 to 999; got [1, 1, 1, 1, ...]",
        ),
        (
            "shape",
            [10**30, 10**30],
            "the recorded map's shape is not two sides of 1 to 4096 pixels "
            "([1000000000000000000000000000000, 1000000000000000000000000000000])",
        ),
    ],
    ids=["target_inf", "target_list", "shape_huge"],
)
def test_hostile_numbers_in_a_record_are_that_maps_error(made, demo, where, value, detail):
    record = copy.deepcopy(made["record"])
    entry = record["images"][0]["maps"][0]
    (entry if where == "target" else entry["saliency"])[where] = value
    text = json.dumps(record)  # as read from a report file
    results = report_module.replay(json.loads(text), demo)
    assert [(r.status, r.detail) for r in results] == [("error", detail)]


def test_hostile_thread_count_is_refused(made, demo):
    record = copy.deepcopy(made["record"])
    record["environment"]["threads"] = 10**9
    with pytest.raises(ValueError) as err:
        report_module.replay(record, demo)
    assert str(err.value) == (
        "The report's CPU thread count must be a whole number from 1 to 256; got "
        "1000000000. Nothing was replayed."
    )
