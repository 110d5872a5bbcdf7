"""Reading an operator's model file: the format from its first bytes, pickles loaded weights-only,
state dicts into torchvision architectures, safetensors, TorchScript (screened before loading)."""

from __future__ import annotations

import difflib
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ._pickles import pickle_globals as _pickle_globals
from ._torchscript_screen import screen_archive, screen_graphs
from .untrusted import cut, quote, short

# ---- the operator's own model: formats ------------------------------------------------------

FORMATS = {
    "torchscript": "TorchScript (torch.jit.save)",
    "state_dict": "state dict + torchvision architecture (torch.save)",
    "safetensors": "safetensors weights + torchvision architecture",
    "exported_program": "torch.export program (.pt2)",
    "onnx": "ONNX (onnxruntime)",  # loaded by saliency_core/engine/onnx_model.py
}
CODE_FORMATS = ("torchscript", "exported_program")  # the file holds code that runs when the model runs
_SAVE_HINT = "save a state_dict or TorchScript instead"


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
            raise ValueError(f"{where}: {this} is damaged ({short(err)}).") from None
        if "archive_format" in records:
            return "exported_program"
        if "constants.pkl" in records or any(r.startswith("code/") for r in records):
            return "torchscript"
        if "data.pkl" in records:
            return "checkpoint"
        raise ValueError(
            f"{where}: {this} is a zip archive but not a PyTorch model "
            "(TorchScript, state dict or torch.export .pt2)."
        )
    if head.startswith(b"PK"):
        raise ValueError(
            f"{where}: {this} is damaged or incomplete: it starts like a PyTorch "
            "file but its end is missing (an interrupted copy or download?)."
        )
    if head[:1] == b"\x80":  # pickle protocol 2+: torch.save's legacy format or a plain pickle
        return "checkpoint"
    # safetensors: an 8-byte little-endian header length, then the JSON header
    if len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    raise ValueError(
        f"{where}: {this} is not a PyTorch model file, or it is damaged. Expected "
        "TorchScript (torch.jit.save), a state dict (torch.save(model.state_dict())), "
        "a .safetensors file or a torch.export program (.pt2)."
    )


def _needs_code(name: str) -> bool:
    """A pickle global that the weights-only loader would refuse: anything but torch's own
    tensor rebuilders and a few plain containers."""
    plain = {
        f"{module}.{kind}"
        for module in ("builtins", "__builtin__")
        for kind in ("set", "frozenset", "bytearray", "slice")
    }
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
        return ValueError(
            f"{where}: the file is damaged or not a PyTorch file "
            f"(it cannot be read as a state dict: {short(err, 160)})."
        )
    code = sorted({n for n in names if _needs_code(n)})
    if code or "Unsupported global" in str(err):
        shown = ", ".join(cut(n) for n in code[:4]) + (f" and {len(code) - 4} more" if len(code) > 4 else "")
        whole = any(
            n.startswith(("torchvision.models.", "timm.")) or n.endswith(("Net", "Model")) for n in code
        )
        return ValueError(
            f"{where}: this file is a pickle that needs code to load"
            + (f" (it refers to {shown})" if shown else "")
            + f"; {_SAVE_HINT}."
            + (
                " It looks like a whole model saved with torch.save(model): save "
                "model.state_dict() and name the architecture in a card."
                if whole
                else ""
            )
            + " Nothing in it was run."
        )
    return ValueError(
        f"{where}: the file cannot be read as weights only ({short(err, 160)}); "
        "save it with torch.save(model.state_dict(), path)."
    )


def load_weights_only(source, where: str, raw: bytes | None = None):
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
        raise ValueError(f"{where}: the file is damaged or incomplete ({short(err, 160)}).") from None


