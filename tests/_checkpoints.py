"""Two versions of a small model for the comparison tests: A (accepted) and B (candidate), a
ResNet-18 whose last layer only was changed."""

from __future__ import annotations

import torch
import torchvision

CLASSES = ["sound", "scratch", "dent", "crack", "stain"]


def accepted_and_candidate(classes: list[str] = CLASSES) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A: random weights (seed 0). B: A with seeded noise (0.5 x its std) added to ``fc.weight``."""
    torch.manual_seed(0)
    a = torchvision.models.resnet18(num_classes=len(classes)).eval()
    b = torchvision.models.resnet18(num_classes=len(classes)).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        noise = torch.randn(b.fc.weight.shape, generator=torch.Generator().manual_seed(2))
        b.fc.weight.add_(noise * b.fc.weight.std() * 0.5)
    return a, b
