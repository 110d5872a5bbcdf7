"""ONNX models (``.onnx``) through onnxruntime: prediction and the methods that need only forward
passes (occlusion, RISE). onnxruntime computes no gradients, so gradient methods are listed as
unavailable for these models (``explain.available_methods``).

An ONNX file is a graph of standard operators and weights; loading it runs no Python code. It is
still screened before onnxruntime sees it: at most ``MAX_BYTES``, and no tensor stored in an
external file (ONNX's ``external_data`` would make onnxruntime read any file the model names).
The network the engine sees is ``Normalize`` (from the card) followed by ``OnnxNetwork``, which
takes and returns torch tensors, so ``predict`` and the model-agnostic methods work unchanged.

Example:
    >>> model = load_model("models/welds.onnx")          # or a card naming it: file: welds.onnx
    >>> model.card["format"], available_methods(model)["gradient"]
    ('onnx', 'needs gradients of the score with respect to the pixels, and this ONNX model ...')
"""

from __future__ import annotations

import hashlib
import json
import threading

import numpy as np
import torch
from torch import nn

from .cards import ModelCard
from .classifier import Classifier, Normalize, class_names, file_sha256, freeze
from .code_models import timed_trial
from .model_files import FORMATS
from .probe import checked_logits, probe_batch
from .untrusted import short

MAX_BYTES = 2 * 1024**3 - 1  # protobuf's limit for one message: larger models need external data
_INPUT_TYPES = {"tensor(float)": np.float32}


def _runtime():
    try:
        import onnxruntime
    except ImportError:
        raise ValueError(
            "ONNX models need the package onnxruntime; install the project's requirements.txt."
        ) from None
    return onnxruntime


class OnnxNetwork(nn.Module):
    """An onnxruntime session as a module: float tensor (B, 3, H, W) in, logits (B, classes) out,
    on the input's device. No gradients (``gives_gradients`` tells ``explain``).

    Args:
        session: an ``onnxruntime.InferenceSession`` with one float input (B, 3, H, W).
        batched: whether the model takes several images per call; if not, images run one by one.
    """

    gives_gradients = False

    def __init__(self, session, batched: bool = True):
        super().__init__()
        self.session, self.batched = session, batched
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name
        self.provider = session.get_providers()[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):  # e.g. a torch.fx tracing proxy: onnxruntime takes arrays only
            raise TypeError(f"An ONNX model takes a tensor, not {type(x).__name__}.")
        if torch.is_grad_enabled() and x.requires_grad:
            raise ValueError(
                "This ONNX model runs in onnxruntime, which gives no gradients; use occlusion or RISE."
            )
        data = x.detach().to("cpu", torch.float32).contiguous().numpy()
        if self.batched:
            out = self._run(data)
        else:
            out = np.concatenate([self._run(data[i : i + 1]) for i in range(data.shape[0])])
        return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)

    def _run(self, data: np.ndarray) -> np.ndarray:
        assert isinstance(data, np.ndarray) and data.dtype == np.float32 and data.flags.c_contiguous
        return np.asarray(self.session.run([self.output_name], {self.input_name: data})[0])

    def __deepcopy__(self, memo):
        return self  # a session is read-only: copies (e.g. a folding attempt) share it

    def extra_repr(self) -> str:
        return f"provider={self.provider}, batched={self.batched}"


def _screen(data: bytes, where: str) -> None:
    """ValueError unless ``data`` is an ONNX model whose tensors are all inside the file."""
    try:
        import onnx
    except ImportError:
        raise ValueError(
            "ONNX models need the package onnx (to check the file before loading); "
            "install the project's requirements.txt."
        ) from None
    try:
        model = onnx.load_model_from_string(data)
    except Exception as err:  # protobuf raises several kinds
        raise ValueError(
            f"{where}: the file is not an ONNX model, or it is damaged ({short(err)})."
        ) from None
    if not model.graph.node:
        raise ValueError(f"{where}: the ONNX file holds no graph (is it an ONNX model?).")
    external = next((name for name in _external_tensors(model.graph)), None)
    if external is not None:
        raise ValueError(
            f"{where}: the ONNX model keeps tensor {external[:80]!r} in a separate file "
            "(external data); only self-contained .onnx files are loaded. Save it with "
            "onnx.save_model(model, path, save_as_external_data=False)."
        )


def _external_tensors(graph):
    """Names of tensors stored outside the file, in ``graph`` and its subgraphs."""
    import onnx

    external = onnx.TensorProto.EXTERNAL
    for t in graph.initializer:
        if t.data_location == external:
            yield t.name
    for t in graph.sparse_initializer:
        if t.values.data_location == external or t.indices.data_location == external:
            yield t.values.name
    for node in graph.node:
        for attr in node.attribute:
            tensors = list(attr.tensors) + ([attr.t] if attr.HasField("t") else [])
            for t in tensors:
                if t.data_location == external:
                    yield t.name or node.name
            for sub in list(attr.graphs) + ([attr.g] if attr.HasField("g") else []):
                yield from _external_tensors(sub)


def _providers(ort) -> list[str]:
    """CUDA when onnxruntime has it, else the CPU."""
    available = ort.get_available_providers()
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + [
        "CPUExecutionProvider"
    ]


def _session(data: bytes, where: str):
    ort = _runtime()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only; they come back as exceptions
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(data, sess_options=options, providers=_providers(ort))
    except Exception as err:
        raise ValueError(f"{where}: onnxruntime cannot load this ONNX model ({short(err)}).") from None


