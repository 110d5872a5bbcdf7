"""SmoothGrad (Smilkov et al. 2017) as a wrapper around any gradient method, with the
squared (SmoothGrad^2) and VarGrad (Adebayo et al. 2018) variants.

Noise sigma = noise x (max - min) of each image (Sec. 3, Smilkov et al.). Every draw is made
on the CPU from the seed and the sample's index, then moved to the device, so the map depends
neither on how samples are chunked, nor on which other images share the batch, nor on the
device. Three ``sampling`` schemes, all unbiased (each sample is standard normal noise):

- ``"independent"``: sample i has its own generator seeded by (seed, i).
- ``"antithetic"``: pairs (x + e, x - e), e drawn as sample i // 2 of "independent"; the pair
  cancels the part of the gradient that is odd in the noise.
- ``"quasi"``: randomised quasi-Monte Carlo: a Sobol sequence (Joe-Kuo directions, one
  dimension per pixel and channel, in blocks of torch's 21,201 dimensions) with a random
  digital shift per replicate, mapped to normal noise by the inverse normal CDF. Sample i is
  point i // 4 of replicate i % 4: four independent replicates, so the convergence readout can
  compare them. (A digital shift, not torch's linear matrix scrambling, which takes about 1 s
  per 19k dimensions, 9 s per 224 px image; a shifted point is exactly uniform, so the mean is
  unbiased.)

bench/convergence.py measures which reaches a settled map in fewer passes: on the demo model
and ResNet-50, antithetic pairs gain 1.06-1.13x and quasi draws 1.01-1.07x over independent
draws (docs/convergence.md), short of the 2x a default change needs; "independent" stays.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torch.quasirandom import SobolEngine

from .._fast import averaging
from ..convergence import QUARTERS, Readout, all_settled, check_level, quarter_of
from ._autograd import as_targets, count, default_chunk_size
from ._registry import METHODS, SEED, Cost, Setting, register, whole

VARIANTS = ("mean", "squared", "vargrad")
SAMPLING = ("independent", "antithetic", "quasi")
MAX_SAMPLES = 10_000
SETTLE_GROWTH = 1.25  # until_settled: the readout is checked at samples x 1.25^k (rounded up to 8s)
# The detail (Gaussian sigma in px on a 224 px input) at which a map is called settled: the finest
# at which SmoothGrad-50 (noise 15 %) settles on every bundled photo with the demo model, measured
# by bench/reproducible_detail.py (bench/results-reproducible-detail.json): 4 px on chelsea.png.
SETTLED_AT = 4.0


def sample_seed(seed: int, index: int, scheme: str = "") -> int:
    """A 63-bit seed for noise sample ``index`` of a run with ``seed`` (and ``scheme``'s own stream)."""
    key = f"{seed}:{index}" if not scheme else f"{seed}:{scheme}:{index}"
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def sample_noise(like: torch.Tensor, seed: int, index: int) -> torch.Tensor:
    """Standard normal noise shaped like one image ``like[0]`` (C, H, W) for sample ``index``.

    Drawn in float32 by a CPU generator and then moved to ``like``'s device and dtype: a CUDA
    generator gives other numbers for the same seed, so a seed is one map on any device."""
    return _independent(like.shape[1:], seed, index).to(device=like.device, dtype=like.dtype)


def _independent(shape, seed: int, index: int) -> torch.Tensor:
    g = torch.Generator(device="cpu")
    g.manual_seed(sample_seed(seed, index))
    return torch.randn(shape, generator=g, dtype=torch.float32)


class QuasiNormal:
    """Randomised Sobol normal draws for one image shape and seed, on the CPU.

    ``draw(start, n)`` gives samples start..start+n-1 (n, *shape) in float32; sample i is point
    i // 4 of replicate i % 4 (each replicate: the same Sobol points, its own random digital
    shift, one 30-bit shift per coordinate). Consecutive calls continue the sequence, so chunking
    changes nothing; a call out of order restarts it from the beginning (slower, same numbers).
    """

    REPLICATES = QUARTERS

    def __init__(self, shape, seed: int):
        self.shape = tuple(shape)
        dims = math.prod(self.shape)
        blocks = -(-dims // SobolEngine.MAXDIM)
        self.widths = [len(r) for r in torch.arange(dims).tensor_split(blocks)]
        self.engines = [SobolEngine(w, scramble=False) for w in self.widths]
        shifts = []
        for r in range(self.REPLICATES):
            g = torch.Generator(device="cpu")
            g.manual_seed(sample_seed(seed, r, "quasi"))
            shifts.append(torch.randint(0, 2**SobolEngine.MAXBIT, (dims,), generator=g, dtype=torch.int64))
        self.shifts = torch.stack(shifts)  # (replicates, dims)
        self.next_point = 0  # Sobol point the engines draw next
        self.held: tuple[int, torch.Tensor] | None = None  # the last point drawn, kept for reuse

    def _points(self, first: int, last: int) -> torch.Tensor:
        """Unshifted Sobol points first..last (inclusive) as 30-bit integers, (m, dims)."""
        rows = []
        if self.held is not None and self.held[0] == first:
            rows.append(self.held[1])
            first += 1
        if first <= last:
            if first < self.next_point:
                for e in self.engines:
                    e.reset()
                self.next_point = 0
            if first > self.next_point:
                for e in self.engines:
                    e.fast_forward(first - self.next_point)
            m = last - first + 1
            scale = float(2**SobolEngine.MAXBIT)
            drawn = torch.cat([e.draw(m, dtype=torch.float64) for e in self.engines], dim=1)
            rows.extend((drawn * scale).to(torch.int64))  # exact: draw returns integers / 2^30
            self.next_point = last + 1
        self.held = (last, rows[-1])
        return torch.stack(rows)

    def draw(self, start: int, n: int) -> torch.Tensor:
        index = torch.arange(start, start + n)
        point, replicate = index // self.REPLICATES, index % self.REPLICATES
        base = self._points(int(point[0]), int(point[-1]))
        ints = torch.bitwise_xor(base[point - point[0]], self.shifts[replicate])
        # the centre of each 2^-30 cell: never 0 or 1, and symmetric about 1/2, so the mean is 0
        u = (ints.double() + 0.5) / float(2**SobolEngine.MAXBIT)
        return torch.special.ndtri(u).float().reshape(n, *self.shape)


def noise_draws(
    like: torch.Tensor,
    seed: int,
    start: int,
    n: int,
    sampling: str = "independent",
    quasi: QuasiNormal | None = None,
) -> torch.Tensor:
    """Standard normal noise (n, C, H, W) for samples start..start+n-1 of ``sampling``, drawn on
    the CPU in float32 and moved to ``like``'s device and dtype (``like``: (B, C, H, W))."""
    shape = like.shape[1:]
    if sampling == "independent":
        eps = torch.stack([_independent(shape, seed, start + i) for i in range(n)])
    elif sampling == "antithetic":
        eps = torch.stack(
            [_independent(shape, seed, (start + i) // 2) * (1 - 2 * ((start + i) % 2)) for i in range(n)]
        )
    elif sampling == "quasi":
        eps = (quasi or QuasiNormal(shape, seed)).draw(start, n)
    else:
        raise ValueError(f"SmoothGrad sampling must be one of {', '.join(SAMPLING)}; got {sampling!r}.")
    return eps.to(device=like.device, dtype=like.dtype)


def unit_of(index: int, sampling: str) -> int:
    """The independent unit a sample belongs to: itself, or its antithetic pair."""
    return index // 2 if sampling == "antithetic" else index


def checkpoints(samples: int, max_samples: int, until_settled: bool) -> list[int]:
    """Sample counts at which the readout is taken: ``samples`` only, or ``samples``,
    then x1.25 rounded up to a multiple of 8 (whole antithetic pairs in four quarters), to
    ``max_samples``. Fixed in advance, so the chunk size never changes where a run stops."""
    points = [samples]
    while until_settled and points[-1] < max_samples:
        grown = 8 * math.ceil(points[-1] * SETTLE_GROWTH / 8)
        points.append(min(max_samples, max(grown, points[-1] + 1)))
    return points


def smoothgrad(
    network: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    samples: int = 50,
    noise: float = 0.15,
    seed: int = 0,
    variant: str = "mean",
    base: str = "gradient",
    sampling: str = "independent",
    until_settled: bool = False,
    max_samples: int = 1000,
    settled_at: float = SETTLED_AT,
    chunk_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    preview: Callable[[int, int, torch.Tensor], None] | None = None,
    readout: Readout | None = None,
) -> torch.Tensor:
    """Average of ``base`` attributions over ``samples`` noisy copies of each image.

    Args:
        samples: n in Eq. 3; the paper sees little change past 50. With ``until_settled``,
            the first count at which the readout is checked.
        noise: sigma as a fraction of each image's value range (paper: 10-20%).
        seed: same seed, same map.
        variant: ``"mean"`` (Eq. 3), ``"squared"`` (mean of squares) or ``"vargrad"`` (variance).
        base: registry name of the gradient method to smooth (``"gradient"``, ``"guided_backprop"``...).
        sampling: ``"independent"``, ``"antithetic"`` or ``"quasi"`` noise draws (module docstring).
        until_settled: keep adding samples (checked at ``samples`` x 1.25^k) until the
            convergence readout calls every image's map settled (saliency_core/engine/convergence.py),
            or ``max_samples`` is reached.
        max_samples: the most samples ``until_settled`` may use.
        settled_at: the detail (Gaussian sigma in px on a 224 px input, one of
            ``detail.LADDER_PX``) at which the readout calls a map settled: ``until_settled``
            stops once the map is reproducible at that detail or a finer one. 0: the raw pixels.
        chunk_size: noisy images per pass (default by device); never changes the result.
        progress: called as ``progress(done, total)`` after each chunk (total: ``samples``, or
            ``max_samples`` with ``until_settled``).
        preview: called as ``preview(done, total, running)`` after each chunk with the
            result over the samples done so far (anytime SmoothGrad); costs one small reduction.
        readout: a ``convergence.Readout`` to fill (``explain`` passes one); with
            ``until_settled`` and none given, one on max |.| over channels is used.
    Returns:
        Tensor (B, C, H, W) like ``base``. The number of samples used is in ``readout.last``.
    """
    samples, max_samples, settled_at = _checked_options(
        samples, noise, variant, sampling, base, until_settled, max_samples, settled_at
    )
    readout = Readout() if until_settled and readout is None else readout
    if readout is not None:
        readout.settled_at = settled_at
    attribute = METHODS[base].attribute
    x, batch = x.detach(), x.shape[0]
    target = as_targets(target, batch, x.device)
    sigma = _sigma(x, noise)
    per_chunk = max(1, (chunk_size or default_chunk_size(x)) // batch)
    quasi = QuasiNormal(x.shape[1:], seed) if sampling == "quasi" else None
    stops = checkpoints(samples, max_samples, bool(until_settled))
    total_count = stops[-1]
    sums, done = _Sums(x, variant, split=readout is not None), 0
    with averaging():  # on a GPU: TF32 convolutions, within the tolerance _fast.py states
        for stop in stops:
            while done < stop:
                n = min(per_chunk, stop - done)
                eps = noise_draws(x, seed, done, n, sampling, quasi)  # (n, C, H, W)
                noisy = (x.unsqueeze(0) + eps.unsqueeze(1) * sigma.unsqueeze(0)).flatten(0, 1)
                grads = attribute(network, noisy, target.repeat(n)).reshape(n, batch, *x.shape[1:])
                sums.add(grads, done, sampling)
                done += n
                if progress is not None:
                    progress(done, total_count)
                if preview is not None and done < total_count:
                    preview(done, total_count, sums.result(done).to(x.dtype))
            if readout is not None:
                sums.check(readout, batch, done)
                if until_settled and all_settled(readout.last):
                    break
    if readout is not None and until_settled:
        _mark_stopped(readout)
    return sums.result(done).to(x.dtype)


def _sigma(x: torch.Tensor, noise: float) -> torch.Tensor:
    """Eq. 3's sigma per image, (B, 1, 1, 1): ``noise`` times the image's value range (max - min)."""
    flat = x.reshape(x.shape[0], -1)
    return (noise * (flat.max(1).values - flat.min(1).values)).view(-1, 1, 1, 1)


def _mark_stopped(readout: Readout) -> None:
    """Say in each image's readout why a stop-when-settled run stopped."""
    for entry in readout.last:
        entry["stopped"] = "settled" if all_settled(readout.last) else "at the maximum"


def _checked_options(samples, noise, variant, sampling, base, until_settled, max_samples, settled_at):
    """(samples, max_samples, settled_at) checked; ValueError in words otherwise."""
    samples = count("SmoothGrad samples", samples, 1, MAX_SAMPLES)
    if not 0 <= float(noise) <= 1:
        raise ValueError(f"SmoothGrad noise is a fraction of the image range, between 0 and 1; got {noise}.")
    if variant not in VARIANTS:
        raise ValueError(f"SmoothGrad variant must be one of {', '.join(VARIANTS)}; got {variant!r}.")
    if sampling not in SAMPLING:
        raise ValueError(f"SmoothGrad sampling must be one of {', '.join(SAMPLING)}; got {sampling!r}.")
    if base not in METHODS or not METHODS[base].smoothable:
        raise ValueError(f"SmoothGrad cannot wrap {base!r}; use a gradient method such as 'gradient'.")
    if until_settled not in (True, False):
        raise ValueError(f"until_settled must be true or false; got {until_settled!r}.")
    max_samples = count("SmoothGrad maximum samples", max_samples, 1, MAX_SAMPLES)
    if until_settled and max_samples < samples:
        raise ValueError(
            f"SmoothGrad maximum samples ({max_samples}) must be at least the samples ({samples})."
        )
    return samples, max_samples, check_level(settled_at)


class _Sums:
    """Float64 sums of the gradients and their squares per quarter of the independent units (for
    the convergence readout; ``split`` False: all in one sum, with no split and no gather); the map
    is the combination of their totals."""

    def __init__(self, x: torch.Tensor, variant: str, split: bool):
        parts = QUARTERS if split else 1
        self.sums = [torch.zeros(x.shape, dtype=torch.float64, device=x.device) for _ in range(parts)]
        self.squares = [torch.zeros_like(s) for s in self.sums]
        self.counts = [0] * QUARTERS
        self.variant, self.split = variant, split

    def add(self, grads: torch.Tensor, done: int, sampling: str) -> None:
        """Add a chunk of per-sample gradients (n, B, C, H, W), samples ``done`` onwards."""
        n = grads.shape[0]
        quarter = torch.tensor(
            [quarter_of(unit_of(done + i, sampling)) if self.split else 0 for i in range(n)]
        )
        for q in quarter.unique().tolist():
            rows = (quarter == q).nonzero().flatten()
            part = grads if len(rows) == n else grads[rows.to(grads.device)]
            self.sums[q] += part.sum(0, dtype=torch.float64)
            self.squares[q] += part.double().square().sum(0)
            self.counts[q] += len(rows)

    def result(self, n: int) -> torch.Tensor:
        return _combine(sum(self.sums), sum(self.squares), n, self.variant)

    def check(self, readout: Readout, batch: int, done: int) -> list[dict]:
        """The readout from the four quarters' sums (needs at least one unit in each quarter)."""
        sums, squares, counts, variant = self.sums, self.squares, self.counts, self.variant
        if min(counts) == 0:
            return readout.unavailable(
                batch, done, f"needs at least {QUARTERS} independent draws to compare (got {done} samples)."
            )
        quarters = [_combine(s, q, c, variant) for s, q, c in zip(sums, squares, counts)]
        halves = [
            _combine(sums[a] + sums[b], squares[a] + squares[b], counts[a] + counts[b], variant)
            for a, b in ((0, 1), (2, 3))
        ]
        return readout.check(quarters, halves, done)


def _combine(total: torch.Tensor, square: torch.Tensor, n: int, variant: str) -> torch.Tensor:
    """Sums over n samples -> mean (Eq. 3), mean of squares, or variance (VarGrad)."""
    if variant == "mean":
        return total / n
    if variant == "squared":
        return square / n
    return (square / n - (total / n).square()).clamp(min=0)  # E[g^2] - E[g]^2


def smoothgrad_cost(params: dict, size: tuple[int, int]) -> Cost:
    """One map of ``base`` per sample (a gradient each for the plain gradient). With
    ``until_settled`` the run stops between ``samples`` and ``max_samples``: counted at ``samples``,
    the least it takes."""
    base = METHODS.get(params["base"])
    per_sample = base.cost({}, size) if base is not None and base.smoothable else Cost(backward=1)
    return per_sample * whole(params["samples"])


_PARAMS = {
    "samples": 50,
    "noise": 0.15,
    "seed": 0,
    "base": "gradient",
    "sampling": "independent",
    "until_settled": False,
    "max_samples": 1000,
    "settled_at": SETTLED_AT,
}
_SETTINGS = {
    "samples": Setting(
        "SmoothGrad samples",
        "Noisy copies averaged per map. The paper sees little change past 50.",
        low=1,
        high=200,
        step=1,
        place="top",
    ),
    "noise": Setting(
        "SmoothGrad noise (fraction of the pixel range)",
        "Standard deviation of the added noise; the paper recommends 0.10-0.20.",
        low=0.0,
        high=0.5,
        step=0.01,
        place="top",
    ),
    "seed": SEED,
    "max_samples": Setting(
        "Most samples",
        "Each sample is one pass through the network; 1,000 take about 20 s on a CPU.",
        widget="number",
        low=1,
        high=2000,
        step=50,
        place="page",
    ),
}
register(
    "smoothgrad",
    "SmoothGrad",
    "Gradient averaged over noisy copies of the image: less speckle, same meaning.",
    defaults=dict(_PARAMS, variant="mean"),
    averaging=True,
    smoothable=False,
    passes=smoothgrad_cost,
    settings=_SETTINGS,
    reference="Smilkov et al. 2017, SmoothGrad: removing noise by adding noise",
)(smoothgrad)
# partial: a direct call of METHODS[name].attribute computes that variant, not the mean
register(
    "smoothgrad_squared",
    "SmoothGrad squared",
    "Mean of squared noisy gradients: emphasises consistently strong pixels.",
    defaults=dict(_PARAMS, variant="squared"),
    averaging=True,
    smoothable=False,
    passes=smoothgrad_cost,
    settings=_SETTINGS,
    reference="Hooker et al. 2019, A Benchmark for Interpretability Methods",
)(partial(smoothgrad, variant="squared"))
register(
    "vargrad",
    "VarGrad",
    "Variance of noisy gradients: where the model's sensitivity changes most.",
    defaults=dict(_PARAMS, variant="vargrad"),
    averaging=True,
    smoothable=False,
    passes=smoothgrad_cost,
    settings=_SETTINGS,
    meaning="the gradient of {score} varies most under small noise here",
    reference="Adebayo et al. 2018, Local explanation methods ... via noise",
)(partial(smoothgrad, variant="vargrad"))
