"""Validate and explain on a real Ray cluster (saliency_core/distributed.py).

The module starts its own one-node cluster with the ``ray`` command of this virtualenv
(``ray start --head --block`` on 127.0.0.1, 2 CPUs, a 200 MB object store, in a session of its
own) and runs two model-holding worker processes (actors) on it. Teardown stops exactly that
cluster: the ``ray start`` process, then any process left in its session. ``ray stop --force``
is not used: it would stop every Ray process of the user on this machine, other people's too.

Both sides use one torch thread (the local run here, the workers via ``threads=1``), so the
per-image tables match to the last bit. ``seconds`` (wall time per map) is the one column left
out of the comparisons.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import skimage
import torch
from _ray_cluster import ENV, free_port, session_of
from _records import validate_record

import saliency_core as sc
from saliency_core import distributed
from saliency_core.cli import main
from saliency_core.evaluation.data import pasted_objects
from saliency_core.evaluation.validate import ValidationSettings, run_validation

ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).parent / "ray"
IMAGES = 60
SETTINGS = dict(methods=["gradient", "gradcam"], faithfulness=False, worst=0)
DATA = partial(pasted_objects, IMAGES, seed=0)
PHOTOS = os.path.join(os.path.dirname(skimage.__file__), "data")


@pytest.fixture(scope="module")
def local(one_thread):
    """The local run of the same 60 images: (result, images per second)."""
    model = sc.load_model("demo")
    start = time.perf_counter()
    result = run_validation(model, DATA(), ValidationSettings(**SETTINGS))
    return result, IMAGES / (time.perf_counter() - start)


def _table(result) -> pd.DataFrame:
    return result.per_image().drop(columns="seconds")


def _lines(out: Path) -> list[dict]:
    """The complete lines of a results file after its header."""
    text = (out / distributed.VALIDATE_LOG).read_text() if (out / distributed.VALIDATE_LOG).exists() else ""
    return [json.loads(line) for line in text.split("\n")[1:-1]]


def _assert_same_as_local(result, local_result) -> None:
    pd.testing.assert_frame_equal(_table(result), _table(local_result), check_exact=True)
    pd.testing.assert_frame_equal(result.summary(), local_result.summary(), check_exact=True)
    assert result.images == local_result.images == IMAGES and result.total == IMAGES
    assert result.skipped == local_result.skipped


def test_validate_on_ray_gives_exactly_the_local_table(cluster, local, tmp_path, record):
    address, _ = cluster
    local_result, local_rate = local
    said = []
    start = time.perf_counter()
    result = distributed.run_validation_ray(
        "demo",
        DATA,
        ValidationSettings(**SETTINGS),
        tmp_path,
        address=address,
        workers=2,
        threads=1,
        batch_size=4,
        log=said.append,
    )
    ray_rate = IMAGES / (time.perf_counter() - start)
    _assert_same_as_local(result, local_result)
    assert len(_table(result)) == IMAGES * 4 and result.per_image()["image"].nunique() == IMAGES
    lines = _lines(tmp_path)
    assert sorted(line["index"] for line in lines) == list(range(IMAGES))
    assert len({line["worker"] for line in lines}) == 2  # two worker processes shared the images
    assert {line["threads"] for line in lines} == {torch.get_num_threads()} == {1}
    assert any("2 worker(s) x 1 torch thread(s)" in s for s in said), said
    record("local run, images/s (1 thread)", local_rate)
    record("Ray run incl. start of 2 actors, images/s", ray_rate)


def test_deletion_and_insertion_curves_add_up_to_the_same_floats(cluster, one_thread, tmp_path):
    """With faithfulness on, the mean curves (summed on the driver in data set order) are equal too."""
    address, _ = cluster
    settings = dict(methods=["gradient"], step_fraction=0.25, worst=0)
    data = partial(pasted_objects, 4, seed=1)
    local_result = run_validation(sc.load_model("demo"), data(), ValidationSettings(**settings))
    result = distributed.run_validation_ray(
        "demo", data, ValidationSettings(**settings), tmp_path, address=address, workers=2, batch_size=1
    )
    pd.testing.assert_frame_equal(_table(result), _table(local_result), check_exact=True)
    assert "deletion_auc" in _table(result) and list(result.curves) == list(local_result.curves)
    for method, curve in local_result.curves.items():
        assert curve["n"] == result.curves[method]["n"] == 4
        for name in ("fractions", "deletion", "insertion"):
            assert curve[name].tolist() == result.curves[method][name].tolist(), (method, name)


def _kill_first_worker(out: Path, session: int, killed: list, after: int = 1) -> None:
    """Wait for ``after`` finished images, then kill -9 the worker process that scored the first."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        lines = _lines(out)
        if len(lines) >= after:
            pid = int(lines[0]["worker"].rsplit(":", 1)[1])
            name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            assert name.startswith("ray::") and session_of(pid) == session, (pid, name)  # one of ours
            os.kill(pid, signal.SIGKILL)
            killed.append((pid, len(lines)))
            return
        time.sleep(0.02)


