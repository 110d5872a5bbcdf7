"""Execution plans for averaging methods: precision and memory layout, chosen per model by measurement.

A plan says how the network runs inside an averaging method (the SmoothGrad family and RISE):

- ``float32``: the network as loaded, in float32 (convolutional models are loaded with
  channels-last weights). On a GPU, TF32 convolutions as saliency_core/engine/_fast.py allows.
- ``float32-channels-last``: weights and input both in channels-last layout.
- ``bfloat16`` / ``bfloat16-channels-last``: ``torch.autocast`` to bfloat16 (matrix products and
  convolutions in bfloat16, accumulation and the averaging in float32). On a CPU only where it
  has bfloat16 units (``amx_bf16`` or ``avx512_bf16`` in /proc/cpuinfo): detected, never guessed;
  elsewhere bfloat16 is emulated and slower. On a GPU where ``torch.cuda.is_bf16_supported()``.

The rule (``choose``): a plan is chosen per (model fingerprint, device) when the model is first
used for an averaging method. Each candidate is timed on a few batches of the model's forward and
input-backward pass; only a candidate taking at most ``SPEED_MARGIN`` of float32's time is
considered, fastest first. It is then *accepted for a method* only if, on a probe image with the
method's default parameters, its map (seed 0) moves from the float32 map (seed 0) by less than
``RULE_SHARE`` (a tenth) of what changing the seed (float32, seed 1) moves it. Movement is
1 - Spearman rank correlation of the two saliency maps at the map's reproducible detail: both
smoothed by a Gaussian of ``diagnostics["convergence"]["reproducible_px"]`` px where the readout
gives one, else ``DEFAULT_DETAIL_PX`` (4 px at 224 px, scaled with the input size). Otherwise the
method runs in float32. Single-pass methods and occlusion never get a plan: they run as written.

Timings and checks are cached in memory and on disk (``cache_dir()``, one file per fingerprint,
device and torch version); timings older than ``MAX_AGE_S`` or made on a CPU with other units are
measured again. ``SALIENCY_PLANS=float32`` switches plans off.

Example:
    >>> record = choose(model, "smoothgrad", {})      # times and checks once, then cached
    >>> record["plan"], record["ratio"]
    ('float32', None)
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from pathlib import Path

import torch
from torch import nn

from .plan_runtime import FLOAT32, PLANS, Plan, active, applied, using  # noqa: F401  (re-exported)

RULE_SHARE = 0.1  # a plan may move the map by less than this share of a change of seed
DEFAULT_DETAIL_PX = 4.0  # detail (Gaussian sigma, px at 224 px) where the readout gives none
SPEED_MARGIN = (
    0.9  # a candidate must take at most this share of float32's time (timing noise on a shared CPU)
)
MAX_AGE_S = 7 * 24 * 3600.0  # timings older than this are measured again
TIMING_REPEATS = 3  # timed batches per candidate (after one warm-up), the fastest counts
CACHE_FORMAT = 1
# method -> parameters of the probe check other than the method's defaults; empty in use (the
# defaults are checked), set only by bench/plans.py for a short run, which says so
PROBE_PARAMS: dict[str, dict] = {}
RULE = (
    "used only where, on a probe image, the map moves from the float32 map (same seed) by less "
    f"than {RULE_SHARE:g} of what a change of seed moves it (1 - Spearman at the map's reproducible detail)"
)


# ---- hardware: detected, never guessed


def cpu_units(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> dict:
    """The CPU's bfloat16 units from its flags, and torch's CPU capability.

    Returns:
        ``{"amx_bf16": bool, "avx512_bf16": bool, "capability": "AVX2" | "AVX512" | ...}``.
    """
    flags: set[str] = set()
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001  an old torch: no capability, no claim
        capability = "unknown"
    return {"amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags, "capability": capability}


def bf16_units(device: torch.device) -> str | None:
    """Words naming the device's bfloat16 units, or None where it has none."""
    if device.type == "cuda":
        return "this GPU's bfloat16 units" if torch.cuda.is_bf16_supported() else None
    units = cpu_units()
    if units["amx_bf16"]:
        return "this CPU's matrix units (AMX)"
    if units["avx512_bf16"]:
        return "this CPU's AVX-512 bfloat16 units"
    return None


def switched_off() -> bool:
    """Whether ``SALIENCY_PLANS=float32`` keeps every method in float32."""
    return os.environ.get("SALIENCY_PLANS", "").strip().lower() == "float32"


def candidates(device: torch.device) -> list[Plan]:
    """The plans worth timing on ``device``: float32 layouts always, bfloat16 only with its units."""
    if switched_off():
        return [FLOAT32]
    return [p for p in PLANS.values() if not p.reduced or bf16_units(device) is not None]


