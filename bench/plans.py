"""Execution plans (saliency_core/engine/plans.py): speed and the map-change rule, in one process.

    python bench/plans.py            # demo and ResNet-50: SmoothGrad/VarGrad-50, RISE-1000
    python bench/plans.py --samples 8 --masks 64 --models demo   # short (say so when quoting it)
    python bench/run.py --plans ...  # the same, from the main benchmark

Speed rows: SmoothGrad-N, VarGrad-N and RISE-M on one image, ours under the plan chosen for the
model on this machine, ours in float32, and Captum's NoiseTunnel(Saliency) (batches of 10 noisy
copies) in the same process; Captum has no RISE. Ratios > 1: ours faster. The load average is
printed beside each row: the machine may be shared.

Rule rows: for each plan, how far its SmoothGrad map (seed 0) moves from the float32 map (seed 0)
against how far a change of seed (float32, 0 -> 1) moves it, 1 - Spearman at the default detail
(4 px at 224 px). bfloat16 rows are computed whether or not the CPU has bfloat16 units (without
them, torch emulates bfloat16 with the same rounding, about 20x slower): they say what the rule
would decide on a CPU that has them. Random-weight torchvision models (ResNet-18/50) as in bench/run.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

import saliency_core as sc
from saliency_core.engine import plans
from saliency_core.engine.explain import reduce_channels


def load(name: str):
    """A Classifier: the demo, or a torchvision ResNet with random weights loaded from a card."""
    if name == "demo":
        return sc.load_model("demo", device="cpu")
    import torchvision

    torch.manual_seed(0)
    folder = tempfile.mkdtemp(prefix=f"bench-{name}-")
    torch.save(
        getattr(torchvision.models, name)(weights=None).state_dict(), os.path.join(folder, f"{name}.pth")
    )
    with open(os.path.join(folder, f"{name}.json"), "w") as f:
        json.dump({"file": f"{name}.pth", "architecture": name, "gradcam_layer": "layer4"}, f)
    return sc.load_model(os.path.join(folder, f"{name}.json"), device="cpu")


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed_rows(name: str, args) -> list[dict]:
    from captum.attr import NoiseTunnel, Saliency

    model = load(name)
    x = plans.probe_image(model)
    with torch.no_grad():
        target = int(model.network(x).argmax())
    t = torch.tensor([target])
    sigma = 0.15 * float(x.max() - x.min())
    user = model.network  # Captum gets the same network (frozen weights: it differentiates the input)
    tasks = [
        ("smoothgrad", f"SmoothGrad-{args.samples}", {"samples": args.samples}, "smoothgrad"),
        ("vargrad", f"VarGrad-{args.samples}", {"samples": args.samples}, "vargrad"),
        ("rise", f"RISE-{args.masks}", {"masks": args.masks}, None),
    ]
    rows = []
    for method, task, params, nt_type in tasks:
        started = time.perf_counter()
        record = plans.choose(model, method, params)  # times and checks on first use (not in the rows)
        choosing = time.perf_counter() - started

        def ours(plan, method=method, params=params):
            with plans.using(plan):
                return sc.METHODS[method].attribute(model.network, x, t, **params)

        row = {
            "model": name,
            "task": task,
            "plan": record["plan"],
            "ratio": record["ratio"],
            "choosing_s": round(choosing, 2),
            "ours_plan_s": timed(lambda r=record: ours(r["plan"]), args.repeats),
            "ours_float32_s": timed(lambda: ours(None), args.repeats),
            "captum_s": None,
        }
        if nt_type is not None:
            nt = NoiseTunnel(Saliency(user))
            row["captum_s"] = timed(
                lambda nt=nt, nt_type=nt_type: nt.attribute(
                    x,
                    nt_type=nt_type,
                    nt_samples=args.samples,
                    nt_samples_batch_size=min(10, args.samples),
                    stdevs=sigma,
                    target=target,
                    abs=False,
                ),
                args.repeats,
            )
        row["plan_vs_float32"] = row["ours_float32_s"] / row["ours_plan_s"]
        if row["captum_s"] is not None:
            row["plan_vs_captum"] = row["captum_s"] / row["ours_plan_s"]
            row["float32_vs_captum"] = row["captum_s"] / row["ours_float32_s"]
        row["load_average"] = [round(v, 2) for v in os.getloadavg()]
        print(_fmt(row), flush=True)
        rows.append(row)
    return rows


def rule_rows(name: str, args) -> list[dict]:
    """The map-change rule for each plan on SmoothGrad-``rule_samples`` of the probe image."""
    model = load(name)
    x = plans.probe_image(model)
    with torch.no_grad():
        t = model.network(x).argmax(1)
    m = sc.METHODS["smoothgrad"]
    sigma = plans.detail_px(None, int(model.input_size))

    def saliency(plan, seed):
        with plans.using(plan):
            a = m.attribute(model.network, x, t, samples=args.rule_samples, seed=seed)
        return reduce_channels(a, m.reduction)[0].float().numpy()

    reference, other = saliency(None, 0), saliency(None, 1)
    seed_moved = plans.movement(other, reference, sigma)
    rows = []
    for plan in args.rule_plans:
        if name in args.skip_bf16 and plans.PLANS[plan].reduced:
            continue
        started = time.perf_counter()
        verdict = plans.judge(plans.movement(saliency(plan, 0), reference, sigma), seed_moved, sigma)
        row = {
            "model": name,
            "task": f"SmoothGrad-{args.rule_samples} map-change rule",
            "plan": plan,
            **verdict,
            "emulated": plans.PLANS[plan].reduced and plans.bf16_units(torch.device("cpu")) is None,
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(
            f"{name:9s} {plan:24s} moved {row['movement']:.5f}  seed change {row['seed_movement']:.5f}  "
            f"ratio {row['ratio']}  {'accepted' if row['accepted'] else 'rejected'}"
            f"{'  (bfloat16 emulated)' if row['emulated'] else ''}",
            flush=True,
        )
        rows.append(row)
    return rows


def _fmt(row: dict) -> str:
    captum = (
        f"captum {row['captum_s']:7.2f} s  plan x{row['plan_vs_captum']:.2f}  "
        f"float32 x{row['float32_vs_captum']:.2f}"
        if row["captum_s"] is not None
        else "captum: no RISE"
    )
    return (
        f"{row['model']:9s} {row['task']:14s} plan {row['plan']:22s} {row['ours_plan_s']:7.2f} s  "
        f"float32 {row['ours_float32_s']:7.2f} s (plan x{row['plan_vs_float32']:.2f})  {captum}  "
        f"load {row['load_average']}"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=["demo", "resnet50"])
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--masks", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--rule-models", nargs="*", default=["demo", "resnet18", "resnet50"])
    p.add_argument("--rule-samples", type=int, default=50)
    p.add_argument("--rule-plans", nargs="+", default=[n for n in plans.PLANS if n != "float32"])
    p.add_argument("--skip-bf16", nargs="*", default=[], help="models whose bfloat16 rule rows are skipped")
    p.add_argument("--out", default="bench/results-plans.json")
    args = p.parse_args(argv)
    # the plan's own probe check at the counts of this run (the dashboard checks the defaults)
    plans.PROBE_PARAMS.update(
        {
            "smoothgrad": {"samples": args.samples},
            "vargrad": {"samples": args.samples},
            "rise": {"masks": args.masks},
        }
    )
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_units": plans.cpu_units(),
            "gpu": None,
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "speed": [],
        "rule": [],
    }
    for name in args.models:
        result["speed"] += speed_rows(name, args)
    for name in args.rule_models:
        result["rule"] += rule_rows(name, args)
    result["load_average_end"] = list(os.getloadavg())
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
