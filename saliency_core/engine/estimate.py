"""How long a run will take on this machine, said before it starts.

A run's cost is counted in network passes: each method says how many forward passes (no
gradient) and forward + backward passes one map takes (``Method.cost``: occlusion one forward
pass per hidden square, RISE one per mask, SmoothGrad one gradient per sample, Integrated
Gradients one per step...); a deletion / insertion point is one forward pass.
``pass_times`` times one batched forward pass, one forward + backward pass of one image and
one of a batch (as SmoothGrad and Integrated Gradients take them) on this machine, now (about a
second on a CPU), so the estimate follows the machine's current load; the runs' own overheads
(image decoding, similarity measures, bootstrap) are left out, so the estimate is a lower bound
of the order of the run.

Example:
    >>> times = pass_times(model)
    >>> seconds = validation_seconds(times, images=5, maps={"gradient": {}, "smoothgrad": {"samples": 50}},
    ...                              curve_points=11)
    >>> describe_seconds(seconds)
    'about 20 s'
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from .methods import METHODS
from .methods._autograd import default_chunk_size

TIMING_BATCH = 8
_cache: dict = {}
_lock = threading.Lock()
MAX_AGE = 300.0  # seconds before a model is timed again (the machine's load changes)


@dataclass(frozen=True)
class PassTimes:
    """Seconds per image on this machine at the time of measuring.

    Attributes:
        forward: one image in a batched forward pass without gradients.
        backward: one image through a forward and a backward pass (one map sample).
        batched_backward: the same per image in a batch of the size the averaging methods
            use (SmoothGrad's samples, Integrated Gradients' steps); None: as ``backward``.
        threads: torch threads used.
        measured_at: ``time.time()`` of the measurement.
        size: the model's input side, pixels (what a method's pass count may depend on).
    """

    forward: float
    backward: float
    threads: int
    measured_at: float
    size: int = 224
    batched_backward: float | None = None


def _network_device(network: torch.nn.Module) -> torch.device:
    return next((p.device for p in network.parameters()), torch.device("cpu"))


def _time(fn, warm_up: bool = True) -> float:
    if warm_up:
        fn()  # first-call allocations
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def pass_times(model, refresh: bool = False) -> PassTimes:
    """Time the model's passes on this machine (once per model every ``MAX_AGE`` seconds).

    Args:
        model: a ``Classifier``.
        refresh: time again even if a recent measurement exists.
    Returns:
        ``PassTimes``.
    """
    key = (
        model.fingerprint,
        model.card.get("digest") if model.card else None,
        str(model.device),
        torch.get_num_threads(),
    )
    with _lock:
        hit = _cache.get(key)
    if hit is not None and not refresh and time.time() - hit.measured_at < MAX_AGE:
        return hit
    network = model.network
    size = int(model.input_size)
    device = _network_device(network)
    channels = int(getattr(model, "channels", 3) or 3)
    x = torch.rand(TIMING_BATCH, channels, size, size, device=device)
    with torch.no_grad():
        forward = _time(lambda: network(x)) / TIMING_BATCH
    one = torch.rand(1, channels, size, size, device=device)

    def backward(images: torch.Tensor):
        y = images.clone().requires_grad_()
        network(y).max(1).values.sum().backward()

    chunk = torch.rand(default_chunk_size(one), channels, size, size, device=device)

    times = PassTimes(
        forward=forward,
        backward=_time(lambda: backward(one)),
        batched_backward=_time(lambda: backward(chunk), warm_up=False) / len(chunk),
        threads=torch.get_num_threads(),
        measured_at=time.time(),
        size=size,
    )
    with _lock:
        _cache[key] = times
    return times


def map_passes(method: str, params: dict | None = None, size: int = 224) -> int:
    """Forward + backward passes one map of ``method`` takes (``Method.cost``; the method's
    defaults where ``params`` lacks them); forward-only passes are not counted here.

    Example:
        >>> map_passes("smoothgrad", {"samples": 20}), map_passes("gradcam"), map_passes("rise")
        (20, 1, 0)
    """
    return METHODS[method].cost(params, size).backward


def map_seconds(times: PassTimes, method: str, params: dict | None = None) -> float:
    """Seconds for one map of ``method`` with ``params`` at the timed model's input size."""
    cost = METHODS[method].cost(params, times.size)
    backward = times.batched_backward if cost.batched and times.batched_backward else times.backward
    return cost.forward * times.forward + cost.backward * backward


