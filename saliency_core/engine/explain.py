"""explain(): one image, one method -> an Explanation with everything needed to replay it."""

from __future__ import annotations

import inspect
import platform
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch.overrides import TorchFunctionMode
from torchvision.transforms.functional import to_tensor

from .classifier import Classifier
from .convergence import Readout
from .devices import describe as describe_device
from .images import ImageSource, image_hash, load_image
from .methods import METHODS, Method
from .plans import choose as choose_plan
from .plans import using as using_plan

# Parameters the public explain() signature always carries; a method that does not use one
# ignores it. Any other unknown name is an error.
COMMON_PARAMS = {"samples", "noise", "seed"}
RUNTIME_PARAMS = {"chunk_size", "progress", "preview"}  # never change the result, never recorded


@dataclass
class Explanation:
    """The result of one method on one image.

    Attributes:
        attribution: float32 (C, H, W) at the model's input resolution, as the method returned it.
        saliency: float32 (H, W), the map that is drawn and measured (``reduction`` says how).
        target: class index explained; ``target_label`` its name.
        method: registry name; ``params`` every parameter used, seed included.
        reduction: how channels were reduced (``max_abs`` or ``sum``).
        image: the crop the model saw (PIL RGB, H x W), for overlays.
        prediction: top-5 (index, label, probability).
        diagnostics: method checks, e.g. Integrated Gradients' completeness gap, and for averaging
            methods ``convergence``: the readout of saliency_core/engine/convergence.py (verdict, estimated
            re-run agreement, samples or steps used).
        device: where it was computed (``cpu``, ``cuda:0 (NVIDIA H200)``).
    """

    attribution: np.ndarray
    saliency: np.ndarray
    target: int
    target_label: str
    method: str
    params: dict
    reduction: str
    image: Image.Image
    prediction: list[tuple[int, str, float]]
    image_hash: str
    model_fingerprint: str
    diagnostics: dict = field(default_factory=dict)
    seconds: float = 0.0
    device: str = "cpu"

    def record(self) -> dict:
        """JSON-ready description: enough to recompute this map."""
        return {
            "method": self.method,
            "params": self.params,
            "target": self.target,
            "target_label": self.target_label,
            "reduction": self.reduction,
            "prediction": [{"index": i, "label": l, "probability": p} for i, l, p in self.prediction],
            "image_hash": self.image_hash,
            "model_fingerprint": self.model_fingerprint,
            "diagnostics": self.diagnostics,
            "seconds": round(self.seconds, 3),
            "device": self.device,
            "versions": versions(),
        }


def versions() -> dict:
    import torchvision

    from .._version import __version__

    return {
        "saliency_core": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def reduce_channels(attribution: torch.Tensor, reduction: str) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W): ``max_abs`` = max_c |a_c| (Simonyan et al. 2014), ``sum`` = sum_c a_c."""
    if reduction == "max_abs":
        return attribution.abs().amax(dim=1)
    if reduction == "sum":
        return attribution.sum(dim=1)
    raise ValueError(f"Unknown channel reduction {reduction!r}; use 'max_abs' or 'sum'.")


def resolve_params(method: Method, params: dict, model: Classifier | None = None) -> dict:
    """The method's defaults updated with ``params``; unknown names raise ValueError."""
    unknown = set(params) - set(method.defaults) - COMMON_PARAMS - RUNTIME_PARAMS
    if unknown:
        raise ValueError(
            f"Method {method.name!r} takes {', '.join(sorted(method.defaults)) or 'no parameters'}; "
            f"got unknown {', '.join(sorted(unknown))}."
        )
    resolved = dict(method.defaults)
    resolved.update({k: v for k, v in params.items() if k in method.defaults})
    if "layer" in resolved and resolved["layer"] is None and model is not None:
        resolved["layer"] = model.gradcam_layer
        if "reshape" in resolved and resolved["reshape"] is None:  # the model's layer, its reshape
            resolved["reshape"] = model.gradcam_reshape
    return resolved


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; available: {', '.join(METHODS)}.")
    return METHODS[name]


def attribute(
    model: Classifier,
    x: torch.Tensor,
    target: torch.Tensor,
    method: str,
    progress: Callable[[int, int], None] | None = None,
    chunk_size: int | None = None,
    preview: Callable[[int, int, torch.Tensor], None] | None = None,
    **params,
) -> tuple[torch.Tensor, dict, dict]:
    """Run a method on a preprocessed batch. Returns (attribution, params used, diagnostics).

    ``progress``, ``chunk_size`` and ``preview`` reach the methods that take them and never
    change the result. Averaging methods run in the execution plan chosen for the model on this
    machine (saliency_core/engine/plans.py), recorded as ``diagnostics["plan"]``. Methods that
    average (SmoothGrad family, Integrated Gradients) add their convergence readout as
    ``diagnostics["convergence"]``: one dict per image (saliency_core/engine/convergence.py), on
    the displayed saliency (the method's ``reduction``)."""
    m = get_method(method)
    used = resolve_params(m, params, model)
    accepted = inspect.signature(m.attribute).parameters
    runtime = {
        k: v
        for k, v in (("progress", progress), ("chunk_size", chunk_size), ("preview", preview))
        if k in accepted and v is not None
    }
    if "readout" in accepted:
        runtime["readout"] = Readout(lambda a: reduce_channels(a, m.reduction))
    plan = choose_plan(model, method, used)  # averaging methods only (saliency_core/engine/plans.py)
    with using_plan(plan["plan"] if plan else None):
        attribution = m.attribute(model.network, x, target, **used, **runtime)
    diagnostics = m.check(model.network, x, target, attribution, used) if m.check else {}
    if "readout" in runtime and runtime["readout"].last is not None:
        diagnostics = {**diagnostics, "convergence": runtime["readout"].last}
    if plan is not None:
        diagnostics = {**diagnostics, "plan": plan}
    return attribution, used, diagnostics


