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
    assert tasks == ["gradient, 1 image", "SmoothGrad-2, 1 image", "SmoothGrad-2, 1 image, captum in its own process",
                     "Integrated Gradients-2, 1 image",
                     "Grad-CAM, 1 image", "SmoothGrad-2, batch of 2 (images/s)"]
    for row in table["rows"]:
        assert row.get("speedup_vs_captum_best", 1) > 0 and row.get("ours_s", 1) > 0
    ablations = [r for r in table["rows"] if "ours with" in r["task"]]
    assert [r["task"].split("ours with ")[1] for r in ablations] == [
        "seed 1 (map only)", "default layout", "no BatchNorm folding", "chunks of 5", "chunks of 25",
        "one pass of all samples"]
    for row in ablations:  # every variant says how far its map is from the default one
        assert 0 <= row["map_rel_error"] and -1 <= row["map_spearman"] <= 1
    assert ablations[-1]["map_rel_error"] < 1e-6  # chunking never changes the map
    for row in table["rows"][:5]:
        if "map_rel_error_vs_captum" in row:
            assert row["map_rel_error_vs_captum"] < 5e-2, row
    assert "SmoothGrad-2, 1 image" in proc.stdout


def test_convergence_bench_tiny_run(tmp_path):
    out = tmp_path / "convergence.json"
    proc = subprocess.run([sys.executable, "bench/convergence.py", "--models", "demo", "--photos", "1",
                           "--reference", "16", "--max-samples", "16", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [(r["model"], r["scheme"]) for r in result["table"]] == [
        ("demo", "independent"), ("demo", "antithetic"), ("demo", "quasi")]
    curve = result["runs"][0]["schemes"]["independent"]
    assert sorted(int(n) for n in curve) == [8, 16]
    for row in curve.values():  # agreement with the reference, the readout and a measured re-run
        assert -1 <= row["spearman"] <= 1 and 0 <= row["top10"] <= 1
        assert 0 <= row["measured_rerun_top10"] <= 1 and -1 <= row["readout_rerun_spearman"] <= 1
    again = subprocess.run([sys.executable, "bench/convergence.py", "--table", str(out), "--levels", "0.1"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "sp 0.1" in again.stdout, again.stderr[-2000:]
