"""Speed of saliency_core against Captum on the same inputs, in one process.

    python bench/run.py                       # full table on this machine (CPU, and GPU if present)
    python bench/run.py --samples 2 --steps 2 --repeats 1 --batch 2 --models demo   # smoke run
    python bench/run.py --plans [bench/plans.py flags]  # execution plans: plan vs float32 vs Captum

Prints one row per (device, model, task): our median, Captum's median(s) and the ratio
Captum / ours (> 1 means we are faster), and writes the table as JSON (--out).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import sys
import time

import torch

import saliency_core as sc  # installed by the Makefile (pip install -e .)
from saliency_core.engine._fast import switched
from saliency_core.engine.samples import sample_images


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int, device: str) -> float:
    """Median seconds of ``repeats`` calls after two warm-up calls (a CUDA graph is captured
    on a shape's second use)."""
    fn()
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load(name: str, device: str):
    """(our network, Captum's network, grad-cam layer name, input) on ``device``.

    Ours is the network as saliency_core loads it (eval, frozen weights, channels-last);
    Captum gets an identical copy as a user holds it (eval, weights requiring grad, default
    layout), so the table shows what the engine's choices buy."""
    if name == "demo":
        model = sc.load_model("demo")
        network, layer = model.network, model.gradcam_layer
        x = model.preprocess(sample_images()["Cat (chelsea.png)"])
    elif name == "resnet50":
        import tempfile

        import torchvision

        torch.manual_seed(0)
        folder = tempfile.mkdtemp(prefix="bench-resnet50-")
        # random weights (speed does not depend on them), loaded as an operator's model is: state dict + card
        torch.save(
            torchvision.models.resnet50(weights=None).state_dict(), os.path.join(folder, "resnet50.pth")
        )
        with open(os.path.join(folder, "resnet50.json"), "w") as f:
            json.dump({"file": "resnet50.pth", "architecture": "resnet50", "gradcam_layer": "layer4"}, f)
        model = sc.load_model(os.path.join(folder, "resnet50.json"), device="cpu")
        network = model.network
        layer = "1.layer4"
        x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    else:
        raise SystemExit(f"unknown model {name!r}: use demo or resnet50")
    user = copy.deepcopy(network).to(memory_format=torch.contiguous_format)
    for p in user.parameters():
        p.requires_grad_(True)
    return network.to(device), user.eval().to(device), layer, x.to(device)


def bench_model(name: str, device: str, args) -> list[dict]:
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency

    network, user, layer_name, x = load(name, device)
    layer = user.get_submodule(layer_name)
    with torch.no_grad():
        target = int(network(x).argmax())
    t = torch.tensor([target], device=device)
    sigma = float(args.noise * (x.max() - x.min()))
    n, steps, r = args.samples, args.steps, args.repeats
    rows = []

    def row(task, ours, refs, maps=None):
        best = min(refs.values())
        rows.append(
            {
                "device": device,
                "model": name,
                "task": task,
                "ours_s": ours,
                **{f"captum_{k}_s": v for k, v in refs.items()},
                "speedup_vs_captum_best": best / ours,
                **{f"speedup_vs_captum_{k}": v / ours for k, v in refs.items()},
            }
        )
        if maps is not None:  # same map? (ours runs BatchNorm-folded: rounding-level differences)
            rows[-1]["map_rel_error_vs_captum"] = _rel(maps[0](), maps[1]())
        print(_fmt(rows[-1]), flush=True)

    def ours(method, inputs, targets, **params):
        return lambda: sc.METHODS[method].attribute(network, inputs, targets, **params)

    captum_gradient = lambda: Saliency(user).attribute(x, target=target, abs=False)  # noqa: E731
    row(
        "gradient, 1 image",
        timed(ours("gradient", x, t), r, device),
        {"default": timed(captum_gradient, r, device)},
        maps=(ours("gradient", x, t), captum_gradient),
    )

    nt = NoiseTunnel(Saliency(user))
    row(
        f"SmoothGrad-{n}, 1 image",
        timed(ours("smoothgrad", x, t, samples=n, noise=args.noise), r, device),
        {
            "default": timed(
                lambda: nt.attribute(
                    x, nt_type="smoothgrad", nt_samples=n, stdevs=sigma, target=target, abs=False
                ),
                r,
                device,
            ),
            "batch10": timed(
                lambda: nt.attribute(
                    x,
                    nt_type="smoothgrad",
                    nt_samples=n,
                    stdevs=sigma,
                    target=target,
                    abs=False,
                    nt_samples_batch_size=min(10, n),
                ),
                r,
                device,
            ),
        },
    )

    if device == "cpu" and args.own_process:
        # Captum as its users run it: a fresh process with the C library's default allocator
        # (ours sets glibc's; Captum in this process shares that setting)
        own = captum_own_process(user, x, n, sigma, target, r)
        rows.append(
            {
                "device": device,
                "model": name,
                "task": f"SmoothGrad-{n}, 1 image, captum in its own process",
                "ours_s": rows[-1]["ours_s"],
                **{f"captum_{k}_s": v for k, v in own.items()},
                "speedup_vs_captum_best": min(own.values()) / rows[-1]["ours_s"],
                **{f"speedup_vs_captum_{k}": v / rows[-1]["ours_s"] for k, v in own.items()},
            }
        )
        print(_fmt(rows[-1]), flush=True)

    ig = IntegratedGradients(user)
    captum_ig = lambda: ig.attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=steps)  # noqa: E731
    row(
        f"Integrated Gradients-{steps}, 1 image",
        timed(ours("integrated_gradients", x, t, steps=steps), r, device),
        {
            "default": timed(captum_ig, r, device),
            "batch10": timed(
                lambda: ig.attribute(
                    x,
                    baselines=torch.zeros_like(x),
                    target=target,
                    n_steps=steps,
                    internal_batch_size=min(10, steps),
                ),
                r,
                device,
            ),
        },
        maps=(ours("integrated_gradients", x, t, steps=steps), captum_ig),
    )

    def captum_gradcam():
        cam = LayerGradCam(user, layer).attribute(x, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(cam, x.shape[-2:], "bilinear")

    row(
        "Grad-CAM, 1 image",
        timed(ours("gradcam", x, t, layer=layer_name), r, device),
        {"default": timed(captum_gradcam, r, device)},
        maps=(ours("gradcam", x, t, layer=layer_name), captum_gradcam),
    )

    # ablation: our SmoothGrad with the engine's choices undone one at a time; map columns say
    # how far each variant's map is from the default one, next to what a change of seed does
    sg = sc.METHODS["smoothgrad"].attribute
    reference = sg(network, x, t, samples=n, noise=args.noise)
    seed_row = {"map_rel_error": _rel(sg(network, x, t, samples=n, noise=args.noise, seed=1), reference)}
    seed_row["map_spearman"] = _spearman(sg(network, x, t, samples=n, noise=args.noise, seed=1), reference)
    rows.append(
        {
            "device": device,
            "model": name,
            "task": f"SmoothGrad-{n}, 1 image, ours with seed 1 (map only)",
            **seed_row,
        }
    )
    print(_fmt(rows[-1]), flush=True)
    plain = copy.deepcopy(network).to(memory_format=torch.contiguous_format)
    variants = [
        ("default layout", plain, None, {}, None),
        ("no BatchNorm folding", network, None, {"fold": False}, None),
        ("chunks of 5", network, 5, {}, None),
        ("chunks of 25", network, 25, {}, None),
        ("one pass of all samples", network, n, {}, None),
    ]
    if device == "cuda":
        variants += [
            ("no CUDA graphs", network, None, {"cuda_graphs": False}, None),
            ("full fp32 convolutions", network, None, {"tf32": False}, None),
            ("bf16 autocast", network, None, {}, torch.bfloat16),
            ("fp16 autocast", network, None, {}, torch.float16),
        ]
    for label, net_, chunk, options, autocast in variants:
        with switched(**options):

            def run(net_=net_, chunk=chunk, autocast=autocast):
                with torch.autocast(device, dtype=autocast, enabled=autocast is not None):
                    return sg(net_, x, t, samples=n, noise=args.noise, chunk_size=chunk).float()

            row_ = {
                "device": device,
                "model": name,
                "task": f"SmoothGrad-{n}, 1 image, ours with {label}",
                "ours_s": timed(run, r, device),
            }
            out = run()
            row_.update(map_rel_error=_rel(out, reference), map_spearman=_spearman(out, reference))
        rows.append(row_)
        print(_fmt(rows[-1]), flush=True)

    b = args.batch
    xb = x.repeat(b, 1, 1, 1) + 0.01 * torch.randn(
        b, *x.shape[1:], device=device, generator=torch.Generator(device).manual_seed(1)
    )
    tb = t.repeat(b)
    ours_s = timed(ours("smoothgrad", xb, tb, samples=n, noise=args.noise), r, device)
    ref_s = timed(
        lambda: nt.attribute(
            xb,
            nt_type="smoothgrad",
            nt_samples=n,
            stdevs=sigma,
            target=tb,
            abs=False,
            nt_samples_batch_size=max(1, 64 // b if device == "cuda" else 10 // b),
        ),
        r,
        device,
    )
    rows.append(
        {
            "device": device,
            "model": name,
            "task": f"SmoothGrad-{n}, batch of {b} (images/s)",
            "ours_images_per_s": b / ours_s,
            "captum_images_per_s": b / ref_s,
            "speedup_vs_captum_best": ref_s / ours_s,
        }
    )
    print(_fmt(rows[-1]), flush=True)
    if device == "cuda":  # throughput ablation: bigger passes, no graphs
        for label, chunk, options in (
            ("chunks of 256", 256, {}),
            ("no CUDA graphs", None, {"cuda_graphs": False}),
        ):
            with switched(**options):
                s_ = timed(
                    lambda chunk=chunk: sg(network, xb, tb, samples=n, noise=args.noise, chunk_size=chunk),
                    r,
                    device,
                )
            rows.append(
                {
                    "device": device,
                    "model": name,
                    "ours_s": s_,
                    "ours_images_per_s": b / s_,
                    "task": f"SmoothGrad-{n}, batch of {b}, ours with {label} (images/s)",
                }
            )
            print(f"{device:4} {name:9} {rows[-1]['task']:52} ours {b / s_:8.2f} img/s", flush=True)
    return rows


_OWN_PROCESS = """
import json, statistics, sys, time
import torch
from captum.attr import NoiseTunnel, Saliency
path, n, sigma, target, repeats, threads = sys.argv[1:7]
torch.set_num_threads(int(threads))
user, x = torch.load(path, weights_only=False)
nt = NoiseTunnel(Saliency(user))
def timed(batch):
    call = lambda: nt.attribute(x, nt_type="smoothgrad", nt_samples=int(n), stdevs=float(sigma),
                                target=int(target), abs=False, nt_samples_batch_size=batch)
    call(); call()
    times = []
    for _ in range(int(repeats)):
        start = time.perf_counter(); call(); times.append(time.perf_counter() - start)
    return statistics.median(times)
print(json.dumps({"default": timed(None), "batch10": timed(min(10, int(n)))}))
"""


def captum_own_process(
    user: torch.nn.Module, x: torch.Tensor, n: int, sigma: float, target: int, repeats: int
) -> dict:
    """Captum's SmoothGrad medians (default and batch10) measured in a fresh Python process."""
    import subprocess
    import tempfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "user.pt")
        torch.save((user, x), path)
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.run(
            [
                sys.executable,
                "-W",
                "ignore",
                "-c",
                _OWN_PROCESS,
                path,
                str(n),
                str(sigma),
                str(target),
                str(repeats),
                str(torch.get_num_threads()),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Rank correlation of the drawn saliency (max |.| over channels)."""
    ra, rb = (v.detach().abs().amax(1).flatten().double().argsort().argsort().double() for v in (a, b))
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def _fmt(row: dict) -> str:
    if "ours_s" not in row and "ours_images_per_s" not in row:
        return (
            f"{row['device']:4} {row['model']:9} {row['task']:52} map vs default: rel. error "
            f"{row['map_rel_error']:.4f}, Spearman {row['map_spearman']:.4f}"
        )
    if "ours_images_per_s" in row:
        return (
            f"{row['device']:4} {row['model']:9} {row['task']:52} ours {row['ours_images_per_s']:8.2f} "
            f"img/s  captum {row['captum_images_per_s']:8.2f} img/s  x{row['speedup_vs_captum_best']:.2f}"
        )
    if not any(k.startswith("captum_") for k in row):
        text = f"{row['device']:4} {row['model']:9} {row['task']:52} ours {row['ours_s'] * 1000:8.1f} ms"
        if "map_rel_error" in row:
            text += (
                f"  map vs default: rel. error {row['map_rel_error']:.4f}, Spearman {row['map_spearman']:.4f}"
            )
        return text
    refs = "  ".join(
        f"captum {k[7:-2]} {v * 1000:8.1f} ms (x{row['speedup_vs_captum_' + k[7:-2]]:.2f})"
        for k, v in row.items()
        if k.startswith("captum_") and k.endswith("_s")
    )
    same = (
        f"  map rel. error vs captum {row['map_rel_error_vs_captum']:.1e}"
        if "map_rel_error_vs_captum" in row
        else ""
    )
    return (
        f"{row['device']:4} {row['model']:9} {row['task']:52} ours {row['ours_s'] * 1000:8.1f} ms  "
        f"{refs}{same}"
    )


def peak_memory_smoothgrad(samples: int) -> float:
    """Peak resident MB of this process after SmoothGrad-``samples`` on one demo image."""
    model = sc.load_model("demo")
    sc.explain(model, sample_images()["Cat (chelsea.png)"], method="smoothgrad", samples=samples)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["demo", "resnet50"])
    p.add_argument("--devices", nargs="+", default=None, help="cpu and/or cuda (default: all present)")
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--noise", type=float, default=0.15)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch", type=int, default=None, help="images per throughput batch (cpu 8, cuda 32)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per cell (cpu 3, cuda 10)")
    p.add_argument(
        "--memory-samples",
        type=int,
        default=0,
        help="also report peak RSS of SmoothGrad-N on one image (run first, fresh process)",
    )
    p.add_argument(
        "--no-own-process",
        dest="own_process",
        action="store_false",
        help="skip timing Captum in a fresh process (CPU)",
    )
    p.add_argument("--out", default="bench/results.json")
    if argv is None and "--plans" in sys.argv[1:] or argv is not None and "--plans" in argv:
        from plans import main as plans_main  # bench/plans.py: execution-plan rows, its own flags

        return plans_main([a for a in (sys.argv[1:] if argv is None else argv) if a != "--plans"])
    args = p.parse_args(argv)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "rows": [],
    }
    if args.memory_samples:
        mb = peak_memory_smoothgrad(args.memory_samples)
        result["peak_rss_mb_smoothgrad"] = {"samples": args.memory_samples, "mb": mb}
        print(f"peak resident memory, SmoothGrad-{args.memory_samples} on one image (cpu): {mb:.0f} MB")
    for device in devices:
        batch = args.batch or (32 if device == "cuda" else 8)
        repeats = args.repeats or (10 if device == "cuda" else 3)
        for name in args.models:
            result["rows"] += bench_model(
                name, device, argparse.Namespace(**{**vars(args), "batch": batch, "repeats": repeats})
            )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
