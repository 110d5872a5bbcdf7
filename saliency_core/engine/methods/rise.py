"""RISE (Petsiuk, Das, Saenko 2018, "RISE: Randomized Input Sampling for Explanation of Black-box
Models"): the image is shown through many random masks; each pixel's value is the average of
the target's probability over the masks, weighted by how visible the pixel was (Eq. 6):

    S(p) = 1 / (N * keep) * sum_i  P(target | I * M_i) * M_i(p)

Masks (Sec. 3.2): a grid of ceil(H / cell) x ceil(W / cell) cells, each kept with probability
``keep``, upsampled bilinearly to (cells + 1) * cell pixels and cropped at a random shift of 0 to
cell - 1 pixels, so mask edges fall anywhere. Mask i comes from a CPU generator seeded by
(seed, i), and masks are upsampled on the CPU: the same seed gives the same masks on any device
and however masks are split into batches. Needs forward passes only (any model, ONNX included).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import plan_runtime as plans
from .._fast import averaging, check_target, gradient_network
from ..convergence import Readout
from ._autograd import as_targets, count
from ._registry import SEED, Cost, Setting, register, whole
from .occlusion import fill_image
from .smoothgrad import sample_seed

MAX_MASKS = 100_000


def rise_masks(
    height: int, width: int, cell: int, keep: float, seed: int, start: int, n: int
) -> torch.Tensor:
    """Masks ``start`` .. ``start + n - 1`` of a run, float32 (n, 1, height, width) on the CPU,
    values in [0, 1]."""
    rows, cols = math.ceil(height / cell), math.ceil(width / cell)
    grids, shifts = [], []
    for i in range(start, start + n):
        g = torch.Generator(device="cpu")
        g.manual_seed(sample_seed(seed, i))
        grids.append((torch.rand(rows, cols, generator=g) < keep).float())
        shifts.append(torch.randint(0, cell, (2,), generator=g).tolist())
    up = F.interpolate(
        torch.stack(grids)[:, None],
        size=((rows + 1) * cell, (cols + 1) * cell),
        mode="bilinear",
        align_corners=False,
    ).clamp_(0, 1)  # rounding can pass 1 by an ulp
    return torch.stack([up[k, :, dy : dy + height, dx : dx + width] for k, (dy, dx) in enumerate(shifts)])


def _default_chunk(x: torch.Tensor) -> int:
    """Masked images per pass: 32 on a CPU (bench/occlusion_rise.py), 256 on a GPU."""
    return 256 if x.device.type == "cuda" else 32


def _fraction(name: str, value) -> float:
    try:
        v = float(value)
        ok = math.isfinite(v) and 0 < v < 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a number strictly between 0 and 1; got {value!r}.")
    return v


def rise_cost(params: dict, size: tuple[int, int]) -> Cost:
    """One forward pass per mask, no gradients."""
    return Cost(forward=whole(params["masks"]))


@register(
    "rise",
    "RISE",
    "Shows the image through many random masks: the map is where seeing the image keeps the class likely.",
    defaults={"masks": 1000, "cell": 32, "keep": 0.5, "fill": "black", "seed": 0},
    reduction="sum",
    signed=False,
    needs=(),
    passes=rise_cost,
    settings={
        "masks": Setting(
            "RISE masks",
            "Random masks averaged. The paper used 4000-8000; 1000 take up to about "
            "40 s per image on a 2-core CPU. More masks: a steadier map.",
            low=100,
            high=8000,
            step=100,
        ),
        "seed": SEED,
    },
    averaging=True,
    meaning="the model gives {score} the highest probability when these pixels are visible "
    "(average over random masks, coarse: 32-pixel cells)",
    reference="Petsiuk, Das, Saenko 2018, RISE: Randomized Input Sampling for Explanation",
)
def rise(
    network: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    masks: int = 1000,
    cell: int = 32,
    keep: float = 0.5,
    fill: str = "black",
    seed: int = 0,
    chunk_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    preview: Callable[[int, int, torch.Tensor], None] | None = None,
    readout: Readout | None = None,
) -> torch.Tensor:
    """Probability-weighted average of random masks, (B, 1, H, W) (Eq. 6, Petsiuk et al.).

    Args:
        masks: N (paper: 4000 for ResNet-50, 8000 for VGG16 on ImageNet). Default 1000: one
            224 px image on the demo model within 40 s on this project's shared 2-core CPU (40 ms
            per mask measured, 1 thread, under load); two seeds then agree to Spearman 0.75
            (0.86 at 2000 masks). bench/occlusion_rise.py measures both.
        cell: side of a mask cell, pixels (paper: 7 x 7 cells on 224 px, i.e. 32).
        keep: probability that a cell is visible (paper: 0.5).
        fill: what hidden pixels become; ``black`` (default) is the paper's I * M; ``grey``,
            ``mean`` and ``blurred`` as for occlusion.
        seed: same seed, same masks, same map.
        chunk_size: masked images per forward pass; never changes the result beyond rounding.
        progress: ``progress(done, masks)`` after each batch.
        preview: ``preview(done, masks, running)`` with the map over the masks done so far.
        readout: a ``convergence.Readout`` to fill (``explain`` passes one): mask i goes to
            quarter i % 4, each quarter's map is its own RISE estimate, and the halves are
            quarters 0 + 1 and 2 + 3. The map itself is computed as without a readout.
    Returns:
        Tensor (B, 1, H, W), the same masks for every image of the batch; the target's score is
        its softmax probability, as in the paper.
    """
    x = x.detach()
    batch, _, height, width = x.shape
    masks = count("RISE masks", masks, 1, MAX_MASKS)
    cell = count("RISE cell size", cell, 2, max(2, min(height, width)))
    keep = _fraction("RISE keep probability", keep)
    target = as_targets(target, batch, x.device)
    per_chunk = max(1, int(chunk_size or _default_chunk(x)) // batch)
    total = torch.zeros(batch, 1, height, width, dtype=torch.float64, device=x.device)
    quarters = [torch.zeros_like(total) for _ in range(4)] if readout is not None else []
    with torch.no_grad(), averaging():  # folded BatchNorm allowed: an average (saliency_core/engine/_fast.py)
        reference = fill_image(x, fill)
        net = gradient_network(network, probe=x[:1])
        for start in range(0, masks, per_chunk):
            n = min(per_chunk, masks - start)
            m = rise_masks(height, width, cell, keep, seed, start, n).to(device=x.device, dtype=x.dtype)
            shown = x.unsqueeze(0) * m.unsqueeze(1) + reference.unsqueeze(0) * (1 - m.unsqueeze(1))
            with plans.applied(net, shown.reshape(n * batch, *x.shape[1:])) as (run, batch_in):
                logits = run(batch_in)  # the execution plan explain() chose (saliency_core/engine/plans.py)
            if logits.dim() != 2:
                raise ValueError(
                    "Expected the model to return one score per class, shape (batch, "
                    f"classes); got shape {tuple(logits.shape)}."
                )
            check_target(target, logits.shape[1])
            probability = logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(1)
            p = probability.gather(1, target.repeat(n).view(-1, 1)).view(n, batch)
            total += torch.einsum("nb,nhw->bhw", p.double(), m[:, 0].double()).unsqueeze(1)
            for k, acc in enumerate(quarters):
                pick = (torch.arange(start, start + n, device=x.device) % 4) == k
                acc += torch.einsum("nb,nhw->bhw", p[pick].double(), m[pick, 0].double()).unsqueeze(1)
            done = start + n
            if progress is not None:
                progress(done, masks)
            if preview is not None and done < masks:
                preview(done, masks, (total / (done * keep)).to(x.dtype))
    if readout is not None:
        _read_out(readout, quarters, masks, keep, x.dtype)
    return (total / (masks * keep)).to(x.dtype)


def _read_out(readout: Readout, quarters: list[torch.Tensor], masks: int, keep: float, dtype) -> None:
    """The convergence readout from the four quarters' sums (masks i % 4 == k in quarter k)."""
    batch = quarters[0].shape[0]
    if masks < 4:
        readout.unavailable(batch, masks, f"needs at least 4 masks to compare (got {masks}).", what="masks")
        return
    counts = [len(range(k, masks, 4)) for k in range(4)]
    estimates = [(q / (c * keep)).to(dtype) for q, c in zip(quarters, counts)]
    halves = [
        ((quarters[a] + quarters[b]) / ((counts[a] + counts[b]) * keep)).to(dtype)
        for a, b in ((0, 1), (2, 3))
    ]
    readout.check(estimates, halves, masks, what="masks")