def state_dict_from(obj, where: str) -> dict[str, torch.Tensor]:
    """A state dict out of what torch.load returned: the mapping itself, or the one stored under
    ``state_dict`` / ``model_state_dict`` / ``model`` of a training checkpoint."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        kind = "an empty mapping" if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
        raise ValueError(
            f"{where}: expected a state dict (parameter names -> tensors); the file holds {kind}."
        )
    other = [quote(k) for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if other:
        raise ValueError(
            f"{where}: expected a state dict (parameter names -> tensors); these entries are "
            f"not named tensors: {', '.join(other[:5])}. For a training checkpoint, save "
            "model.state_dict() on its own."
        )
    keys = list(obj)
    if all(k.startswith("module.") for k in keys):  # saved from nn.DataParallel
        return {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def listed_names(keys: list[str], limit: int = 6) -> str:
    """The first ``limit`` names (each cut to 80 characters: they may come from a file)."""
    return ", ".join(cut(k) for k in keys[:limit]) + (
        f" and {len(keys) - limit} more" if len(keys) > limit else ""
    )


def build_torchvision(
    architecture: str, state: dict[str, torch.Tensor], where: str, channels: int = 3
) -> nn.Module:
    """torchvision ``architecture`` with ``state`` loaded strictly; the number of classes is read
    from the last weight matrix of the state dict. With ``channels`` 1 the first convolution
    (the stem) takes one channel, as in the file."""
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if architecture not in known:
        close = difflib.get_close_matches(architecture.lower(), known, n=3)
        hint = (
            f" Did you mean {', '.join(close)}?"
            if close
            else " Examples: resnet18, resnet50, efficientnet_b0, mobilenet_v3_large, convnext_tiny, "
            "vit_b_16."
        )
        raise ValueError(
            f"{where}: 'architecture' {quote(architecture)} is not a torchvision classification model.{hint}"
        )
    classes = _classes(architecture, state)
    kwargs = {"weights": None, **({"num_classes": classes} if classes else {})}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = torchvision.models.get_model(architecture, **kwargs)
    except Exception as err:  # constructors raise many kinds
        raise ValueError(
            f"{where}: cannot build torchvision's {architecture} with {classes} classes ({short(err)})."
        ) from None
    if channels != 3:
        _stem_channels(net, state, channels, architecture, where)
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {'x'.join(map(str, state[k].shape))}, {architecture} "
        f"{'x'.join(map(str, expected[k].shape))}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {listed_names(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {listed_names(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} tensor(s) of another shape: {listed_names(shapes, 3)}")
        stem = next(
            (
                k
                for k in expected
                if k in state
                and state[k].dim() == 4
                and expected[k].dim() == 4
                and state[k].shape[1] in (1, 3)
                and state[k].shape[1] != expected[k].shape[1]
                and state[k].shape[0] == expected[k].shape[0]
            ),
            None,
        )
        hint = " Is 'architecture' right?"
        if stem is not None:
            n = state[stem].shape[1]
            hint = (
                f" The file's first convolution ({cut(stem)}) takes {n} channel{'s' if n > 1 else ''}: set "
                f"'channels: {n}' in the card{' (and one mean and std value)' if n == 1 else ''}."
            )
        raise ValueError(
            f"{where}: the state dict does not fit torchvision's {architecture}: "
            + "; ".join(parts)
            + "."
            + hint
        )
    net.load_state_dict(state, strict=True)
    return net


def _stem_channels(
    net: nn.Module, state: dict[str, torch.Tensor], channels: int, architecture: str, where: str
) -> None:
    """Replace ``net``'s first convolution (the stem, three input channels) by one that takes
    ``channels``, as the state dict's weights do. Exactly one convolution must fit."""
    convs = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3]
    fits = [
        (n, m)
        for n, m in convs
        if m.groups == 1
        and isinstance(state.get(f"{n}.weight"), torch.Tensor)
        and tuple(state[f"{n}.weight"].shape) == (m.out_channels, channels, *m.kernel_size)
    ]
    if len(fits) != 1:
        first = convs[0][0] if convs else None
        got = state.get(f"{first}.weight") if first else None
        shape = "x".join(map(str, got.shape)) if isinstance(got, torch.Tensor) else "missing"
        raise ValueError(
            f"{where}: the card says 'channels: {channels}', but the state dict has no first "
            f"convolution taking {channels} channel{'s' if channels > 1 else ''} for torchvision's "
            f"{architecture} ({cut(first or 'none')}.weight in the file: {shape}). Remove "
            "'channels' for a colour model."
        )
    name, old = fits[0]
    new = nn.Conv2d(
        channels,
        old.out_channels,
        old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dilation=old.dilation,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
    )
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
    except Exception:  # some constructors need real tensors: use the file's order
        pass
    return next(
        (int(v.shape[0]) for k, v in reversed(state.items()) if k.endswith("weight") and v.dim() >= 2), None
    )


def safetensors_state(path: Path, where: str) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file (a format that holds tensors and nothing else)."""
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise ValueError(
            f"{where}: reading .safetensors files needs the package safetensors; install the "
            "project's requirements.txt."
        ) from None
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"{where}: the safetensors file is damaged or incomplete ({short(err, 160)})."
        ) from None
    if not state:
        raise ValueError(f"{where}: the safetensors file holds no tensors.")
    return state


def load_torchscript(path: Path, where: str) -> nn.Module:
    """A TorchScript model, loaded only after its code and pickles pass the screen (see
    ``_torchscript_screen``); its compiled graphs are screened again before anything runs."""
    screen_archive(path, where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load is deprecated in favour of torch.export
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:
        raise ValueError(
            f"{where}: the TorchScript file is damaged or was saved by an incompatible "
            f"PyTorch ({short(err)})."
        ) from None
    screen_graphs(module, where)
    return module
