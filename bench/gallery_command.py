"""The `gallery` command's rate on large labelled sets, in one process and with Ray workers.

    PYTHONPATH=$PWD python bench/gallery_command.py --out bench/results-gallery-command.json
    PYTHONPATH=$PWD python bench/gallery_command.py --only watermark --images 1000   # a quick look

Two sets, each written to a temporary folder first (not timed):
- watermark: N images (default 10,000) of the hand-built 64 px watermark scorer
  (tests/_watermark.py), gradient: the pipeline, store and thumbnail cost with a cheap model.
- demo: M pasted-object photos (default 1,000; saliency_core.evaluation.data), the demo model
  (EfficientNet-Lite0), gradient + Grad-CAM: the cost a user of the demo model meets.
Each set runs as `python -m saliency_core gallery --set ... --no-progress` in a fresh store, once
per worker count (`--workers 1`: one process, no Ray; 2: `--ray local --workers 2`, a private
cluster started by the command). Reported: the whole command's wall time (start-up included) and
images per second, with the load average at the start of each run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

DEMO_CLASSES = {"cat": "tiger cat", "espresso": "espresso", "motorcycle": "moped", "tripod": "tripod"}


def watermark_set(folder: Path, images: int) -> tuple[Path, Path]:
    """An ImageFolder of ``images`` watermark pictures (a third of the apples marked) and the
    scorer's model card."""
    from _watermark import write_model, write_set

    apples = images * 6 // 10
    write_set(folder / "set", apples=apples, marked=apples // 3, plums=images - apples)
    return folder / "set", write_model(folder / "model")


def demo_set(folder: Path, images: int) -> Path:
    """A CSV-labelled folder of ``images`` pasted-object photos, labelled with ImageNet classes."""
    from saliency_core.evaluation.data import pasted_objects

    root = folder / "pasted"
    root.mkdir(parents=True, exist_ok=True)
    rows = ["file,label"]
    for item in pasted_objects(images, seed=0).items:
        item.image().save(root / item.name)
        rows.append(f"{item.name},{DEMO_CLASSES[item.annotation.boxes[0].label]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def run(set_path: Path, model: str, methods: str, workers: int, store: Path) -> dict:
    """One command run in a fresh store: wall seconds, images per second, exit status."""
    command = [sys.executable, "-m", "saliency_core", "gallery", "--set", str(set_path), "--model", model]
    command += ["--methods", methods, "--store", str(store), "--no-progress"]
    if workers > 1:
        command += ["--ray", "local", "--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    load = os.getloadavg()[0]
    tick = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - tick
    tail = (done.stdout + done.stderr).strip().splitlines()[-6:]
    return {
        "workers": workers,
        "exit_status": done.returncode,
        "seconds": round(seconds, 1),
        "load_average_at_start": round(load, 2),
        "last_lines": tail,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="watermark set size")
    parser.add_argument("--demo-images", type=int, default=1_000, help="demo-model set size")
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--only", choices=("watermark", "demo"), help="run one set only")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    results = {"cpu": os.cpu_count(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sets = []
        if args.only in (None, "watermark"):
            folder, card = watermark_set(tmp / "watermark", args.images)
            sets.append(("watermark", folder, str(card), "gradient", args.images))
        if args.only in (None, "demo"):
            sets.append(
                (
                    "demo",
                    demo_set(tmp / "demo", args.demo_images),
                    "demo",
                    "gradient,gradcam",
                    args.demo_images,
                )
            )
        for name, folder, model, methods, images in sets:
            for workers in counts:
                row = run(folder, model, methods, workers, tmp / f"{name}-{workers}.sqlite")
                row.update(
                    set=name, images=images, methods=methods, images_per_s=round(images / row["seconds"], 2)
                )
                results["runs"].append(row)
                print(
                    f"{name}: {images} images, {methods}, {workers} worker(s): {row['seconds']} s, "
                    f"{row['images_per_s']} images/s (exit {row['exit_status']}, load "
                    f"{row['load_average_at_start']})",
                    flush=True,
                )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