def _check_io(session, size: int, where: str) -> bool:
    """ValueError unless the model takes one float image batch of size ``size``; returns whether
    its batch size is free (False: fixed to 1, images run one at a time)."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ValueError(
            f"{where}: the ONNX model takes {len(inputs)} inputs ({names}); it must take "
            "one image batch (batch, 3, height, width)."
        )
    if not outputs:
        raise ValueError(f"{where}: the ONNX model has no output.")
    spec = inputs[0]
    if spec.type not in _INPUT_TYPES:
        raise ValueError(
            f"{where}: the ONNX model's input is {spec.type}; it must be float32 (tensor(float)) pixels."
        )
    shape = list(spec.shape or [])
    if len(shape) != 4:
        raise ValueError(
            f"{where}: the ONNX model's input has shape {shape}; it must be an image batch "
            "(batch, 3, height, width)."
        )
    fixed = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if fixed[1] not in (None, 3):
        raise ValueError(f"{where}: the ONNX model takes {fixed[1]} channels; it must take 3 (RGB).")
    if (fixed[2] not in (None, size)) or (fixed[3] not in (None, size)):
        raise ValueError(
            f"{where}: the ONNX model takes images of {shape[2]} x {shape[3]} pixels but the "
            f"card's input_size is {size}; set 'input_size' in the card to match."
        )
    if fixed[0] not in (None, 1):
        raise ValueError(
            f"{where}: the ONNX model takes batches of exactly {fixed[0]} images; export it "
            "with a free batch size (dynamic_axes) or a batch of 1."
        )
    return fixed[0] is None


_LOAD_LOCK = threading.Lock()


def _card_bytes(card: ModelCard, where: str) -> bytes:
    """The ONNX file's bytes, after refusing card fields that do not apply and empty or too
    large files."""
    for name in ("architecture", "gradcam_layer"):
        if getattr(card, name):
            raise ValueError(
                f"{where}: {name!r} cannot be used with an ONNX model ("
                + (
                    "it carries its own architecture"
                    if name == "architecture"
                    else "its layers run in onnxruntime and cannot be hooked; Grad-CAM is unavailable"
                )
                + "). Remove the field."
            )
    try:
        size = card.file.stat().st_size
        if size == 0:
            raise ValueError(f"{where}: the file is empty.")
        if size > MAX_BYTES:
            raise ValueError(
                f"{where}: the ONNX file is {size / 1024**3:.1f} GiB; at most 2 GiB can be "
                "loaded (the largest single ONNX file)."
            )
        data = card.file.read_bytes()
    except OSError as err:
        raise ValueError(f"{where}: cannot read the file ({err.strerror or err}).") from None
    return data


def _probed_classes(network: nn.Module, size: int, where: str) -> int:
    """The number of class scores on a test batch; ValueError unless there are at least 2, finite,
    and each image's scores do not depend on the others of its batch."""
    x = probe_batch(size, 3)
    try:
        with torch.no_grad():
            one = checked_logits(network(x[:1]), 1, where)
            three = checked_logits(network(x), 3, where)
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(
            f"{where}: the ONNX model fails on a test image of 3 x {size} x {size} pixels: {short(err)}."
        ) from None
    classes = one.shape[1]
    if classes < 2:
        raise ValueError(
            f"{where}: the model gives {classes} score per image; saliency needs one score "
            "per class, at least 2 (for a one-logit binary model, output [-z, z])."
        )
    if not (torch.isfinite(one).all() and torch.isfinite(three).all()):
        raise ValueError(
            f"{where}: the ONNX model's scores on test images are not numbers (NaN) or are infinite; "
            "a model must give finite scores to be explained."
        )
    if not torch.allclose(three[:1], one, rtol=1e-3, atol=1e-4):
        raise ValueError(
            f"{where}: the ONNX model's scores for an image depend on the other images of its batch."
        )
    return classes


def load_onnx(card: ModelCard) -> Classifier:
    """Load the ``.onnx`` model a checked card describes; see ``models.load_model``.

    Raises:
        ValueError: too large, damaged, external data, not one float image input, outputs that
            are not one score per class, class names that do not match, card fields that do
            not apply to ONNX (``architecture``, ``gradcam_layer``).
    """
    where = card.where()
    data = _card_bytes(card, where)
    _screen(data, where)
    timed_trial(card.file, "onnx", card, where)  # a graph can loop or allocate without bound
    with _LOAD_LOCK:
        session = _session(data, where)
    batched = _check_io(session, card.input_size, where)
    net = OnnxNetwork(session, batched)
    network = freeze(nn.Sequential(Normalize(card.mean, card.std), net))
    classes = _probed_classes(network, card.input_size, where)
    labels, labels_source = class_names(card, classes, where)
    fingerprint = file_sha256(card.file)
    ort = _runtime()
    used = {
        "format": "onnx",
        "format_label": FORMATS["onnx"],
        "file": card.file.name,
        "card_file": card.path.name if card.path else None,
        "card_sha256": card.sha256,
        "name": card.name,
        "description": card.description,
        "architecture": None,
        "labels": labels_source,
        "classes": classes,
        "input_size": card.input_size,
        "resize": card.resize,
        "crop": "centre",
        "interpolation": card.interpolation,
        "mean": list(card.mean),
        "std": list(card.std),
        "gradcam_layer": None,
        "batch": "any size" if batched else "one image per call",
        "runtime": f"onnxruntime {ort.__version__} ({net.provider})",
        "defaults": list(card.defaults),
    }
    # cache / record key, as models.load_card: weights plus everything the card changes
    used["digest"] = hashlib.sha256(
        json.dumps(
            {
                **{k: v for k, v in used.items() if k != "runtime"},
                "fingerprint": fingerprint,
                "label_names": labels,
            },
            sort_keys=True,
        ).encode()
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
        gradcam_layer=None,
        card=used,
    )
