"""Reproducible detail: the convergence readout's estimate per detail level against a real re-run.

    python bench/reproducible_detail.py --out bench/results-reproducible-detail.json   # the README's run
    python bench/reproducible_detail.py --photos 1 --samples 8 --timing 1 --out /tmp/x.json   # smoke run

For each bundled photo (saliency_core/engine/samples.py) and sample count: SmoothGrad on the
demo model with seed 0 (its readout estimates the re-run agreement at each level of the detail
ladder, engine/detail.py) and with seed 1 (a real re-run); both maps are blurred at each level
and compared (Spearman rank correlation and the overlap of the strongest 10 % of pixels, the
readout's measures). Prints, per photo and count, "estimated / measured" per level, and the
reproducible detail the readout reports with the agreement measured there.

Timing: SmoothGrad-50 on chelsea.png, ``--timing`` runs, with the time spent on the ladder's
blurred levels (everything the readout does beyond the raw pixels) measured inside each run;
prints the median share. One torch thread (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

import saliency_core as sc
from saliency_core.engine import convergence, detail
from saliency_core.engine.samples import sample_images

SAMPLES = (16, 50, 200)


def measured(a, b, levels) -> list[dict]:
    """Spearman and top-10 % overlap of two (H, W) maps blurred at each level."""
    x, y = torch.from_numpy(a)[None], torch.from_numpy(b)[None]
    rows = []
    for px in levels:
        sx, sy = detail.smooth_tensor(x, px), detail.smooth_tensor(y, px)
        rows.append(
            {
                "px": px,
                "spearman": round(convergence.spearman(sx, sy).item(), 4),
                "top10": round(convergence.top_overlap(sx, sy).item(), 4),
            }
        )
    return rows


def one(model, label: str, path: str, samples: int) -> dict:
    first = sc.explain(model, path, "smoothgrad", samples=samples, seed=0)
    other = sc.explain(model, path, "smoothgrad", samples=samples, seed=1)
    readout = first.diagnostics["convergence"]
    truth = measured(first.saliency, other.saliency, [row["px"] for row in readout["levels"]])
    levels = [
        {
            "px": est["px"],
            "estimated_spearman": est["rerun_spearman"],
            "measured_spearman": true["spearman"],
            "estimated_top10": est["rerun_top10"],
            "measured_top10": true["top10"],
            "settled": est["settled"],
        }
        for est, true in zip(readout["levels"], truth)
    ]
    return {
        "photo": label,
        "samples": samples,
        "reproducible_px": readout["reproducible_px"],
        "verdict": readout["verdict"],
        "levels": levels,
    }


def timing(model, path: str, runs: int) -> dict:
    """Seconds of SmoothGrad-50 and of the ladder's blurred levels inside it."""
    spent: list[float] = []
    plain = convergence.level_agreements

    def timed(maps, px):
        start = time.perf_counter()
        out = plain(maps, px)
        if px > 0:
            spent.append(time.perf_counter() - start)
        return out

    convergence.level_agreements = timed
    totals, ladder = [], []
    try:
        for seed in range(runs):
            spent.clear()
            start = time.perf_counter()
            sc.explain(model, path, "smoothgrad", samples=50, seed=seed)
            totals.append(time.perf_counter() - start)
            ladder.append(sum(spent))
    finally:
        convergence.level_agreements = plain
    shares = [t_l / t for t_l, t in zip(ladder, totals)]
    return {
        "smoothgrad50_s": [round(t, 3) for t in totals],
        "ladder_s": [round(t, 4) for t in ladder],
        "median_share": round(statistics.median(shares), 4),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=None, help="the first N bundled photos (default all)")
    p.add_argument("--only", nargs="+", default=None, help="only the photos whose file name is given")
    p.add_argument("--samples", type=int, nargs="+", default=list(SAMPLES))
    p.add_argument("--timing", type=int, default=5, help="SmoothGrad-50 runs timed (0: none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = sc.load_model("demo")
    photos = list(sample_images().items())[: args.photos]
    if args.only:
        photos = [(label, path) for label, path in photos if any(name in label for name in args.only)]
    if not photos:
        raise SystemExit("no bundled photos (scikit-image is not installed)")
    runs = []
    result = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads},
        "settings": {"model": "demo", "noise": 0.15, "seeds": [0, 1], "samples": args.samples},
        "what": "per level: estimated (readout of seed 0) and measured (seed 0 vs seed 1) Spearman and "
        "top-10 % overlap of the saliency blurred by a Gaussian of sigma px",
        "runs": runs,
    }
    for label, path in photos:
        for n in args.samples:
            row = one(model, label, path, n)
            runs.append(row)
            if args.out:  # written after every run, so a long run interrupted keeps what it measured
                with open(args.out, "w") as f:
                    json.dump(result, f, indent=2)
            cells = "  ".join(
                f"{lv['px']:g}px {lv['estimated_spearman']:.2f}/{lv['measured_spearman']:.2f} "
                f"{lv['estimated_top10']:.2f}/{lv['measured_top10']:.2f}"
                for lv in row["levels"]
            )
            print(f"{label[:24]:<24} n={n:<4} reproducible {row['reproducible_px']}  {cells}", flush=True)
    if args.timing:
        result["timing"] = timing(model, photos[0][1], args.timing)
        t = result["timing"]
        print(
            f"SmoothGrad-50 on {photos[0][0]}: {statistics.median(t['smoothgrad50_s']):.2f} s, ladder "
            f"{statistics.median(t['ladder_s']):.3f} s, median share {t['median_share']:.1%}",
            flush=True,
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
