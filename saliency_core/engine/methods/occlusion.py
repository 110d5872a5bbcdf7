"""Occlusion (Zeiler & Fergus 2014, Sec. 4.2): a square of a plain colour slides over the image;
each pixel's value is the drop of the target's score when a square covering it is hidden,
averaged over the squares that cover it (as Captum's ``Occlusion`` does).

Needs forward passes only, so it runs on any model (TorchScript, ONNX). The hidden copies are
scored in batches; on a network that torch.fx can trace, each copy's early layers are recomputed
only around its square (saliency_core/engine/_incremental.py), which gives the same scores as the plain
batched pass up to float rounding and is checked against it on every image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._fast import OPTIONS, check_target
from .._incremental import PatchedForward
from ._autograd import as_targets, count, target_scores
from ._registry import Cost, Setting, register, whole
from .integrated import make_baseline

FILLS = ("grey", "black", "mean", "blurred")
CHECKED_COPIES = 2  # hidden copies per image scored both ways to check the incremental pass


def fill_image(x: torch.Tensor, fill: str) -> torch.Tensor:
    """What hidden pixels become, (B, C, H, W): ``grey`` 0.5 (Zeiler & Fergus's grey square),
    ``black`` 0, ``mean`` each image's mean colour, ``blurred`` a Gaussian blur (sigma 10 px)."""
    if fill == "grey":
        return torch.full_like(x, 0.5)
    if fill == "black":
        return torch.zeros_like(x)
    if fill == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if fill == "blurred":
        return make_baseline(x, "blurred")
    raise ValueError(f"fill must be one of {', '.join(FILLS)}; got {fill!r}.")


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Top (or left) edges of the squares along one side: every ``stride`` pixels, plus one flush
    with the far edge when the stride does not reach it, so every pixel is covered."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def _default_chunk(x: torch.Tensor) -> int:
    """Hidden copies per pass: 32 on a CPU (bench/occlusion_rise.py), 128 on a GPU."""
    return 128 if x.device.type == "cuda" else 32


def occlusion_cost(params: dict, size: tuple[int, int]) -> Cost:
    """One forward pass for the image's score and one per hidden square (169 + 1 at 224 px with
    the defaults); no gradients."""
    height, width = size
    window = min(whole(params["window"]), height, width)
    stride = min(whole(params["stride"]), window)
    squares = len(window_starts(height, window, stride)) * len(window_starts(width, window, stride))
    return Cost(forward=1 + squares)


@register(
    "occlusion",
    "Occlusion",
    "Hides one square of the image at a time: the map shows how much the class score drops.",
    defaults={"window": 32, "stride": 16, "fill": "grey"},
    reduction="sum",
    signed=True,
    needs=(),
    passes=occlusion_cost,
    settings={
        "window": Setting(
            "Occlusion square (pixels)",
            "Side of the grey square hidden at a time.",
            widget="select_slider",
            choices=(8, 16, 24, 32, 48, 64),
        ),
        "stride": Setting(
            "Occlusion step (pixels)",
            "How far the square moves between tries; must not exceed its side. "
            "Half the side: every pixel is hidden by up to 4 squares.",
            widget="select_slider",
            choices=(4, 8, 16, 24, 32),
        ),
    },
    meaning="hiding this part lowers {score} most",
    reference="Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks",
)
def occlusion(
    network: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    window: int = 32,
    stride: int = 16,
    fill: str = "grey",
    chunk_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Score drop when a ``window`` x ``window`` square around each pixel is hidden, (B, 1, H, W).

    Args:
        window: side of the hidden square, pixels (default 32: 1/7 of a 224 px input, about one
            object part).
        stride: step between squares, pixels (default 16: 13 x 13 = 169 squares at 224 px, each
            pixel covered by up to 4).
        fill: ``grey`` (default, as Zeiler & Fergus), ``black``, ``mean`` or ``blurred``.
        chunk_size: hidden copies per forward pass; never changes the result beyond rounding.
        progress: ``progress(done, total)`` after each batch of squares.
    Returns:
        Tensor (B, 1, H, W): for each pixel, the mean over the squares covering it of
        score(x) - score(x with the square hidden); the score is the target's logit.
    """
    x = x.detach()
    batch, _, height, width = x.shape
    window = count("Occlusion window", window, 1, min(height, width))
    stride = count("Occlusion stride", stride, 1, window)
    target = as_targets(target, batch, x.device)
    with torch.no_grad():
        reference = fill_image(x, fill)
        base = target_scores(network, x, target)  # the network as written; checks the targets
        rows, cols = window_starts(height, window, stride), window_starts(width, window, stride)
        boxes = [(r, c) for r in rows for c in cols]
        per_chunk = max(1, int(chunk_size or _default_chunk(x)))
        total = torch.zeros(batch, 1, height, width, dtype=torch.float64, device=x.device)
        covered = torch.zeros(1, 1, height, width, dtype=torch.float64, device=x.device)
        for r, c in boxes:
            covered[..., r : r + window, c : c + window] += 1
        for b in range(batch):
            image, fill_b, t = x[b : b + 1], reference[b : b + 1], int(target[b])
            run = PatchedForward(network, image) if OPTIONS["incremental"] else None
            if run is not None and not run.usable:
                run = None
            for start in range(0, len(boxes), per_chunk):
                chunk = boxes[start : start + per_chunk]
                ys = torch.tensor([r for r, _ in chunk], device=x.device)
                xs = torch.tensor([c for _, c in chunk], device=x.device)
                patches = torch.cat([fill_b[:, :, r : r + window, c : c + window] for r, c in chunk])
                logits = None
                if run is not None:
                    logits = run(ys, xs, patches)
                    if start == 0 and not _agrees(network, logits, image, chunk, patches, window):
                        run, logits = None, None
                if logits is None:
                    logits = network(_hidden(image, chunk, patches, window))
                if logits.dim() != 2:
                    raise ValueError(
                        "Expected the model to return one score per class, shape (batch, "
                        f"classes); got shape {tuple(logits.shape)}."
                    )
                check_target(target[b : b + 1], logits.shape[1])
                drops = (base[b] - logits[:, t]).double()
                for (r, c), drop in zip(chunk, drops):
                    total[b, :, r : r + window, c : c + window] += drop
                if progress is not None:
                    progress(b * len(boxes) + start + len(chunk), batch * len(boxes))
    return (total / covered).to(x.dtype)


def _hidden(image: torch.Tensor, chunk, patches: torch.Tensor, window: int) -> torch.Tensor:
    """Copies of ``image`` (1, C, H, W), copy i with ``patches[i]`` at box ``chunk[i]``."""
    copies = image.expand(len(chunk), *image.shape[1:]).clone()
    for i, (r, c) in enumerate(chunk):
        copies[i, :, r : r + window, c : c + window] = patches[i]
    return copies


def _agrees(
    network: nn.Module, logits: torch.Tensor, image: torch.Tensor, chunk, patches: torch.Tensor, window: int
) -> bool:
    """Whether the incremental pass gave the plain pass's logits on the first copies (1e-4)."""
    n = min(CHECKED_COPIES, len(chunk))
    plain = network(_hidden(image, chunk[:n], patches[:n], window))
    return plain.shape == logits[:n].shape and bool(
        (plain - logits[:n]).norm() <= 1e-4 * plain.norm() + 1e-12
    )
