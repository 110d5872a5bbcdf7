"""Where SmoothGrad-50's time goes on a GPU: the kernels taking the most device time, for
ours (CUDA graphs off so kernels are visible) and Captum's NoiseTunnel, on ResNet-50.

    PYTHONPATH=. python bench/profile_gpu.py [--model resnet50|demo] [--rows 12]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench

import saliency_core as sc
from saliency_core.engine._fast import switched


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet50")
    p.add_argument("--rows", type=int, default=12)
    p.add_argument("--samples", type=int, default=50)
    args = p.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    network, user, _, x = bench.load(args.model, device)
    from captum.attr import NoiseTunnel, Saliency

    t = torch.tensor([int(network(x).argmax())], device=device)
    nt = NoiseTunnel(Saliency(user))
    sigma = float(0.15 * (x.max() - x.min()))
    calls = {
        "ours": lambda: sc.METHODS["smoothgrad"].attribute(network, x, t, samples=args.samples),
        "captum": lambda: nt.attribute(
            x, nt_type="smoothgrad", nt_samples=args.samples, stdevs=sigma, target=int(t), abs=False
        ),
    }
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    key = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    for name, fn in calls.items():
        for _ in range(3):
            fn()
        bench._sync(device)
        with switched(cuda_graphs=False), profile(activities=activities) as prof:
            for _ in range(3):
                fn()
            bench._sync(device)
        events = prof.key_averages()
        busy = sum(getattr(e, key) for e in events) / 3 / 1000
        print(
            f"\n== {name}: {args.model}, SmoothGrad-{args.samples}, {device}: {busy:.1f} ms of "
            f"{'device' if device == 'cuda' else 'cpu'} time per call (self times summed)"
        )
        print(events.table(sort_by=key, row_limit=args.rows, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