# ---- measuring: timings per (model, device), map checks per method


def time_plans(network: nn.Module, shape: tuple, device: torch.device, plans: list[Plan]) -> dict:
    """Seconds per image of one forward and input-backward pass under each plan (batch ``shape``),
    timed round-robin (``TIMING_REPEATS`` rounds after a warm-up, the fastest round counts)."""
    from ._fast import averaging
    from .methods._autograd import input_gradient

    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.rand(shape, generator=g).to(device)
    target = torch.zeros(shape[0], dtype=torch.long, device=device)

    def run(plan: Plan) -> float:
        start = time.perf_counter()
        with averaging(), using(plan):
            input_gradient(network, x, target)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    best = {}
    for plan in plans:
        run(plan)  # warm-up: allocations, a channels-last copy, oneDNN's kernel choice
    for _ in range(TIMING_REPEATS):
        for plan in plans:
            best[plan.name] = min(best.get(plan.name, math.inf), run(plan) / shape[0])
    return best


def detail_px(diagnostics: dict | None, size: int) -> float:
    """The detail at which maps are compared: the readout's reproducible detail where it gives
    one, else ``DEFAULT_DETAIL_PX`` scaled to a ``size`` px input."""
    from .detail import reproducible_px

    found = reproducible_px(diagnostics)
    return found if found is not None else DEFAULT_DETAIL_PX * size / 224


def movement(a, b, sigma: float) -> float:
    """1 - Spearman rank correlation of two (H, W) maps, both smoothed by ``sigma`` px."""
    from .convergence import spearman
    from .detail import smooth

    sa = torch.from_numpy(smooth(a, sigma)).reshape(1, -1)
    sb = torch.from_numpy(smooth(b, sigma)).reshape(1, -1)
    return float(1 - spearman(sa, sb)[0])


def probe_image(model) -> torch.Tensor:
    """The probe image (1, C, H, W): the bundled cat photo where installed, else a fixed smooth pattern."""
    from torchvision.transforms.functional import to_tensor

    from .samples import sample_images

    path = sample_images().get("Cat (chelsea.png)")
    if path is not None:
        return to_tensor(model.crop(path)).unsqueeze(0).to(model.device)
    g = torch.Generator(device="cpu").manual_seed(0)
    coarse = torch.rand(1, model.channels, 8, 8, generator=g)
    size = model.input_size
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear").to(model.device)


def check_map(model, method: str, plan: Plan) -> dict:
    """The map-change rule for ``plan`` on ``method`` (its default parameters) on the probe image.

    Returns:
        ``{"movement", "seed_movement", "ratio", "detail_px", "accepted"}``: movement of the
        plan's map from the float32 map (seed 0), of the float32 map under a change of seed
        (0 -> 1), their ratio, the detail (sigma px) they were measured at, and the verdict.
    """
    import inspect

    from .convergence import Readout
    from .methods import METHODS, reduce_channels

    m = METHODS[method]
    x = probe_image(model)
    with torch.no_grad():
        target = model.network(x).argmax(1)
    maps, readouts = {}, {}
    takes_readout = "readout" in inspect.signature(m.attribute).parameters
    for key, seed, run in (("f32", 0, FLOAT32), ("seed", 1, FLOAT32), ("plan", 0, plan)):
        readout = Readout(lambda a: reduce_channels(a, m.reduction)) if takes_readout else None
        extra = {"readout": readout} if readout is not None else {}
        with using(run):
            params = {**m.defaults, **PROBE_PARAMS.get(method, {}), "seed": seed}
            attribution = m.attribute(model.network, x, target, **params, **extra)
        maps[key] = reduce_channels(attribution, m.reduction)[0].float().cpu().numpy()
        readouts[key] = readout.last[0] if readout is not None and readout.last else None
    sigma = detail_px({"convergence": readouts["f32"]}, int(model.input_size))
    return judge(
        movement(maps["plan"], maps["f32"], sigma), movement(maps["seed"], maps["f32"], sigma), sigma
    )


def judge(moved: float, seed_moved: float, sigma: float) -> dict:
    """The rule's verdict on a measured movement against the seed-change movement."""
    ratio = moved / seed_moved if seed_moved > 0 else (0.0 if moved == 0 else math.inf)
    return {
        "movement": round(moved, 6),
        "seed_movement": round(seed_moved, 6),
        "ratio": round(ratio, 4) if math.isfinite(ratio) else None,
        "detail_px": round(sigma, 3),
        "accepted": bool(math.isfinite(ratio) and ratio < RULE_SHARE),
    }