def test_a_killed_worker_is_restarted_and_the_table_is_complete(cluster, local, tmp_path, record):
    address, session = cluster
    killed: list = []
    killer = threading.Thread(target=_kill_first_worker, args=(tmp_path, session, killed))
    killer.start()
    result = distributed.run_validation_ray(
        "demo",
        DATA,
        ValidationSettings(**SETTINGS),
        tmp_path,
        address=address,
        workers=2,
        threads=1,
        batch_size=2,
    )
    killer.join()
    assert killed, "no worker was killed"
    pid, done_before = killed[0]
    assert done_before < IMAGES - 10  # it died mid-run, with most of the work still to do
    assert session_of(pid) is None  # it is gone ...
    lines = _lines(tmp_path)
    workers = [line["worker"] for line in lines]
    assert len(set(workers)) >= 3, set(workers)  # ... and Ray started a new one that took over its block
    assert sorted(line["index"] for line in lines) == list(range(IMAGES))  # each image once
    _assert_same_as_local(result, local[0])
    record("worker killed after this many images were written", done_before)
    record("worker processes that wrote images (2 + restarted)", len(set(workers)))


def test_run_killed_midway_resumes_and_recomputes_only_the_missing_images(cluster, local, tmp_path, record):
    """The driver (the validate command) is killed with SIGKILL mid-run; --resume finishes it."""
    address, _ = cluster
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "saliency_core",
        "validate",
        "--pasted",
        str(IMAGES),
        "--methods",
        "gradient,gradcam",
        "--no-faithfulness",
        "--ray",
        address,
        "--workers",
        "2",
        "--out",
        str(out),
    ]
    first = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 150
    while len(_lines(out)) < 12 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    first.kill()
    stderr = first.communicate()[1]
    before = _lines(out)
    assert 12 <= len(before) < IMAGES, stderr[-2000:]
    assert not (out / "per_image.csv").exists()  # the first run never finished

    code = main([*command[3:], "--resume"])
    assert code == 0
    after = _lines(out)
    first_run = {line["index"] for line in before}
    second_run = {line["index"] for line in after if line["run"] != before[0]["run"]}
    assert first_run | second_run == set(range(IMAGES)) and not first_run & second_run
    assert len(after) == IMAGES  # nothing computed twice
    record("resume: images finished before the command was killed", len(first_run))
    record("resume: images computed by --resume", len(second_run))
    table = pd.read_csv(out / "per_image.csv", keep_default_na=False)
    expected = pd.read_csv(_csv(local[0].per_image(), tmp_path / "local.csv"), keep_default_na=False)
    pd.testing.assert_frame_equal(
        table.drop(columns="seconds"), expected.drop(columns="seconds"), check_exact=True
    )
    record = json.loads((out / "validation.json").read_text())
    assert record["images_scored"] == IMAGES and record["images_given"] == IMAGES


def _csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_resume_refuses_results_of_another_run(cluster, tmp_path):
    address, _ = cluster
    settings = ValidationSettings(["gradient"], faithfulness=False, worst=0)
    distributed.ResultsLog(
        tmp_path / distributed.VALIDATE_LOG, {"command": "validate", "seed": 1}, resume=False
    )
    with pytest.raises(ValueError, match=r"holds results of a different run \(.*differ\)"):
        distributed.run_validation_ray(
            "demo", partial(pasted_objects, 4), settings, tmp_path, address=address, resume=True
        )


def test_results_file_drops_a_line_cut_short(tmp_path):
    key = {"command": "validate", "model": "abc"}
    log = distributed.ResultsLog(tmp_path / "rows.jsonl", key, resume=False)
    log.append([{"index": 0, "rows": []}, {"index": 1, "rows": []}])
    with open(tmp_path / "rows.jsonl", "a") as f:
        f.write('{"index": 2, "ro')  # the run stopped while writing
    again = distributed.ResultsLog(tmp_path / "rows.jsonl", key, resume=True)
    assert again.done == {0, 1}
    again.append([{"index": 2, "rows": []}])
    assert [r["index"] for r in again.records()] == [0, 1, 2]
    assert distributed.ResultsLog(tmp_path / "rows.jsonl", key, resume=False).done == set()


