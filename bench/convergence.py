"""Passes SmoothGrad needs to settle, per noise-sampling scheme, against a many-sample reference.

    python bench/convergence.py                                   # the run in the README
    python bench/convergence.py --models demo --photos 1 --reference 32 --max-samples 32   # smoke run
    python bench/convergence.py --table bench/results-convergence.json --levels 0.6 0.7 0.8 0.9 0.95
                                                                  # the table again, other levels

For each model and photo: a reference map from ``--reference`` independent samples (its own
seed), then one run per scheme (independent, antithetic, quasi) up to ``--max-samples``, read
at fixed sample counts (8, 16, 24, ... growing by 1.25x, the checkpoints of ``until_settled``).
At each count it measures the displayed saliency (max |.| over channels) against the
reference: Spearman rank correlation and top-10 % overlap (metrics/similarity.py).

Prints:
- passes (network forward+backward passes = samples) to reach agreement 0.9 and 0.95 (or
  ``--levels``) with the reference, per scheme and model (the worst photo; "> N" if not
  reached by N);
- the gain of each scheme: how many independent samples give the agreement the scheme has at
  each count (interpolated on the independent curve), divided by the scheme's count; median
  over counts >= 32 and photos;
- the convergence readout checked: its estimate of the re-run agreement of the independent
  run at each count, against the measured agreement with the reference run's own first n
  samples (another seed: a real re-run).

The agreement with a finite reference is capped by the reference's own noise: its readout
(re-run agreement at ``--reference`` samples) is printed as the ceiling.
Writes everything as JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import torch

import saliency_core as sc
from saliency_core.engine.convergence import Readout
from saliency_core.engine.methods.smoothgrad import SAMPLING, checkpoints, smoothgrad
from saliency_core.engine.samples import sample_images
from saliency_core.evaluation.similarity import spearman, top_k_overlap

LEVELS = (0.9, 0.95)
REFERENCE_SEED, RUN_SEED = 1_000_003, 0
FIRST = 8  # first count read; also the chunk size, so every checkpoint ends a chunk


def load(name: str):
    """(network, crop -> input tensor) for ``demo`` or ``resnet50`` (torchvision, random weights:
    nothing is downloaded; ImageNet normalisation in front, as bench/run.py)."""
    if name == "demo":
        model = sc.load_model("demo")
        return model.network, model
    if name == "resnet50":
        import torchvision

        from saliency_core.engine.classifier import Normalize, channels_last, freeze

        torch.manual_seed(0)
        net = torchvision.models.resnet50(weights=None)
        network = channels_last(
            freeze(torch.nn.Sequential(Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), net))
        )
        return network, sc.load_model("demo")  # the demo's 224 px resize + centre crop
    raise SystemExit(f"unknown model {name!r}: use demo or resnet50")


class _Never(Readout):
    """A readout that records every checkpoint and never calls a map settled."""

    def __init__(self):
        super().__init__(threshold=2.0)
        self.history: dict[int, dict] = {}

    def check(self, quarters, halves, terms, what="samples"):
        out = super().check(quarters, halves, terms, what)
        self.history[int(terms)] = out[0]
        return out


def run(network, x, target, samples: int, sampling: str, seed: int, noise: float) -> tuple[dict, dict]:
    """Saliency (H, W) at every checkpoint up to ``samples`` and the readout there."""
    counts = set(checkpoints(FIRST, samples, True))
    maps: dict[int, torch.Tensor] = {}
    readout = _Never()

    def keep(done, total, running):
        if done in counts:
            maps[done] = running.abs().amax(1)[0].double()

    final = smoothgrad(
        network,
        x,
        target,
        samples=FIRST,
        noise=noise,
        seed=seed,
        sampling=sampling,
        until_settled=True,
        max_samples=samples,
        chunk_size=FIRST,
        preview=keep,
        readout=readout,
    )
    maps[samples] = final.abs().amax(1)[0].double()
    return maps, readout.history


def agreement(a: torch.Tensor, b: torch.Tensor) -> dict:
    a, b = a.numpy(), b.numpy()
    return {"spearman": spearman(a, b), "top10": top_k_overlap(a, b, 0.1)}


def passes_to(curve: dict[int, dict], measure: str, level: float) -> int | None:
    for n in sorted(curve):
        if curve[n][measure] >= level:
            return n
    return None


def equivalent_independent(curve: dict[int, dict], measure: str, value: float) -> float | None:
    """Independent samples giving ``value`` (log-linear interpolation on the independent curve)."""
    points = sorted(curve)
    for lo, hi in zip(points, points[1:]):
        a, b = curve[lo][measure], curve[hi][measure]
        if a <= value <= b and b > a:
            return math.exp(math.log(lo) + (value - a) / (b - a) * (math.log(hi) - math.log(lo)))
    if value <= curve[points[0]][measure]:
        return float(points[0]) if value == curve[points[0]][measure] else None
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["demo", "resnet50"])
    p.add_argument(
        "--photos", type=int, default=2, help="the first N bundled photos (saliency_core/engine/samples.py)"
    )
    p.add_argument("--resnet50-photos", type=int, default=1, help="photos for resnet50 (costs ~6x the demo)")
    p.add_argument("--reference", type=int, default=1000, help="samples of the reference map")
    p.add_argument("--max-samples", type=int, default=384, help="most samples per scheme")
    p.add_argument("--resnet50-max-samples", type=int, default=192)
    p.add_argument("--noise", type=float, default=0.15)
    p.add_argument("--schemes", nargs="+", default=list(SAMPLING), choices=SAMPLING)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    p.add_argument("--levels", nargs="+", type=float, default=list(LEVELS), help="agreements to reach")
    p.add_argument(
        "--table", metavar="JSON", help="print the tables of an earlier run's JSON; compute nothing"
    )
    p.add_argument("--out", default="bench/results-convergence.json")
    args = p.parse_args(argv)
    if args.table:
        with open(args.table) as f:
            runs = json.load(f)["runs"]
        schemes = list(runs[0]["schemes"])
        print_table(table(runs, schemes, args.levels), runs, args.levels)
        return 0
    torch.set_num_threads(args.threads)
    photos = list(sample_images().items())
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "runs": [],
    }
    started = time.perf_counter()
    for name in args.models:
        network, prep = load(name)
        count = args.resnet50_photos if name == "resnet50" else args.photos
        top = args.resnet50_max_samples if name == "resnet50" else args.max_samples
        for label, path in photos[:count]:
            x = prep.preprocess(path)
            with torch.no_grad():
                target = torch.tensor([int(network(x).argmax())])
            t0 = time.perf_counter()
            ref_maps, ref_readout = run(
                network, x, target, args.reference, "independent", REFERENCE_SEED, args.noise
            )
            reference = ref_maps[args.reference]
            entry = {
                "model": name,
                "photo": label,
                "target": int(target),
                "reference_samples": args.reference,
                "reference_readout": ref_readout[args.reference],
                "schemes": {},
            }
            print(
                f"{name} · {label}: reference {args.reference} samples in {time.perf_counter() - t0:.0f} s; "
                "its own re-run agreement (readout) Spearman "
                f"{ref_readout[args.reference]['rerun_spearman']:.3f}, top-10 % "
                f"{ref_readout[args.reference]['rerun_top10']:.3f}",
                flush=True,
            )
            for scheme in args.schemes:
                t0 = time.perf_counter()
                maps, readout = run(network, x, target, top, scheme, RUN_SEED, args.noise)
                curve = {n: agreement(m, reference) for n, m in sorted(maps.items())}
                rows = {
                    n: {
                        **curve[n],
                        "readout_rerun_spearman": readout[n]["rerun_spearman"],
                        "readout_rerun_top10": readout[n]["rerun_top10"],
                        **(
                            {"measured_rerun_" + k: v for k, v in agreement(maps[n], ref_maps[n]).items()}
                            if scheme == "independent" and n in ref_maps
                            else {}
                        ),
                    }
                    for n in curve
                }
                entry["schemes"][scheme] = {str(n): r for n, r in rows.items()}
                print(
                    f"  {scheme:11} {time.perf_counter() - t0:5.0f} s  "
                    + "  ".join(
                        f"n={n}: {r['spearman']:.3f}/{r['top10']:.3f}"
                        for n, r in rows.items()
                        if n in (32, 96, 192, 384, 752, 1000)
                    ),
                    flush=True,
                )
            result["runs"].append(entry)
    result["table"] = table(result["runs"], args.schemes, args.levels)
    result["seconds"] = round(time.perf_counter() - started)
    print_table(result["table"], result["runs"], args.levels)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out} ({result['seconds']} s)")
    return 0


def _curve(run: dict, scheme: str) -> dict[int, dict]:
    return {int(n): r for n, r in run["schemes"][scheme].items()}


def table(runs: list[dict], schemes: list[str], levels=LEVELS) -> list[dict]:
    """One row per (model, scheme): passes to each level (worst photo), gain vs independent."""
    rows = []
    for model in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == model]
        for scheme in schemes:
            row = {
                "model": model,
                "scheme": scheme,
                "photos": len(mine),
                "max_samples": max(max(_curve(r, scheme)) for r in mine),
            }
            for measure in ("spearman", "top10"):
                for level in levels:
                    reached = [passes_to(_curve(r, scheme), measure, level) for r in mine]
                    row[f"passes_{measure}_{level}"] = None if None in reached else max(reached)
                gains = []
                if "independent" in schemes:
                    for r in mine:
                        ind, own = _curve(r, "independent"), _curve(r, scheme)
                        for n, v in own.items():
                            eq = equivalent_independent(ind, measure, v[measure]) if n >= 32 else None
                            if eq is not None:
                                gains.append(eq / n)
                row[f"gain_{measure}"] = round(statistics.median(gains), 3) if gains else None
            rows.append(row)
    return rows


def print_table(rows: list[dict], runs: list[dict], levels=LEVELS) -> None:
    def cell(row, key):
        v = row[key]
        return f"{v:>8}" if v is not None else f"{'>' + str(row['max_samples']):>8}"

    print(
        "\npasses to reach agreement with the reference (Spearman / top-10 % overlap), worst photo;"
        " gain = independent samples for the same agreement / samples (median, n >= 32)"
    )
    print(
        f"{'model':9} {'scheme':11} "
        + " ".join(f"{'sp ' + str(v):>8}" for v in levels)
        + " "
        + " ".join(f"{'top ' + str(v):>8}" for v in levels)
        + f"  {'gain sp':>7} {'gain top':>8}"
    )
    for row in rows:

        def gain(k: str, row: dict = row) -> str:
            return f"{row[k]:.2f}" if row[k] is not None else "  n/a"

        print(
            f"{row['model']:9} {row['scheme']:11} "
            + " ".join(cell(row, f"passes_spearman_{v}") for v in levels)
            + " "
            + " ".join(cell(row, f"passes_top10_{v}") for v in levels)
            + f"  {gain('gain_spearman'):>7} {gain('gain_top10'):>8}"
        )
    print("\nreference ceiling (its readout: re-run agreement at its own count):")
    for r in runs:
        print(
            f"  {r['model']:9} {r['photo']:34} Spearman {r['reference_readout']['rerun_spearman']:.3f}  "
            f"top-10 % {r['reference_readout']['rerun_top10']:.3f}"
        )
    print(
        "\nreadout check, independent draws: estimated re-run agreement vs measured (against the "
        "reference run's first n samples, another seed)"
    )
    print(
        f"  {'model':9} {'photo':34} {'n':>5}  {'sp est':>6} {'sp meas':>7}  {'top est':>7} {'top meas':>8}"
    )
    for r in runs:
        if "independent" not in r["schemes"]:
            continue
        for n, v in sorted(_curve(r, "independent").items()):
            if "measured_rerun_spearman" in v:
                print(
                    f"  {r['model']:9} {r['photo']:34} {n:5d}  {v['readout_rerun_spearman']:6.3f} "
                    f"{v['measured_rerun_spearman']:7.3f}  {v['readout_rerun_top10']:7.3f} "
                    f"{v['measured_rerun_top10']:8.3f}"
                )


if __name__ == "__main__":
    sys.exit(main())