def maps_seconds(times: PassTimes, maps: dict, images: int = 1) -> float:
    """Seconds for the maps ``{method: params}`` of ``images`` images."""
    return images * sum(map_seconds(times, m, p) for m, p in maps.items())


def validation_seconds(
    times: PassTimes, images: int, maps: dict, curve_points: int = 0, baselines: int = 2
) -> float:
    """A validation run: each image's maps, and for each map (and each baseline) a deletion and
    an insertion curve of ``curve_points`` points (0 = no curves); the curves' first and last
    points are shared by the maps of an image (three forward passes per image)."""
    if curve_points < 2:
        return maps_seconds(times, maps, images)
    curves = images * ((len(maps) + baselines) * (2 * curve_points - 4) + 3) * times.forward
    return maps_seconds(times, maps, images) + curves


def stability_seconds(times: PassTimes, variants: int, maps: dict) -> float:
    """A stability check: the maps of the original and of every variant."""
    return maps_seconds(times, maps, variants + 1) + (variants + 1) * times.forward


def sanity_seconds(times: PassTimes, steps: int, maps: dict) -> float:
    """A model-randomisation check: every map at the trained model and at each of ``steps``
    randomisation steps."""
    return maps_seconds(times, maps, steps + 1) + (steps + 1) * times.forward


def describe_seconds(seconds: float) -> str:
    """Rounded, in words: 'under 5 s', 'about 20 s', 'about 3 min'."""
    if not math.isfinite(seconds):
        return "unknown"
    if seconds < 5:
        return "under 5 s"
    if seconds < 90:
        return f"about {5 * round(seconds / 5):.0f} s"
    return f"about {round(seconds / 60):.0f} min"


# ---- work ordered by a file: a limit on its total cost ------------------------------------------
# A report's replay data, a review batch or a gallery set can ask for work whose total is enormous
# although each parameter is within its method's limits (many maps at the most expensive
# settings). Each entry point adds up the passes before it starts and refuses past this limit.

MAX_PASSES_ENV = "SALIENCY_MAX_PASSES"
DEFAULT_MAX_PASSES = 200_000  # about 3 hours of ResNet-18 maps on 4 CPU threads, minutes on a GPU


class TooMuchWork(ValueError):
    """Work from a file whose estimated cost is past the operator's limit (``max_passes``)."""


def max_passes() -> int:
    """Network passes one piece of work from a file may take (``SALIENCY_MAX_PASSES``, default
    ``DEFAULT_MAX_PASSES``).

    Raises:
        ValueError: the variable is set but not a whole number from 1 to 10**12.
    """
    raw = os.environ.get(MAX_PASSES_ENV, "").strip().replace("_", "")
    if not raw:
        return DEFAULT_MAX_PASSES
    if not raw.isdigit() or not 1 <= int(raw) <= 10**12:
        raise ValueError(f"{MAX_PASSES_ENV} must be a whole number from 1 to 10**12; got {raw[:40]!r}.")
    return int(raw)


def work_passes(maps: Iterable[tuple[str, dict | None]], repeat: int = 1) -> int:
    """Passes of the maps ``(method, params)`` (each ``map_passes``), ``repeat`` times (e.g. once
    per image). Unknown methods count nothing: the run refuses them itself."""
    total = 0
    for method, params in maps:
        if isinstance(method, str) and method in METHODS:
            total += map_passes(method, params if isinstance(params, dict) else {})
    return total * max(0, int(repeat))


def check_work(passes: int, what: str) -> int:
    """``passes`` when it is within ``max_passes()``.

    Args:
        passes: the estimated cost (``work_passes``).
        what: the work, for the message ("This report's replay data", "The gallery run").
    Raises:
        TooMuchWork: past the limit, with the estimate and the limit in words; nothing was started.

    Example:
        >>> check_work(work_passes([("smoothgrad", {"samples": 50})], repeat=10), "The gallery run")
        500
    """
    limit = max_passes()
    if passes > limit:
        raise TooMuchWork(
            f"{what} asks for about {passes:,} network passes, more than the limit of {limit:,} "
            f"set by the operator ({MAX_PASSES_ENV}); nothing was started. Ask for fewer images, maps, "
            "samples or steps, or ask the operator to raise the limit."
        )
    return passes
