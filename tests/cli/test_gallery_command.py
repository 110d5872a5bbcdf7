"""``python -m saliency_core gallery``: fills the Gallery's result store, resumes a killed run
computing only what is missing, shows progress and a summary, exits non-zero when images failed;
the page then opens the stored results without computing anything."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys

import pytest
import skimage

from tests._watermark import write_model, write_set

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}


def _command(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "saliency_core", "gallery", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _count(path, table: str = "predictions") -> int:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.fixture(scope="module")
def watermark(tmp_path_factory):
    base = tmp_path_factory.mktemp("cmd")
    truth = write_set(base / "set")
    return base, write_model(base / "model"), truth


def test_the_command_shows_the_mapping_progress_summary_and_reasons(watermark, tmp_path):
    base, card, truth = watermark
    store = tmp_path / "g.sqlite"
    done = _command(
        "--set", str(base / "set"), "--model", str(card), "--methods", "gradient",
        "--store", str(store), "--annotations", str(truth["boxes"]),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    err = done.stderr
    # the resolved mapping comes before the run
    assert re.search(r"apple\s+12 image\(s\)\s+-> apple \(#0\)\s+\[exact class name\]", err)
    assert err.index("labels -> model classes") < err.index("100%")
    # a tqdm bar with rate (images/s or s/image) and time left
    assert re.search(r"gallery: 100%\|.*\| 18/18 \[\d\d:\d\d<00:00, +[\d.]+ *(image/s|s/image)", err)
    assert "images: 18 in the set · 18 with a result (18 computed now, 0 stored before)" in err
    assert "accuracy: 94.4% (17 of 18)" in err and "mistakes: 1" in err and "unreadable: 0" in err
    assert "right answer, looked elsewhere (5): " + ", ".join(truth["marked_apples"]) in err
    assert _count(store) == 18
    # again: nothing is computed
    again = _command(
        "--set", str(base / "set"), "--model", str(card), "--methods", "gradient", "--store", str(store)
    )
    assert again.returncode == 0 and "(0 computed now, 18 stored before)" in again.stderr


def test_exit_status_says_whether_images_failed(watermark, tmp_path):
    base, card, _ = watermark
    broken = tmp_path / "set"
    shutil.copytree(base / "set", broken)
    (broken / "apple" / "broken.png").write_bytes(b"not a picture")
    done = _command(
        "--set",
        str(broken),
        "--model",
        str(card),
        "--methods",
        "gradient",
        "--store",
        str(tmp_path / "g.sqlite"),
    )
    assert done.returncode == 1
    assert "unreadable: 1\n  apple/broken.png: " in done.stderr
    # a usage error is 2, a missing set 1, both in one line
    assert _command("--set", str(broken), "--methods", "nonsense").returncode == 2
    missing = _command("--set", str(tmp_path / "nowhere"), "--model", str(card), "--methods", "gradient")
    assert missing.returncode == 1 and "no such folder or file" in missing.stderr
    # --show-mapping computes nothing
    shown = _command(
        "--set",
        str(base / "set"),
        "--model",
        str(card),
        "--methods",
        "gradient",
        "--store",
        str(tmp_path / "m.sqlite"),
        "--show-mapping",
    )
    assert shown.returncode == 0 and "plum" in shown.stderr and _count(tmp_path / "m.sqlite") == 0


def test_a_killed_command_resumes_and_computes_only_what_is_missing(tmp_path):
    _, card, _ = tmp_path / "x", write_model(tmp_path / "model"), None
    write_set(tmp_path / "set", apples=150, marked=20, plums=150)
    store = tmp_path / "g.sqlite"
    args = [
        "--set",
        str(tmp_path / "set"),
        "--model",
        str(card),
        "--methods",
        "gradient",
        "--store",
        str(store),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "saliency_core", "gallery", *args, "--no-progress"],
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("progress:") and "images/s" in line:  # 10 % or more is stored
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, lines[-5:]
    before = _count(store)
    assert 30 <= before < 300
    resumed = _command(*args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"({300 - before} computed now, {before} stored before)" in resumed.stderr
    assert _count(store) == 300 and _count(store, "maps") == 300


def test_the_page_opens_what_the_command_stored_without_computing(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from saliency_core import gallery

    folder = tmp_path / "sets" / "photos"
    data = os.path.join(os.path.dirname(skimage.__file__), "data")
    photos = [
        ("tabby/chelsea.png", "chelsea.png"),
        ("espresso/coffee.png", "coffee.png"),
        ("tripod/camera.png", "camera.png"),
        ("analog_clock/clock.png", "clock_motion.png"),
    ]
    for rel, photo in photos:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(data, photo), folder / rel)
    store = tmp_path / "data" / "gallery.sqlite"
    done = _command("--set", str(folder), "--methods", "gradcam,gradient", "--store", str(store), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    accuracy = re.search(r"accuracy: [\d.]+% \((\d+) of 4\)", done.stderr)
    mistakes = int(re.search(r"mistakes: (\d+)", done.stderr).group(1))
    assert accuracy and _count(store) == 4

    monkeypatch.setenv("SALIENCY_DB", str(tmp_path / "data" / "reviews.sqlite"))
    monkeypatch.setenv("SALIENCY_GALLERY_DIR", str(tmp_path / "sets"))
    for name in ("DATABASE_URL", "SALIENCY_GALLERY_DB", "SALIENCY_REVIEW_DIR", "SALIENCY_RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError("the page computed a map the command had stored")

    monkeypatch.setattr(gallery, "explain_images", refuse)
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300).run()
    at = at.switch_page("pages/gallery.py").run()
    at.radio(key="go_source").set_value("Server folder")
    at.selectbox(key="go_folder").set_value("photos")
    next(b for b in at.button if b.label == "Open and compute").click()
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    metric = {m.label: m.value for m in at.metric}
    assert metric["Images with a result"] == "4 of 4"
    assert metric["Mistakes"] == str(mistakes)
    assert "Last run: 0 images computed" in " ".join(c.value for c in at.caption)
    assert _count(store) == 4


def test_a_csv_set_and_a_mapping_file(watermark, tmp_path):
    base, card, _ = watermark
    shutil.copytree(base / "set", tmp_path / "set")
    table = tmp_path / "set" / "train.csv"
    table.write_text("file,label\napple/apple_05.png,FRUIT\nplum/plum_01.png,plum\n")
    mapping = tmp_path / "map.csv"
    mapping.write_text("label,class\nFRUIT,apple\n")
    args = ["--set", str(table), "--model", str(card), "--methods", "gradient", "--show-mapping"]
    unmapped = _command(*args)
    assert unmapped.returncode == 0
    assert "refused: label 'FRUIT': names no class of this model" in unmapped.stderr
    mapped = _command(*args, "--labels-map", str(mapping))
    assert mapped.returncode == 0, mapped.stderr[-2000:]
    assert re.search(r"FRUIT\s+1 image\(s\)\s+-> apple \(#0\)\s+\[mapping file\]", mapped.stderr)
    assert re.search(r"plum\s+1 image\(s\)\s+-> plum \(#1\)", mapped.stderr)