def explain(
    model: Classifier,
    image: ImageSource,
    method: str = "smoothgrad",
    target: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk_size: int | None = None,
    preview: Callable[[int, int, np.ndarray], None] | None = None,
    **params,
) -> Explanation:
    """Explain the model's score for ``target`` on ``image`` with ``method``.

    Args:
        model: a loaded ``Classifier``.
        image: PIL image, path or bytes.
        method: a name in ``METHODS``.
        target: class index; None explains the predicted class (multi-label: the most probable one;
            any class can be explained).
        progress: ``progress(done, total)`` for methods that work in chunks.
        preview: ``preview(done, total, saliency)`` with the running (H, W) map, for methods
            that can show one before they finish (SmoothGrad and its variants).
        **params: method parameters (``samples``, ``noise``, ``seed``, ``steps``, ``baseline`` ...);
            ``samples``, ``noise`` and ``seed`` are ignored by methods that do not use them.
    Returns:
        Explanation with ``attribution`` (C, H, W) and ``saliency`` (H, W), float32.

    Example:
        >>> exp = explain(load_model("demo"), "chelsea.png", method="smoothgrad", samples=50)
        >>> exp.saliency.shape
        (224, 224)
    """
    m = get_method(method)
    resolve_params(m, params)  # fail on bad names before any work
    image = load_image(image)
    crop = model.crop(image)
    x = to_tensor(crop).unsqueeze(0).to(model.device)
    prediction = model.predict(x, k=5)
    if target is None:
        target = prediction[0][0]
    if not 0 <= int(target) < len(model.labels):
        raise ValueError(f"Target class must be between 0 and {len(model.labels) - 1}; got {target}.")
    start = time.perf_counter()

    def running(done, total, partial):
        preview(done, total, reduce_channels(partial, m.reduction)[0].float().cpu().numpy())

    attribution, used, diagnostics = attribute(
        model,
        x,
        torch.tensor([int(target)], device=x.device),
        method,
        progress=progress,
        chunk_size=chunk_size,
        preview=running if preview else None,
        **params,
    )
    saliency = reduce_channels(attribution, m.reduction)
    return Explanation(
        attribution=attribution[0].float().cpu().numpy(),
        saliency=saliency[0].float().cpu().numpy(),
        target=int(target),
        target_label=model.labels[int(target)],
        method=method,
        params=used,
        reduction=m.reduction,
        image=crop,
        prediction=prediction,
        image_hash=image_hash(image),
        model_fingerprint=model.fingerprint,
        diagnostics=_first(diagnostics),
        seconds=time.perf_counter() - start,
        device=describe_device(x.device),
    )


def _first(diagnostics: dict) -> dict:
    """Per-batch lists -> the single image's values."""
    return {k: (v[0] if isinstance(v, list) and len(v) == 1 else v) for k, v in diagnostics.items()}


_REASONS = {
    "gradient": {
        "onnx": "needs gradients of the score with respect to the pixels, and this ONNX model runs in "
        "onnxruntime, which gives none (occlusion and RISE need no gradients)",
        None: "needs gradients of the score with respect to the pixels, and this model gives none "
        "(occlusion and RISE need no gradients)",
    },
    "conv": {
        "torchscript": "needs a convolutional feature map, and this TorchScript model runs its layers "
        "compiled, so none can be hooked",
        None: "needs a convolutional layer, and this model has none that can be hooked",
    },
    "relu": {
        "torchscript": "needs ReLU/ReLU6 activations it can intercept, and this TorchScript model runs "
        "them compiled",
        "exported_program": "needs ReLU/ReLU6 activations it can intercept, and this torch.export "
        "program calls them as compiled ATen operators",
        None: "needs ReLU or ReLU6 activations that can be intercepted, and this model has none "
        "(it uses other activations or is compiled)",
    },
}
# smooth activations: guided backprop's rule (Springenberg et al. 2015) gates gradients where a
# ReLU's input was positive; these have no such gate
_SMOOTH = {
    "gelu": "GELU",
    "silu": "SiLU",
    "hardswish": "hard swish",
    "mish": "Mish",
    "elu": "ELU",
    "selu": "SELU",
    "celu": "CELU",
    "softplus": "softplus",
}
_capabilities: weakref.WeakKeyDictionary[torch.nn.Module, dict] = weakref.WeakKeyDictionary()
_capabilities_lock = threading.Lock()