# ---- the cache: in memory, and on disk under the user's cache directory

_MEMORY: dict[tuple, dict] = {}
_LOCK = threading.RLock()


def cache_dir() -> Path:
    """``$SALIENCY_CACHE_DIR``, else ``$XDG_CACHE_HOME/saliency-lens``, else ``~/.cache/saliency-lens``."""
    given = os.environ.get("SALIENCY_CACHE_DIR", "").strip()
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "saliency-lens"


def _key(model) -> tuple[str, str, str]:
    return (str(model.fingerprint), str(model.device), torch.__version__)


def _file(key: tuple[str, str, str]) -> Path:
    safe = re.sub(r"[^A-Za-z0-9.+_-]", "_", f"{key[0][:64]}-{key[1]}-torch{key[2]}")
    return cache_dir() / "plans" / f"{safe}.json"


def _number(value, low: float, high: float) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and low <= value <= high
    )


def _valid(entry, units: dict) -> dict | None:
    """A cache entry read from disk, kept only where every field has its type and range."""
    if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT or entry.get("units") != units:
        return None
    timings, checks = entry.get("timings"), entry.get("checks")
    if not isinstance(timings, dict) or not isinstance(checks, dict):
        return None
    if not all(k in PLANS and _number(v, 0, 3600) for k, v in timings.items()) or "float32" not in timings:
        return None
    if not _number(entry.get("timed_at"), 0, 1e11):
        return None
    for per_method in checks.values():
        if not isinstance(per_method, dict):
            return None
        for name, check in per_method.items():
            if (
                name not in PLANS
                or not isinstance(check, dict)
                or not isinstance(check.get("accepted"), bool)
            ):
                return None
            if not all(_number(check.get(k), 0, 1e6) for k in ("movement", "seed_movement", "detail_px")):
                return None
    return entry


def _load(key: tuple, units: dict) -> dict | None:
    try:
        with open(_file(key), encoding="utf-8") as f:
            return _valid(json.load(f), units)
    except (OSError, ValueError):
        return None


