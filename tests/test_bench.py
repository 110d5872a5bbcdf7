"""The benchmark runs end to end with a tiny setting (no timing assertions: timings are for bench/)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_tiny_run(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "bench/run.py", "--models", "demo", "--devices", "cpu",
                           "--samples", "2", "--steps", "2", "--repeats", "1", "--batch", "2",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = json.loads(out.read_text())
    tasks = [r["task"] for r in table["rows"] if "ours with" not in r["task"]]
    assert tasks == ["gradient, 1 image", "SmoothGrad-2, 1 image", "Integrated Gradients-2, 1 image",
                     "Grad-CAM, 1 image", "SmoothGrad-2, batch of 2 (images/s)"]
    for row in table["rows"]:
        assert row.get("speedup_vs_captum_best", 1) > 0 and row.get("ours_s", 1) > 0
    assert sum("ours with" in r["task"] for r in table["rows"]) == 4
    assert "SmoothGrad-2, 1 image" in proc.stdout