class _SmoothActivations(TorchFunctionMode):
    """Counts calls of smooth activations (GELU, SiLU ...) by name during a forward pass."""

    def __init__(self):
        super().__init__()
        self.seen: dict[str, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "").rstrip("_")
        if name in _SMOOTH:
            self.seen[_SMOOTH[name]] = self.seen.get(_SMOOTH[name], 0) + 1
        return func(*args, **(kwargs or {}))


def _activations(model: Classifier) -> tuple[int, dict[str, int]]:
    """ReLU-type calls guided backprop intercepts, and smooth activations by name, in one forward
    pass on a test image."""
    from .methods.guided import guided_relus

    x = torch.full((1, model.channels, model.input_size, model.input_size), 0.5, device=model.device)
    mode, smooth = guided_relus(), _SmoothActivations()
    with torch.enable_grad(), mode, smooth:
        model.network(x.requires_grad_(True))
    return mode.count, smooth.seen


def _relu_reason(count: int, smooth: dict[str, int], fmt: str | None) -> str | None:
    if count:
        return None
    if smooth and fmt not in ("torchscript", "exported_program"):
        names = " and ".join(sorted(smooth, key=smooth.get, reverse=True)[:2])
        return (
            f"needs ReLU or ReLU6 activations, and this model uses {names} instead (as vision transformers "
            "do): a smooth activation has no gate that passes gradients back only where its input was "
            "positive, so the rule of Springenberg et al. 2015 does not apply"
        )
    return _REASONS["relu"].get(fmt, _REASONS["relu"][None])


def _gives_gradients(network: torch.nn.Module) -> bool:
    """False when a part of the network computes outside autograd (an ONNX session says so with
    ``gives_gradients = False``)."""
    return all(getattr(m, "gives_gradients", True) for m in network.modules())


def model_capabilities(model: Classifier) -> dict[str, str | None]:
    """What the methods' ``needs`` ask of a model: ``{"gradient": reason or None, "conv": ...,
    "relu": ..., "attention": ...}`` (``attention``: ``nn.MultiheadAttention`` layers, for attention
    rollout); None means the model offers it.

    ``relu`` is found with one test forward pass (cached per network): the activations must
    be visible to guided backprop's ``TorchFunctionMode``, which a TorchScript or exported
    model's compiled activations are not. A model without gradients (ONNX) offers none of the three.
    """
    with _capabilities_lock:
        known = _capabilities.get(model.network)
    if known is not None:
        return known
    fmt = (model.card or {}).get("format")
    if not _gives_gradients(model.network):  # hooks and guided gradients need gradients first
        gradient = _REASONS["gradient"].get(fmt, _REASONS["gradient"][None])
        attention = (
            "needs the attention weights of a vision transformer's layers, and this model's layers "
            "cannot be read" + (" (it runs in onnxruntime)" if fmt == "onnx" else "")
        )
        caps = {"gradient": gradient, "conv": gradient, "relu": gradient, "attention": attention}
    else:
        conv = (
            None
            if model.gradcam_layer
            else (
                (model.card or {}).get("gradcam_unavailable")
                or _REASONS["conv"].get(fmt, _REASONS["conv"][None])
            )
        )
        try:
            relu = _relu_reason(*_activations(model), fmt)
        except Exception as err:  # noqa: BLE001  a model that fails here fails every method
            relu = f"the model failed a test forward pass ({type(err).__name__}: {err})"
        from .methods.rollout import attention_layers

        attention = (
            None
            if attention_layers(model.network)
            else (
                "needs the multi-head attention layers of a vision transformer with a class token (such as "
                "torchvision's ViT), and this model has none that can be read"
            )
        )
        caps = {"gradient": None, "conv": conv, "relu": relu, "attention": attention}
    with _capabilities_lock:
        _capabilities[model.network] = caps
    return caps


def available_methods(model: Classifier) -> dict[str, str | None]:
    """Method name -> None if usable with ``model``, else the reason it is not.

    A method's ``needs`` (``"gradient"``: input gradients, which an ONNX model lacks; ``"conv"``:
    a convolutional feature map for Grad-CAM; ``"relu"``: interceptable ReLU/ReLU6 for guided
    backprop) are checked against the model once. Occlusion and RISE need none of them.

    Example:
        >>> available_methods(load_model("models/welds_torchscript.pt"))["gradcam"]
        'needs a convolutional feature map, and this TorchScript model runs its layers compiled, ...'
    """
    caps = model_capabilities(model)
    out = {}
    for name, m in METHODS.items():
        reasons = list(dict.fromkeys(caps[need] for need in sorted(m.needs) if caps.get(need)))
        out[name] = "; ".join(reasons) or None
    return out


def check_methods(model: Classifier, methods) -> list[str]:
    """``methods`` without repeats, each known and runnable on ``model``; ValueError otherwise."""
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ValueError("Choose at least one saliency method to check.")
    usable = available_methods(model)
    for m in methods:
        get_method(m)
        if usable.get(m):
            raise ValueError(f"{m} cannot run on this model: {usable[m]}.")
    return methods
