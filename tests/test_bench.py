"""The benchmark runs end to end with a tiny setting (no timing assertions: timings are for bench/)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_tiny_run(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "bench/run.py",
            "--models",
            "demo",
            "--devices",
            "cpu",
            "--samples",
            "2",
            "--steps",
            "2",
            "--repeats",
            "1",
            "--batch",
            "2",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = json.loads(out.read_text())
    tasks = [r["task"] for r in table["rows"] if "ours with" not in r["task"]]
    assert tasks == [
        "gradient, 1 image",
        "SmoothGrad-2, 1 image",
        "SmoothGrad-2, 1 image, captum in its own process",
        "Integrated Gradients-2, 1 image",
        "Grad-CAM, 1 image",
        "SmoothGrad-2, batch of 2 (images/s)",
    ]
    for row in table["rows"]:
        assert row.get("speedup_vs_captum_best", 1) > 0 and row.get("ours_s", 1) > 0
    ablations = [r for r in table["rows"] if "ours with" in r["task"]]
    assert [r["task"].split("ours with ")[1] for r in ablations] == [
        "seed 1 (map only)",
        "default layout",
        "no BatchNorm folding",
        "chunks of 5",
        "chunks of 25",
        "one pass of all samples",
    ]
    for row in ablations:  # every variant says how far its map is from the default one
        assert 0 <= row["map_rel_error"] and -1 <= row["map_spearman"] <= 1
    assert ablations[-1]["map_rel_error"] < 1e-6  # chunking never changes the map
    for row in table["rows"][:5]:
        if "map_rel_error_vs_captum" in row:
            assert row["map_rel_error_vs_captum"] < 5e-2, row
    assert "SmoothGrad-2, 1 image" in proc.stdout


def test_convergence_bench_tiny_run(tmp_path):
    out = tmp_path / "convergence.json"
    proc = subprocess.run(
        [
            sys.executable,
            "bench/convergence.py",
            "--models",
            "demo",
            "--photos",
            "1",
            "--reference",
            "16",
            "--max-samples",
            "16",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [(r["model"], r["scheme"]) for r in result["table"]] == [
        ("demo", "independent"),
        ("demo", "antithetic"),
        ("demo", "quasi"),
    ]
    curve = result["runs"][0]["schemes"]["independent"]
    assert sorted(int(n) for n in curve) == [8, 16]
    for row in curve.values():  # agreement with the reference, the readout and a measured re-run
        assert -1 <= row["spearman"] <= 1 and 0 <= row["top10"] <= 1
        assert 0 <= row["measured_rerun_top10"] <= 1 and -1 <= row["readout_rerun_spearman"] <= 1
    again = subprocess.run(
        [sys.executable, "bench/convergence.py", "--table", str(out), "--levels", "0.1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and "sp 0.1" in again.stdout, again.stderr[-2000:]


def test_page_bench_runs_the_pages_defaults(tmp_path):
    """bench/pages.py times the engine calls the pages make, with the defaults the pages import."""
    out = tmp_path / "pages.json"
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [
            sys.executable,
            "bench/pages.py",
            "--pages",
            "explain,review-next",
            "--repeats",
            "1",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["page"] for r in rows] == ["explain", "review-next"]
    assert all(r["median_wall_s"] > 0 and r["median_cpu_s"] > 0 and r["profile"] == "demo" for r in rows)
    assert (
        "median wall s" in proc.stdout and f"engine from {os.path.join(ROOT, 'saliency_core')}" in proc.stdout
    )
    import pages._defaults as defaults

    settings = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runpy, json; g = runpy.run_path('bench/pages.py', "
            "run_name='bench'); print(json.dumps([g['_settings'](p) for p in ('demo', 'full')]))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    demo, full = json.loads(settings.stdout.strip().splitlines()[-1])
    assert demo["validate_step"] == defaults.VALIDATE_STEPS[defaults.VALIDATE_STEP]
    assert demo["stability_variants"] == defaults.STABILITY_VARIANTS
    assert demo["sanity_map_steps"] == defaults.SANITY_MAP_STEPS
    assert full["validate_step"] == defaults.VALIDATE_STEPS[defaults.VALIDATE_FULL_STEP]
    assert full["stability_variants"] == defaults.STABILITY_FULL_VARIANTS and full["sanity_map_steps"] is None


def test_reproducible_detail_bench_smoke(tmp_path):
    """bench/reproducible_detail.py end to end on one photo at 8 samples: estimated and measured
    agreement for every level of the ladder, and the ladder's share of the run time."""
    out = tmp_path / "detail.json"
    proc = subprocess.run(
        [sys.executable, "bench/reproducible_detail.py", "--photos", "1", "--samples", "8", "--timing", "1"]
        + ["--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = json.loads(out.read_text())
    (run,) = table["runs"]
    assert run["samples"] == 8 and [lv["px"] for lv in run["levels"]] == [0, 1, 2, 4, 8, 16]
    for level in run["levels"]:
        assert -1 <= level["estimated_spearman"] <= 1 and -1 <= level["measured_spearman"] <= 1
    assert 0 < table["timing"]["median_share"] < 1 and "median share" in proc.stdout


def test_gallery_command_bench_smoke(tmp_path):
    """bench/gallery_command.py end to end on 20 watermark pictures, one process: the command's
    whole run is timed and every image gets a result."""
    out = tmp_path / "gallery.json"
    proc = subprocess.run(
        [sys.executable, "bench/gallery_command.py", "--only", "watermark", "--images", "20"]
        + ["--workers", "1", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = json.loads(out.read_text())["runs"]
    assert run["exit_status"] == 0 and run["images"] == 20 and run["images_per_s"] > 0
    assert any("20 with a result" in line for line in run["last_lines"]), run["last_lines"]
