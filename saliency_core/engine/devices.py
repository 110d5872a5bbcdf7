"""Which device the engine computes on: ``SALIENCY_DEVICE=auto|cpu|cuda`` (default auto).

``auto`` uses the first CUDA GPU when PyTorch sees one, else the CPU. Every random draw is made
on the CPU and then moved (methods/smoothgrad.py, methods/integrated.py,
metrics/randomisation.py), so a seed gives the same noise on any device; what still differs
between devices is float arithmetic (docs/reproducibility.md).
"""

from __future__ import annotations

import os

import torch

ENV = "SALIENCY_DEVICE"
CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device for ``device`` (None: ``$SALIENCY_DEVICE``, default ``auto``).

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (or a ``torch.device``).
    Returns:
        A ``torch.device``.
    Raises:
        ValueError: an unknown name, or a GPU asked for where PyTorch sees none.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    where = f" (from {ENV})" if device is None and os.environ.get(ENV, "").strip() else ""
    if device is None:
        device = os.environ.get(ENV, "").strip() or "auto"
    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(
                f"The device {name!r}{where} is a CUDA GPU, but PyTorch sees none on this "
                "machine; use 'cpu' or 'auto'."
            )
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"The device {name!r}{where} is GPU {index}, but this machine has "
                f"{torch.cuda.device_count()}."
            )
        return torch.device("cuda", index)
    shown = name if len(name) <= 40 else name[:40] + "…"
    raise ValueError(f"Unknown device {shown!r}{where}; use one of {', '.join(CHOICES)} (or cuda:N).")


def describe(device: torch.device) -> str:
    """A short name for records and the sidebar, e.g. ``cpu`` or ``cuda:0 (NVIDIA H200)``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)
