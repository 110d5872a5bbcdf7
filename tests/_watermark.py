"""A hand-built classifier that scores "apple" by red pixels and also by a white corner
watermark, and a labelled folder where part of the apples carry that watermark (with exact
object boxes as annotations). Shared by the gallery tests (reasons, shortcut groups, command)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from saliency_core.engine.classifier import Classifier

SIDE = 64  # image and model input size
MARK = 6  # watermark side in pixels, top-left corner


class WatermarkScorer(nn.Module):
    """logit(apple) = 10 * mean(relu(redness - 0.2)) + 40 * relu(corner whiteness - 0.8);
    logit(plum) = 10 * mean(relu(blueness - 0.2)). The corner term is large and only alive when
    the watermark is there, so on a watermarked image the gradient sits on the corner."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
        red = torch.relu(r - (g + b) / 2 - 0.2).mean(dim=(1, 2))
        blue = torch.relu(b - (r + g) / 2 - 0.2).mean(dim=(1, 2))
        corner = x[:, :, :MARK, :MARK].min(dim=1).values.mean(dim=(1, 2))
        mark = torch.relu(corner - 0.8) * 40
        return torch.stack([10 * red + mark, 10 * blue], dim=1)


def watermark_model() -> Classifier:
    return Classifier(
        name="hand-built watermark scorer",
        network=WatermarkScorer().eval(),
        labels=["apple", "plum"],
        fingerprint="handbuilt-watermark-scorer-1",
        input_size=SIDE,
        resize=SIDE,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    )


def _picture(rng: np.random.Generator, colour, mark: bool) -> tuple[Image.Image, tuple[int, int, int, int]]:
    pixels = np.full((SIDE, SIDE, 3), 128, np.uint8)
    pixels += rng.integers(0, 8, size=pixels.shape, dtype=np.uint8)
    size = int(rng.integers(14, 22))
    left, top = (int(v) for v in rng.integers(12, SIDE - size - 2, size=2))
    pixels[top : top + size, left : left + size] = colour
    if mark:
        pixels[:MARK, :MARK] = 255
    return Image.fromarray(pixels), (left, top, left + size, top + size)


def write_set(root: Path, apples: int = 12, marked: int = 5, plums: int = 6) -> dict:
    """ImageFolder ``root/apple``, ``root/plum`` and ``root/boxes.csv`` beside it (object boxes).
    Returns {"marked_apples": names, "marked_plums": names, "boxes": path}."""
    rng = np.random.default_rng(7)
    rows, marked_apples, marked_plums = [], [], []
    plan = [("apple", i, (220, 30, 30), i < marked) for i in range(apples)]
    plan += [("plum", i, (40, 40, 220), i == 0) for i in range(plums)]
    for label, i, colour, mark in plan:
        name = f"{label}_{i:02d}.png"
        picture, box = _picture(rng, colour, mark)
        (root / label).mkdir(parents=True, exist_ok=True)
        picture.save(root / label / name)
        rows.append([name, *box])
        if mark:
            (marked_apples if label == "apple" else marked_plums).append(f"{label}/{name}")
    boxes = root.parent / "boxes.csv"
    with open(boxes, "w", newline="") as f:
        csv.writer(f).writerows([["image", "x_min", "y_min", "x_max", "y_max"], *rows])
    return {"marked_apples": marked_apples, "marked_plums": marked_plums, "boxes": boxes}


def write_model(folder: Path) -> Path:
    """The scorer as a traced TorchScript file with its card (64 px, no normalisation), for commands."""
    folder.mkdir(parents=True, exist_ok=True)
    traced = torch.jit.trace(WatermarkScorer().eval(), torch.rand(1, 3, SIDE, SIDE))
    traced.save(str(folder / "watermark.pt"))
    card = folder / "watermark.yaml"
    card.write_text(
        "name: hand-built watermark scorer\nfile: watermark.pt\nlabels: [apple, plum]\n"
        f"input_size: {SIDE}\nresize: {SIDE}\nmean: [0, 0, 0]\nstd: [1, 1, 1]\n"
    )
    return card
