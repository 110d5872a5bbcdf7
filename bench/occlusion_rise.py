"""Occlusion and RISE at their defaults on one image on this CPU, against Captum's Occlusion and a
straightforward RISE loop, in one process.

    python bench/occlusion_rise.py          # defaults, writes bench/occlusion_rise-cpu.json
    python bench/occlusion_rise.py --masks 64 --convergence 0 --ppe 16 --out /tmp/o.json   # smoke run

Occlusion: ours through ``sc.explain`` (window 32, stride 16, grey), with and without the
incremental pass, against Captum's ``Occlusion`` with the same window, stride and baseline at
each ``perturbations_per_eval`` in --ppe, on the network exactly as ours runs it (the fairer
reference: the same memory layout). The ratio is Captum's best time / ours (> 1: we are faster).

RISE: ours at its defaults (1000 masks) against a plain loop written from the paper (masks drawn
with NumPy and resized with scikit-image up front, batches of 32 through the network as written,
probabilities times masks summed), with the same number of masks. Convergence: two seeds with
--convergence masks each; the maps after 250, 500, 1000, ... masks are compared between seeds
(Spearman rank correlation and relative difference): how much of the map is still noise.

The machine is shared: the load average before and after is recorded; compare ratios, not times,
across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

import saliency_core as sc
from saliency_core.engine._fast import switched
from saliency_core.engine.samples import sample_images


def best_of(fn, repeats: int) -> tuple[float, object]:
    """Fastest of ``repeats`` timed calls (after one warm-up call) and the last result."""
    fn()
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def rel(a, b) -> float:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).norm() / b.norm())


def spearman(a, b) -> float:
    ra = torch.as_tensor(a).flatten().double().argsort().argsort().double()
    rb = torch.as_tensor(b).flatten().double().argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def bench_occlusion(model, path: str, args) -> list[dict]:
    from captum.attr import Occlusion

    d = sc.METHODS["occlusion"].defaults
    window, stride, fill = d["window"], d["stride"], d["fill"]
    assert fill == "grey"
    x = model.preprocess(path)
    target = model.predict(x)[0][0]
    ours_s, exp = best_of(lambda: sc.explain(model, path, method="occlusion", target=target), args.repeats)
    with switched(incremental=False):
        plain_s, plain = best_of(
            lambda: sc.explain(model, path, method="occlusion", target=target), args.repeats
        )
    captum = {}
    for ppe in args.ppe:

        def run(ppe=ppe):
            return Occlusion(model.network).attribute(
                x.clone(),
                sliding_window_shapes=(3, window, window),
                strides=(3, stride, stride),
                baselines=0.5,
                target=target,
                perturbations_per_eval=ppe,
            )

        captum[ppe] = best_of(run, args.repeats)
    best_ppe = min(captum, key=lambda k: captum[k][0])
    reference = captum[best_ppe][1][0, :1]
    ours = torch.from_numpy(exp.attribution)
    squares = len(range(0, 224 - window + 1, stride)) ** 2
    rows = [
        {
            "task": f"occlusion, defaults (window {window}, stride {stride}, grey; {squares} squares), 1 "
            "image",
            "ours_s": ours_s,
            "captum_s": {str(k): v[0] for k, v in captum.items()},
            "captum_best_ppe": best_ppe,
            "speedup_vs_captum_best": captum[best_ppe][0] / ours_s,
            "map_rel_error_vs_captum": rel(ours, reference),
        },
        {
            "task": "occlusion, ours with the incremental pass off (plain batches of 32)",
            "ours_s": plain_s,
            "speedup_vs_captum_best": captum[best_ppe][0] / plain_s,
            "map_rel_error_vs_captum": rel(torch.from_numpy(plain.attribution), reference),
            "incremental_gain": plain_s / ours_s,
        },
    ]
    return rows


def reference_rise(
    network, x: torch.Tensor, target: int, masks: int, cell: int, keep: float, seed: int, batch: int = 32
) -> torch.Tensor:
    """RISE as the paper's description reads, written plainly: all masks up front (NumPy grid,
    scikit-image bilinear resize, random crop), then batches through the network, Eq. 6."""
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    h, w = x.shape[-2:]
    s = int(np.ceil(h / cell))
    up = (s + 1) * cell
    grid = (rng.random((masks, s, s)) < keep).astype(np.float32)
    all_masks = np.empty((masks, h, w), np.float32)
    for i in range(masks):
        dy, dx = rng.integers(0, cell, 2)
        all_masks[i] = resize(grid[i], (up, up), order=1, mode="reflect", anti_aliasing=False)[
            dy : dy + h, dx : dx + w
        ]
    m = torch.from_numpy(all_masks)[:, None]
    probs = []
    with torch.no_grad():
        for start in range(0, masks, batch):
            probs.append(network(x * m[start : start + batch]).softmax(1)[:, target])
    p = torch.cat(probs)
    return (p[:, None] * m[:, 0].flatten(1)).sum(0).view(1, 1, h, w) / (masks * keep)


def bench_rise(model, path: str, args) -> tuple[list[dict], dict]:
    d = sc.METHODS["rise"].defaults
    masks = args.masks or d["masks"]
    x = model.preprocess(path)
    target = model.predict(x)[0][0]
    sc.explain(
        model, path, method="rise", target=target, masks=8
    )  # warm-up: BatchNorm folding, once per model
    reference_rise(model.network, x, target, 8, d["cell"], d["keep"], seed=0)
    start = time.perf_counter()
    exp = sc.explain(model, path, method="rise", target=target, masks=masks)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    ref = reference_rise(model.network, x, target, masks, d["cell"], d["keep"], seed=0)
    ref_s = time.perf_counter() - start
    rows = [
        {
            "task": f"RISE, defaults ({masks} masks, cell {d['cell']}, keep {d['keep']}, {d['fill']} fill), "
            "1 image",
            "ours_s": ours_s,
            "reference_loop_s": ref_s,
            "speedup_vs_reference_loop": ref_s / ours_s,
            "spearman_vs_reference_loop (other random masks)": spearman(exp.saliency, ref[0, 0]),
            "ms_per_mask": 1000 * ours_s / masks,
        }
    ]
    convergence = {}
    if args.convergence:
        checkpoints = [n for n in (250, 500, 1000, 2000, 4000, 8000) if n < args.convergence] + [
            args.convergence
        ]
        runs = []
        for seed in (1, 2):
            seen = {}
            final = sc.explain(
                model,
                path,
                method="rise",
                target=target,
                masks=args.convergence,
                seed=seed,
                chunk_size=25 if all(n % 25 == 0 for n in checkpoints) else None,
                preview=lambda done, total, s, seen=seen: seen.__setitem__(done, s.copy()),
            )
            seen[args.convergence] = final.saliency
            runs.append(seen)
        for n in checkpoints:
            if n in runs[0] and n in runs[1]:
                convergence[n] = {
                    "seed_to_seed_spearman": spearman(runs[0][n], runs[1][n]),
                    "seed_to_seed_rel_difference": rel(runs[0][n], runs[1][n]),
                }
    return rows, convergence


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2, help="timed occlusion calls per setting (best kept)")
    p.add_argument(
        "--ppe",
        type=int,
        nargs="+",
        default=[8, 16, 32, 64],
        help="Captum perturbations_per_eval values tried",
    )
    p.add_argument("--masks", type=int, default=None, help="RISE masks (default: the method's)")
    p.add_argument(
        "--convergence", type=int, default=2000, help="masks per seed for the convergence table (0: skip)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for both sides (default 1: on a shared 2-core machine two threads "
        "slow down badly when another process runs)",
    )
    p.add_argument("--out", default="bench/occlusion_rise-cpu.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = sc.load_model("demo", device="cpu")
    path = sample_images()["Cat (chelsea.png)"]
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows = bench_occlusion(model, path, args)
    rise_rows, convergence = bench_rise(model, path, args)
    rows += rise_rows
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "versions": {
            "torch": torch.__version__,
            "captum": __import__("captum").__version__,
            "saliency_core": sc.__version__,
        },
        "image": "chelsea.png (demo model, EfficientNet-Lite0)",
        "command": " ".join(["python", *sys.argv]),
        "rows": rows,
        "rise_convergence": convergence,
        "seconds": time.perf_counter() - started,
    }
    for row in rows:
        print(json.dumps(row))
    for n, c in convergence.items():
        print(
            f"RISE {n} masks: seed-to-seed Spearman {c['seed_to_seed_spearman']:.3f}, "
            f"relative difference {c['seed_to_seed_rel_difference']:.3f}"
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