def test_explain_on_ray_writes_the_local_files_and_resumes(cluster, one_thread, tmp_path, capsys):
    address, _ = cluster
    folder = tmp_path / "in"
    (folder / "more").mkdir(parents=True)
    shutil.copy(os.path.join(PHOTOS, "chelsea.png"), folder / "chelsea.png")
    shutil.copy(os.path.join(PHOTOS, "coffee.png"), folder / "coffee.png")
    shutil.copy(os.path.join(PHOTOS, "camera.png"), folder / "more" / "chelsea.png")  # same stem: chelsea-2
    (folder / "broken.png").write_text("not a picture")
    args = ["explain", str(folder), "--method", "gradient,smoothgrad", "--samples", "3"]
    assert main([*args, "--out", str(tmp_path / "local")]) == 1  # the broken file
    local_err = capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "ray"), "--ray", address, "--workers", "2"]) == 1
    ray_err = capsys.readouterr().err
    assert "broken.png: this is not an image file" in ray_err
    assert "6 map(s) written" in ray_err and "1 failure(s)" in ray_err and "6 map(s) written" in local_err
    _assert_same_files(tmp_path / "local", tmp_path / "ray")

    # the run stopped after the first two images: --resume explains only the others
    log = tmp_path / "ray" / distributed.EXPLAIN_LOG
    lines = log.read_text().splitlines()
    assert [json.loads(line)["image"] for line in lines[1:]] == [
        str(folder / n) for n in ("broken.png", "chelsea.png", "coffee.png", "more/chelsea.png")
    ]
    log.write_text("\n".join(lines[:3]) + "\n")
    for name in ("coffee.json", "coffee_gradient.png", "chelsea-2.json", "chelsea-2_smoothgrad.png"):
        (tmp_path / "ray" / name).unlink()
    assert main([*args, "--out", str(tmp_path / "ray"), "--ray", address, "--workers", "2", "--resume"]) == 1
    err = capsys.readouterr().err
    assert "resuming: 2 of 4 image(s) already written" in err
    assert "coffee.png: gradient" in err and "more/chelsea.png: smoothgrad" in err
    assert "in/chelsea.png:" not in err and "broken.png" not in err  # not redone
    assert "6 map(s) written" in err and "1 failure(s)" in err  # totals of the whole run
    _assert_same_files(tmp_path / "local", tmp_path / "ray")


def _assert_same_files(local: Path, ray: Path) -> None:
    names = sorted(p.name for p in local.iterdir())
    assert names == sorted(p.name for p in ray.iterdir() if p.name != distributed.EXPLAIN_LOG)
    assert "chelsea-2_gradient.png" in names and "broken.json" not in names
    for name in names:
        if name.endswith(".png"):
            assert (local / name).read_bytes() == (ray / name).read_bytes(), name
        else:
            a, b = json.loads((local / name).read_text()), json.loads((ray / name).read_text())
            for record in (a, b):
                validate_record(record)
                for entry in record["maps"]:
                    entry.pop("seconds")
            assert a == b, name


def test_ray_options_need_ray_and_a_reachable_cluster(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["validate", "--demo", "--methods", "gradient", "--resume", "--out", str(tmp_path)])
    assert (
        stop.value.code == 2 and "--workers, --threads and --resume go with --ray" in capsys.readouterr().err
    )
    code = main(
        [
            "validate",
            "--demo",
            "--methods",
            "gradient",
            "--no-faithfulness",
            "--ray",
            f"127.0.0.1:{free_port()}",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 1
    assert "error: no Ray cluster answers at 127.0.0.1:" in capsys.readouterr().err


def test_ray_is_an_optional_extra(monkeypatch):
    """Importing the engine, its command line and this module loads no Ray; a missing Ray is a plain error."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, saliency_core, saliency_core.cli, "
            "saliency_core.distributed; print('ray' in sys.modules)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.stdout.strip() == "False", probe.stderr
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    with pytest.raises(ValueError, match=r"--ray needs Ray, an optional extra: .*requirements-ray.txt"):
        with distributed.connected("auto"):
            pass
