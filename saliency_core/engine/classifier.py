"""Classifier: a network with its preprocessing, labels and fingerprint; the helpers every loader shares."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import functional as TF

from .devices import describe as describe_device
from .images import ImageSource, load_image

NOT_FINITE_SCORES = (
    "the model's scores for this image are not numbers (NaN) or are infinite, so it has no "
    "prediction and no map can be drawn; the model may be broken or the image far outside what it was "
    "trained on"
)


class Normalize(nn.Module):
    """(x - mean) / std per channel. Part of the network, so maps are taken w.r.t. pixels in [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@dataclass
class Classifier:
    """An image classifier ready to explain.

    ``network`` maps a float tensor (B, channels, H, W) of pixels in [0, 1] to logits
    (B, classes); the mean/std normalisation is its first layer, so gradients, baselines and
    noise are all in pixel units. ``preprocess`` gives exactly what the network sees.

    ``channels`` is 3 (RGB) or 1 (greyscale: images are converted to grey). ``output`` says how
    logits become probabilities: ``"softmax"`` (one class per image) or ``"sigmoid"``
    (multi-label: each class on its own; every class above ``threshold`` is predicted).
    ``gradcam_reshape`` says how the Grad-CAM layer's output becomes a grid
    (``saliency_core.cards.RESHAPES``).
    """

    name: str
    network: nn.Module
    labels: list[str]
    fingerprint: str
    input_size: int = 224
    resize: int = 256
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bicubic"
    gradcam_layer: str | None = None
    card: dict = field(default_factory=dict)
    channels: int = 3
    output: str = "softmax"
    threshold: float = 0.5
    gradcam_reshape: str | None = None

    @property
    def device(self) -> torch.device:
        """Where ``network`` computes (see ``saliency_core.devices``)."""
        t = next(self.network.parameters(), None)
        if t is None:
            t = next(self.network.buffers(), None)
        return t.device if t is not None else torch.device("cpu")

    @property
    def multilabel(self) -> bool:
        """Whether each class is predicted on its own (sigmoid outputs): a prediction is a set."""
        return self.output == "sigmoid"

    def crop(self, image: ImageSource) -> Image.Image:
        """The image the network sees: converted to grey for a one-channel model, the short side
        resized to ``resize``, centre-cropped to ``input_size``. Overlays are drawn on this crop
        (PIL mode ``"RGB"``, or ``"L"`` for a one-channel model)."""
        image = load_image(image)
        if self.channels == 1:
            image = image.convert("L")  # ITU-R 601-2 luma, as PIL and torchvision's Grayscale
        mode = TF.InterpolationMode(self.interpolation)
        image = TF.resize(image, self.resize, interpolation=mode)
        return TF.center_crop(image, self.input_size)

    def preprocess(self, image: ImageSource) -> torch.Tensor:
        """Image -> float32 tensor (1, channels, input_size, input_size), pixels in [0, 1], on the
        CPU (methods and ``predict`` move it to ``device``)."""
        return TF.to_tensor(self.crop(image)).unsqueeze(0)

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (B, classes) for a preprocessed batch (moved to ``device``): softmax over
        the classes, or with ``output="sigmoid"`` each class's own sigmoid (they need not sum to 1)."""
        logits = self.network(x.to(self.device)).float()
        if not torch.isfinite(logits).all():
            raise ValueError(NOT_FINITE_SCORES)
        return logits.sigmoid() if self.multilabel else logits.softmax(dim=1)

    def predict(self, image: ImageSource | torch.Tensor, k: int = 5) -> list[tuple[int, str, float]]:
        """Top-k classes of one image as (index, label, probability), most likely first.

        Example:
            >>> model.predict("chelsea.png", k=1)
            [(282, 'tiger cat', 0.39...)]
        """
        x = image if isinstance(image, torch.Tensor) else self.preprocess(image)
        p = self.probabilities(x)[0]
        values, indices = p.topk(min(k, p.numel()))
        return [(int(i), self.labels[int(i)], float(v)) for v, i in zip(values, indices)]

    def predicted_set(
        self, image: ImageSource | torch.Tensor | None = None, *, probabilities: torch.Tensor | None = None
    ) -> list[tuple[int, str, float]]:
        """What the model predicts for one image, as (index, label, probability), most likely first.

        Single-label (softmax): the most likely class. Multi-label (sigmoid): every class whose
        probability is above ``threshold``, possibly none.

        Args:
            image: an image, or a preprocessed tensor (1, channels, H, W).
            probabilities: instead of ``image``, its (classes,) probabilities already computed.
        Example:
            >>> xray.predicted_set("chest.png")
            [(2, 'effusion', 0.91), (0, 'cardiomegaly', 0.62)]
        """
        if probabilities is None:
            x = image if isinstance(image, torch.Tensor) else self.preprocess(image)
            probabilities = self.probabilities(x)[0]
        p = probabilities.detach().float().cpu().reshape(-1)
        if not self.multilabel:
            i = int(p.argmax())
            return [(i, self.labels[i], float(p[i]))]
        order = [int(i) for i in p.argsort(descending=True, stable=True) if float(p[i]) > self.threshold]
        return [(i, self.labels[i], float(p[i])) for i in order]

    def describe(self) -> dict:
        """What a report or a JSON record needs to name this model and its preprocessing."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "classes": len(self.labels),
            "input_size": self.input_size,
            "resize": self.resize,
            "crop": "centre",
            "interpolation": self.interpolation,
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "output": self.output,
            **({"threshold": self.threshold} if self.multilabel else {}),
            "gradcam_layer": self.gradcam_layer,
            "gradcam_reshape": self.gradcam_reshape,
            "device": describe_device(self.device),
            **({"card": self.card} if self.card else {}),
        }


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names shipped with torchvision (no download)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def freeze(network: nn.Module) -> nn.Module:
    """Eval mode, no weight gradients: methods need gradients w.r.t. the input only."""
    try:
        network.eval()
    except NotImplementedError:  # a flat torch.export module keeps the mode it was exported in
        pass
    for p in network.parameters():
        p.requires_grad_(False)
    return network


def channels_last(network: nn.Module) -> nn.Module:
    """4-D weights in channels-last layout: faster convolutions on CPU (bench/run.py), same maps."""
    return network.to(memory_format=torch.channels_last)


def class_names(card, classes: int, where: str) -> tuple[list[str], str]:
    """The card's class names and where they came from, one per score; without names in the card,
    ImageNet's for 1000 scores, else "class 0" ... Raises ValueError when the counts differ."""
    if card.labels is None:
        if classes == 1000:
            return imagenet_labels(), "default: ImageNet class names (the model has 1000 outputs)"
        return [f"class {i}" for i in range(classes)], f"default: class 0 … class {classes - 1}"
    if len(card.labels) != classes:
        raise ValueError(
            f"{where}: {len(card.labels)} class names ({card.labels_source}) but the model "
            f"gives {classes} scores per image; there must be one name per score."
        )
    return card.labels, card.labels_source