def _save(key: tuple, entry: dict) -> None:
    path = _file(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a read-only home: the plan is kept in memory only
        pass


def _entry(model) -> dict:
    """The model's timings (measured now if none, or stale) and checks so far."""
    key = _key(model)
    device = torch.device(model.device)
    units = cpu_units() if device.type == "cpu" else {"gpu": torch.cuda.get_device_name(device)}
    entry = _MEMORY.get(key) or _load(key, units)
    plans = candidates(device)
    if (
        entry is None
        or time.time() - entry["timed_at"] > MAX_AGE_S
        or set(entry["timings"]) != {p.name for p in plans}
    ):
        shape = (_timing_batch(device), int(model.channels), int(model.input_size), int(model.input_size))
        timings = time_plans(model.network, shape, device, plans) if len(plans) > 1 else {"float32": 0.0}
        checks = entry["checks"] if entry is not None else {}
        entry = {"format": CACHE_FORMAT, "units": units, "timed_at": time.time(), "timings": timings}
        entry["checks"] = checks
        _save(key, entry)
    _MEMORY[key] = entry
    return entry


def _timing_batch(device: torch.device) -> int:
    from .methods._autograd import default_chunk_size

    return default_chunk_size(torch.empty(0, device=device))


def eligible(method: str, params: dict) -> bool:
    """Whether ``method`` with ``params`` may run under a plan: an averaging method whose
    gradients (if any) come from the network as written, not from guided backprop's rule."""
    from .methods import METHODS

    m = METHODS.get(method)
    if m is None or not m.averaging:
        return False
    base = METHODS.get(params.get("base") or "gradient")
    return base is None or "relu" not in base.needs


def choose(model, method: str, params: dict | None = None) -> dict | None:
    """The plan for ``method`` on ``model`` on this machine, as recorded in ``diagnostics["plan"]``;
    None where the method never runs under a plan (single-pass methods, occlusion, SmoothGrad of
    guided backprop). Times the candidates and checks the map on first use (module docstring).

    Returns:
        ``{"plan", "dtype", "channels_last", "rule", "ratio", "movement", "seed_movement",
        "detail_px", "speedup", "units", "tolerance"}``.
    """
    if not eligible(method, params or {}):
        return None
    with _LOCK:  # dashboard sessions are threads sharing one model: one measurement
        entry = _entry(model)
        timings = entry["timings"]
        base = timings["float32"]
        faster = sorted(
            (n for n in timings if n != "float32" and timings[n] <= SPEED_MARGIN * base), key=timings.get
        )
        checks = entry["checks"].setdefault(method, {})
        chosen, check = FLOAT32, None
        for name in faster:
            if name not in checks:
                checks[name] = check_map(model, method, PLANS[name])
                _save(_key(model), entry)
            if checks[name]["accepted"]:
                chosen, check = PLANS[name], checks[name]
                break
    return plan_record(chosen, check, timings, model)


def plan_record(plan: Plan, check: dict | None, timings: dict, model) -> dict:
    """What ``diagnostics["plan"]`` holds for a map made under ``plan``."""
    base, own = timings.get("float32") or 0.0, timings.get(plan.name) or 0.0
    record = {
        "plan": plan.name,
        "dtype": plan.dtype,
        "channels_last": plan.channels_last,
        "rule": RULE,
        "ratio": None if check is None else check["ratio"],
        "movement": None if check is None else check["movement"],
        "seed_movement": None if check is None else check["seed_movement"],
        "detail_px": None if check is None else check["detail_px"],
        "speedup": round(base / own, 3) if base > 0 and own > 0 else 1.0,
        "units": bf16_units(torch.device(model.device)) if plan.reduced else None,
    }
    if check is not None:  # replay: a recomputed map matches when it moved at most this much
        record["tolerance"] = {
            "max_movement": round(RULE_SHARE * check["seed_movement"], 6),
            "detail_px": check["detail_px"],
            "share_of_seed_change": RULE_SHARE,
        }
    return record


def cached(model) -> dict | None:
    """The plan choices already made for ``model`` on this machine (nothing is measured):
    ``{method: plan record}``; None where the model was not yet used for an averaging method."""
    entry = _MEMORY.get(_key(model))
    if entry is None:
        return None
    out = {}
    for method, checks in entry["checks"].items():
        accepted = [n for n, c in checks.items() if c.get("accepted")]
        best = min(accepted, key=lambda n: entry["timings"].get(n, math.inf)) if accepted else "float32"
        out[method] = plan_record(PLANS[best], checks.get(best), entry["timings"], model)
    return out


def time_share(model, method: str) -> float:
    """The share of float32's time a map of ``method`` takes under its chosen plan, from what is
    already known (1.0 where nothing is): for estimates, which never measure."""
    record = (cached(model) or {}).get(method)
    return 1.0 / record["speedup"] if record and record["speedup"] > 0 else 1.0


# ---- words


def describe(record: dict | None) -> str:
    """One line for "Convergence details": the plan and the measured rule; "" without a plan."""
    if not isinstance(record, dict) or "plan" not in record:
        return ""
    if record["plan"] == "float32":
        why = "plans switched off" if switched_off() else "no faster plan passed the map-change rule here"
        return f"Computed in float32 ({why})."
    how = "bfloat16" if record.get("dtype") == "bfloat16" else "float32"
    layout = ", channels-last layout" if record.get("channels_last") else ""
    ratio = record.get("ratio")
    measured = (
        f"; on a probe image it moved the map {ratio:.3f}x as much as a change of seed "
        f"(allowed under {RULE_SHARE:g}x, at {record.get('detail_px')} px detail)"
        if isinstance(ratio, (int, float))
        else ""
    )
    return f"Computed in {how}{layout}, {record.get('speedup', 1.0):.1f}x faster{measured}."


def describe_model(model) -> str:
    """The plan in words for a model's details, e.g. "computed in bfloat16 on this CPU's matrix
    units; maps checked to move less than a tenth of a seed change"."""
    choices = cached(model)
    if choices is None:
        return "Averaging methods: a faster precision or layout is measured when first used."
    reduced = [r for r in choices.values() if r["plan"] != "float32"]
    if not reduced:
        why = "plans switched off" if switched_off() else "no faster plan passed the checks here"
        return f"Averaging methods: computed in float32 ({why})."
    r = reduced[0]
    how = f"bfloat16 on {r['units']}" if r["dtype"] == "bfloat16" else "float32 in channels-last layout"
    return f"Averaging methods: computed in {how}; maps checked to move less than a tenth of a seed change."


def replay_tolerance(diagnostics) -> dict | None:
    """A recorded plan's replay tolerance, every number range-checked; None without one."""
    record = diagnostics.get("plan") if isinstance(diagnostics, dict) else None
    tolerance = record.get("tolerance") if isinstance(record, dict) else None
    if not isinstance(tolerance, dict):
        return None
    if not (_number(tolerance.get("max_movement"), 0, 2) and _number(tolerance.get("detail_px"), 0, 256)):
        return None
    return {"max_movement": float(tolerance["max_movement"]), "detail_px": float(tolerance["detail_px"])}
