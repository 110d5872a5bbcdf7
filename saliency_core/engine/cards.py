"""Model cards: the small JSON/YAML file next to an operator's weights that says how to use them.

A card names the model file, the class names and the preprocessing; every field is optional and
a missing one gets the default stated in ``FIELDS``. This module only reads and checks cards,
lists a models folder and stores uploads; ``models.py`` loads the weights.

Example card (YAML)::

    name: Weld defect classifier v3
    file: welds.pt            # TorchScript, state dict (.pth, .safetensors), torch.export (.pt2)
                              # or ONNX (.onnx)
    architecture: resnet18    # only for a state dict: a torchvision model name
    labels: labels.txt        # or inline: [ok, porosity, crack]
    input_size: 224
    resize: 256
    mean: [0.485, 0.456, 0.406]
    std: [0.229, 0.224, 0.225]
    gradcam_layer: layer4

A one-channel, multi-label model (X-ray findings, several per image)::

    file: chest.pth
    architecture: resnet18
    channels: 1               # images are converted to grey; one mean and std
    mean: [0.5]
    std: [0.25]
    output: sigmoid           # one probability per class; every class above threshold is predicted
    threshold: 0.4

A vision transformer: Grad-CAM reads a token layer reshaped to a grid (found for torchvision's
ViT and Swin; state it for others)::

    architecture: vit_b_16
    gradcam_layer: encoder.layers.encoder_layer_11.ln_1
    gradcam_reshape: class_token
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .untrusted import cut, quote, relative_name

CARD_SUFFIXES = (".json", ".yaml", ".yml")
MODEL_SUFFIXES = (".pt", ".pth", ".pt2", ".ts", ".torchscript", ".safetensors", ".onnx")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GREY_MEAN, GREY_STD = (0.449,), (0.226,)  # ImageNet's three values averaged
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
CHANNELS = (1, 3)
OUTPUTS = ("softmax", "sigmoid")
# how a Grad-CAM layer's output becomes a grid (B, K, h, w): name -> the layer's output shape
RESHAPES = {
    "none": "(batch, channels, height, width), as a convolutional layer gives",
    "channels_last": "(batch, height, width, channels), as torchvision's Swin gives",
    "tokens": "(batch, height x width tokens, channels), a square grid of tokens",
    "class_token": "(batch, 1 + height x width tokens, channels): the first (class) token is dropped, "
    "the rest form a square grid, as ViT gives",
}
MIN_INPUT, MAX_INPUT, MAX_RESIZE = 16, 2048, 4096
MIN_STD = 1e-3  # a smaller std would multiply pixel noise by > 1000
MAX_CARD_BYTES = 1 << 20  # a card is a few hundred bytes
MAX_LABELS_BYTES = 16 << 20  # class-name files (ImageNet-21k's names are ~0.5 MB)
MAX_LABELS, MAX_LABEL_CHARS = 100_000, 200

# field -> (what it is, the default used when the card leaves it out)
FIELDS: dict[str, tuple[str, str]] = {
    "name": ("display name", "the card's (or model file's) name"),
    "file": (
        "model file, relative to the card",
        "the file next to the card with the same name "
        "and a model extension (" + ", ".join(MODEL_SUFFIXES) + ")",
    ),
    "architecture": ("torchvision model name, for a state dict", "none: needed only for a state dict"),
    "labels": (
        "class names: a list, or a .txt (one per line) / .json file",
        "ImageNet's names if the model has 1000 outputs, else class 0, class 1, ...",
    ),
    "input_size": ("side of the square the network sees, pixels", "224"),
    "resize": ("short side before the centre crop, pixels", "input_size x 8/7 (256 for 224)"),
    "crop": ("how the input square is cut", "centre"),
    "interpolation": ("resampling for the resize: " + ", ".join(INTERPOLATIONS), "bilinear"),
    "channels": (
        "colour channels the network takes: 3 (RGB) or 1 (greyscale: images are converted "
        "to grey, overlays are drawn on the grey image)",
        "3",
    ),
    "mean": (
        "per-channel mean, pixels in [0, 1]: three values, or one for channels: 1",
        "ImageNet's 0.485, 0.456, 0.406 (one channel: their average, 0.449)",
    ),
    "std": (
        "per-channel standard deviation, pixels in [0, 1]: three values, or one for channels: 1",
        "ImageNet's 0.229, 0.224, 0.225 (one channel: their average, 0.226)",
    ),
    "output": (
        "how scores become probabilities: softmax (one class per image) or sigmoid (multi-label: "
        "each class on its own, several can be predicted)",
        "softmax",
    ),
    "threshold": (
        "with output: sigmoid, a class is predicted when its probability is above this; between 0 and 1",
        "0.5",
    ),
    "gradcam_layer": (
        "module whose feature map Grad-CAM uses",
        "the last layer with a spatial feature map, found with a test image; for "
        "torchvision's ViT the last encoder block's ln_1, for Swin its features",
    ),
    "gradcam_reshape": (
        "how the Grad-CAM layer's output becomes a grid: "
        + "; ".join(f"{k} = {v}" for k, v in RESHAPES.items()),
        "class_token for torchvision's ViT, channels_last for Swin, else none",
    ),
    "description": ("free text shown with the model", "none"),
}


@dataclass
class ModelCard:
    """A checked model card with every default filled in.

    Attributes:
        file: the model file to load.
        path: the card file, or None when a bare model file was given.
        labels: class names, or None to take the default once the model's outputs are known.
        labels_source: where ``labels`` came from (``"inline"``, a file name, or ``"default"``).
        defaults: the fields the card left out (their values are the stated defaults).
        sha256: of the card file (None without a card).
    """

    file: Path
    name: str
    path: Path | None = None
    architecture: str | None = None
    labels: list[str] | None = None
    labels_source: str = "default"
    input_size: int = 224
    resize: int = 256
    crop: str = "centre"
    interpolation: str = "bilinear"
    channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    output: str = "softmax"
    threshold: float = 0.5
    gradcam_layer: str | None = None
    gradcam_reshape: str | None = None
    description: str | None = None
    defaults: list[str] = field(default_factory=list)
    sha256: str | None = None

    def where(self) -> str:
        """How to name this model in messages: the card's or the file's name."""
        return (self.path or self.file).name


def default_resize(input_size: int) -> int:
    """The usual ImageNet ratio: resize to input_size / 0.875, then centre-crop (256 -> 224)."""
    return int(round(input_size * 8 / 7))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _yaml_loader():
    """PyYAML's safe loader without anchors and aliases: ``&a [*b, *b]`` nested a few times is a
    323-byte card that expands to hundreds of millions of items when printed or walked."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    "anchors and aliases (&name, *name) are not allowed in cards; write the values out",
                    event.start_mark,
                )
            return super().compose_node(parent, index)

    return NoAliasLoader


def parse_card_text(text: str, name: str) -> Any:
    """JSON or YAML text -> Python data. ``name`` (the file name) picks the parser.
    YAML anchors and aliases are refused; nesting deeper than Python's recursion limit is refused."""
    if name.lower().endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{name} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})."
            ) from None
        except RecursionError:
            raise ValueError(f"{name} is nested too deeply to be a card.") from None
        except ValueError as err:  # e.g. an integer with more than 4300 digits
            raise ValueError(f"{name} is not a valid card ({cut(err, 120)}).") from None
    try:
        import yaml
    except ImportError:
        raise ValueError(
            f"{name}: reading YAML cards needs the package pyyaml "
            "(install the project's requirements.txt), or write the card as JSON."
        ) from None
    try:
        return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{name} is not valid YAML{where}: {cut(problem, 200)}.") from None
    except RecursionError:
        raise ValueError(f"{name} is nested too deeply to be a card.") from None
    except ValueError as err:  # a constructor's refusal, e.g. an integer with more than 4300 digits
        raise ValueError(f"{name} is not a valid card ({cut(err, 120)}).") from None


def _read_text(path: Path, what: str, limit: int = MAX_CARD_BYTES) -> str:
    """The file as text, refused when larger than ``limit`` bytes (never read past it)."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as err:
        raise ValueError(f"cannot read {what} {path.name} ({err.strerror or err}).") from None
    if len(data) > limit:
        raise ValueError(f"{what} {path.name} is larger than {limit >> 10:,} KiB; this is not a {what}.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{what} {path.name} is not UTF-8 text.") from None


def is_card_data(data: Any) -> bool:
    """A parsed JSON/YAML file is a card if it is a mapping with at least one card field
    (a labels .json is a list, or a mapping of class indices)."""
    return isinstance(data, dict) and any(k in FIELDS for k in data)


def _card_path(folder: Path, value: str, field_name: str, card: str) -> Path:
    """A path named by the card, kept inside the card's folder (no absolute paths, no '..')."""
    pure = relative_name(value)
    if pure is None:
        raise ValueError(
            f"{card}: '{field_name}' must be a file name inside the card's folder "
            f"(no absolute path, no '..'); got {quote(value)}."
        )
    return folder.joinpath(*pure.parts)


def _whole(data: dict, key: str, card: str, low: int, high: int) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        shape = " (one number: the input is square)" if isinstance(value, (list, tuple)) else ""
        raise ValueError(
            f"{card}: '{key}' must be a whole number of pixels between {low} and {high}"
            f"{shape}; got {quote(value)}."
        )
    return value


def _finite_number(v: Any) -> bool:
    """An int (any size: never converted to float here) or a finite float; not a bool."""
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and math.isfinite(v))


def _per_channel(data: dict, key: str, card: str, channels: int) -> tuple[float, ...]:
    """``mean`` / ``std``: one number per channel (a bare number is one value)."""
    value = data[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    imagenet = IMAGENET_MEAN if key == "mean" else IMAGENET_STD
    grey = GREY_MEAN if key == "mean" else GREY_STD
    numbers = isinstance(value, (list, tuple)) and all(map(_finite_number, value))
    if numbers and channels == 1 and len(value) == 3:
        raise ValueError(
            f"{card}: '{key}' has three values (R, G, B), but the model takes one channel "
            f"('channels: 1', greyscale): give one value, e.g. {key}: [{grey[0]}]; "
            f"got {quote(list(value))}."
        )
    if numbers and channels == 3 and len(value) == 1:
        raise ValueError(
            f"{card}: '{key}' has one value, but the model takes three colour channels (R, G, B; "
            f"'channels' is {3 if 'channels' in data else '3, the default'}): give three values, "
            f"or for a greyscale model set 'channels: 1'; got {quote(list(value))}."
        )
    if not numbers or len(value) != channels:
        if channels == 1:
            raise ValueError(
                f"{card}: '{key}' must be one number for a one-channel model, e.g. "
                f"[{grey[0]}]; got {quote(value)}."
            )
        example = ", ".join(map(str, imagenet))
        raise ValueError(
            f"{card}: '{key}' must be three numbers, one per colour channel R, G, B "
            f"(ImageNet: [{example}]); got {quote(value)}."
        )
    if any(abs(v) > 1.5 for v in value):  # ints of any size compare without converting
        example = ", ".join(map(str, imagenet if channels == 3 else grey))
        raise ValueError(
            f"{card}: '{key}' is in pixel units of [0, 1] (ImageNet: [{example}]); "
            f"got {quote(list(value))}: values on the 0-255 scale must be divided by 255."
        )
    value = tuple(float(v) for v in value)
    if key == "std" and min(value) < MIN_STD:
        raise ValueError(
            f"{card}: 'std' must be positive, at least {MIN_STD:g} (a standard deviation of pixels in "
            f"[0, 1]); got {list(value)}."
        )
    return value


def _choice(data: dict, key: str, card: str, options) -> str:
    value = data[key]
    word = value.strip().lower() if isinstance(value, str) else None
    if word not in options:
        raise ValueError(f"{card}: '{key}' must be one of {', '.join(options)}; got {quote(value)}.")
    return word


def _text(data: dict, key: str, card: str, limit: int = 200) -> str:
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{card}: '{key}' must be text; got {quote(value)}.")
    if len(value) > limit:
        raise ValueError(f"{card}: '{key}' is {len(value):,} characters long; at most {limit:,} are allowed.")
    return value.strip()


def _label_list(items: Any, where: str) -> list[str]:
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"{where}: class names must be a non-empty list; got {quote(items)}.")
    if len(items) > MAX_LABELS:
        raise ValueError(f"{where}: {len(items):,} class names; at most {MAX_LABELS:,} are allowed.")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, bool) or item is None:
            raise ValueError(
                f"{where}: class name {i} is {item!r}, not text (YAML reads yes/no/on/off/"
                "true/false/null as values: put such names in quotes)."
            )
        if isinstance(item, (int, float)):
            item = quote(item, MAX_LABEL_CHARS)
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{where}: class name {i} must be non-empty text; got {quote(item)}.")
        if len(item) > MAX_LABEL_CHARS:
            raise ValueError(
                f"{where}: class name {i} is {len(item):,} characters long; at most "
                f"{MAX_LABEL_CHARS} are allowed."
            )
        out.append(item.strip())
    return out


def read_labels(path: Path, card: str) -> list[str]:
    """Class names from a ``.txt`` (one per line, blank lines skipped) or ``.json`` file
    (a list of names, or a mapping "0".."n-1" -> name or -> [id, name])."""
    if not path.is_file():
        raise ValueError(f"{card}: the labels file {path.name} does not exist next to the card.")
    text = _read_text(path, "labels file", MAX_LABELS_BYTES)
    if path.suffix.lower() == ".txt":
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if not names:
            raise ValueError(f"{card}: the labels file {path.name} has no class names.")
        return names
    if path.suffix.lower() != ".json":
        raise ValueError(
            f"{card}: the labels file must be .txt (one name per line) or .json; got {path.name}."
        )
    data = parse_card_text(text, path.name)
    if isinstance(data, dict):
        if len(data) > MAX_LABELS:
            raise ValueError(f"{path.name}: {len(data):,} class names; at most {MAX_LABELS:,} are allowed.")
        try:
            keys = sorted(data, key=int)
        except (TypeError, ValueError):
            raise ValueError(
                f"{path.name}: a labels mapping must have class indices 0, 1, ... as keys."
            ) from None
        if [int(k) for k in keys] != list(range(len(keys))):
            raise ValueError(f"{path.name}: class indices must run 0 to {len(keys) - 1} without gaps.")
        data = [data[k][-1] if isinstance(data[k], list) and data[k] else data[k] for k in keys]
    return _label_list(data, path.name)


def read_card(path: str | os.PathLike) -> ModelCard:
    """Read and check a model card (.json, .yaml or .yml); defaults fill the missing fields.

    Args:
        path: the card file.
    Returns:
        ModelCard with ``file`` resolved next to the card.
    Raises:
        ValueError: unreadable card, unknown field, wrong value, missing model or labels file.

    Example:
        >>> read_card("models/welds.yaml").input_size
        224
    """
    path = Path(path)
    card = path.name
    if not path.is_file():
        raise ValueError(f"The model card {path} does not exist.")
    data = _card_fields(path, card)
    out = ModelCard(
        file=path,
        name=path.stem,
        path=path,
        sha256=_sha256(path),
        defaults=[k for k in FIELDS if data.get(k) is None],
    )
    given = {k: v for k, v in data.items() if v is not None}
    _read_description(out, given, card)
    _read_model_file(out, given, path, card)
    _read_card_labels(out, given, path.parent, card)
    _read_preprocessing(out, given, card)
    _read_output(out, given, card)
    return out


def _card_fields(path: Path, card: str) -> dict:
    """The card's fields, a mapping of known field names (ValueError otherwise)."""
    data = parse_card_text(_read_text(path, "model card"), card)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(
            f"{card}: a model card must be a mapping of fields (name: ..., file: ...); "
            f"got a {type(data).__name__}."
        )
    for key in data:
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key)[:100], FIELDS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            shown = f"'{key}'" if isinstance(key, str) and len(key) <= 60 else quote(key, 60)
            raise ValueError(f"{card}: unknown field {shown}{hint}. Known fields: {', '.join(FIELDS)}.")
    return data


def _read_description(out: ModelCard, given: dict, card: str) -> None:
    """Name, description, architecture and the Grad-CAM layer."""
    if "name" in given:
        out.name = _text(given, "name", card, limit=1000)[:200]
    if "description" in given:
        out.description = _text(given, "description", card, limit=4000)
    if "architecture" in given:
        out.architecture = _text(given, "architecture", card)
    if "gradcam_layer" in given:
        out.gradcam_layer = _text(given, "gradcam_layer", card)
    if "gradcam_reshape" in given:
        out.gradcam_reshape = _choice(given, "gradcam_reshape", card, tuple(RESHAPES))


def _read_model_file(out: ModelCard, given: dict, path: Path, card: str) -> None:
    """The model file: named by 'file', else the one file with a model extension next to the card."""
    folder = path.parent
    if "file" in given:
        out.file = _card_path(folder, _text(given, "file", card), "file", card)
        if not out.file.is_file():
            raise ValueError(
                f"{card}: the model file {quote(given['file'])} does not exist next to the card."
            )
    else:
        found = [path.with_suffix(s) for s in MODEL_SUFFIXES if path.with_suffix(s).is_file()]
        if not found:
            raise ValueError(
                f"{card} names no 'file', and there is no {path.stem} with a model extension "
                f"({', '.join(MODEL_SUFFIXES)}) next to it."
            )
        if len(found) > 1:
            raise ValueError(
                f"{card} names no 'file', and several files could be meant "
                f"({', '.join(p.name for p in found)}): name one with 'file'."
            )
        out.file = found[0]


def _read_card_labels(out: ModelCard, given: dict, folder: Path, card: str) -> None:
    """The class names: a labels file next to the card, or a list in the card."""
    if "labels" in given:
        value = given["labels"]
        if isinstance(value, str):
            labels_path = _card_path(folder, value, "labels", card)
            out.labels, out.labels_source = read_labels(labels_path, card), labels_path.name
        else:
            out.labels, out.labels_source = _label_list(value, f"{card} 'labels'"), "inline"


def _read_preprocessing(out: ModelCard, given: dict, card: str) -> None:
    """Input size, resize, crop, interpolation, channels, mean and std."""
    if "input_size" in given:
        out.input_size = _whole(given, "input_size", card, MIN_INPUT, MAX_INPUT)
    out.resize = default_resize(out.input_size)
    if "resize" in given:
        out.resize = _whole(given, "resize", card, out.input_size, MAX_RESIZE)
    if "crop" in given:
        crop = given["crop"].strip().lower() if isinstance(given["crop"], str) else None
        if crop not in ("centre", "center"):
            raise ValueError(
                f"{card}: 'crop' can only be 'centre' (resize the short side to 'resize', "
                f"then cut the central input_size square); got {quote(given['crop'])}."
            )
    if "interpolation" in given:
        value = given["interpolation"]
        mode = value.strip().lower() if isinstance(value, str) else None
        if mode not in INTERPOLATIONS:
            raise ValueError(
                f"{card}: 'interpolation' must be one of {', '.join(INTERPOLATIONS)}; got {quote(value)}."
            )
        out.interpolation = mode
    if "channels" in given:
        value = given["channels"]
        if isinstance(value, bool) or value not in CHANNELS:
            raise ValueError(
                f"{card}: 'channels' must be 3 (colour, R, G, B) or 1 (greyscale); got {quote(value)}."
            )
        out.channels = int(value)
    if out.channels == 1:
        out.mean, out.std = GREY_MEAN, GREY_STD
    if "mean" in given:
        out.mean = _per_channel(given, "mean", card, out.channels)
    if "std" in given:
        out.std = _per_channel(given, "std", card, out.channels)


def _read_output(out: ModelCard, given: dict, card: str) -> None:
    """The output (softmax or sigmoid) and a multi-label model's threshold."""
    if "output" in given:
        out.output = _choice(given, "output", card, OUTPUTS)
    if "threshold" in given:
        value = given["threshold"]
        if out.output != "sigmoid":
            raise ValueError(
                f"{card}: 'threshold' is for multi-label models ('output: sigmoid'); with "
                f"softmax the prediction is the most likely class. Add 'output: sigmoid' or "
                "remove 'threshold'."
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(
                f"{card}: 'threshold' must be a probability strictly between 0 and 1 (a class is "
                f"predicted when its sigmoid probability is above it, e.g. 0.5); got {quote(value)}."
            )
        out.threshold = float(value)


def bare_card(model_file: str | os.PathLike) -> ModelCard:
    """The card of a model file that has none: every field at its default."""
    model_file = Path(model_file)
    return ModelCard(file=model_file, name=model_file.name, defaults=[k for k in FIELDS if k != "file"])


def sidecar_card(model_file: str | os.PathLike) -> Path | None:
    """A card with the model file's name next to it (welds.pt -> welds.yaml), if there is one."""
    model_file = Path(model_file)
    for suffix in CARD_SUFFIXES:
        candidate = model_file.with_suffix(suffix)
        if candidate.is_file() and candidate != model_file:
            return candidate
    return None


def _peek(path: Path) -> Any:
    """Parsed content of a JSON/YAML file, or an Exception when it cannot be parsed."""
    try:
        return parse_card_text(_read_text(path, "file"), path.name)
    except ValueError as err:
        return err


def find_models(folder: str | os.PathLike) -> list[tuple[str, str]]:
    """Models in ``folder`` and its direct subfolders: cards, and model files no card refers to.

    Returns:
        (path, display label) pairs sorted by label. A card that cannot be read is still listed,
        so that choosing it shows why. A missing folder gives an empty list.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    files = sorted(p for p in [*folder.iterdir(), *folder.glob("*/*")] if p.is_file())
    entries, referenced = [], set()
    for path in files:
        if path.suffix.lower() not in CARD_SUFFIXES:
            continue
        data = _peek(path)
        if isinstance(data, Exception):
            entries.append((str(path), f"{path.name} (unreadable card)"))
            continue
        if not is_card_data(data):
            continue  # a labels file
        name = data["name"][:200] if isinstance(data.get("name"), str) else path.stem
        target = data.get("file")
        if isinstance(target, str):
            referenced.add(os.path.normpath(path.parent / target))
            label = f"{name} ({target})"
        else:
            referenced.update(os.path.normpath(path.with_suffix(s)) for s in MODEL_SUFFIXES)
            label = f"{name} ({path.name})"
        entries.append((str(path), label))
    for path in files:
        if path.suffix.lower() in MODEL_SUFFIXES and os.path.normpath(path) not in referenced:
            entries.append((str(path), path.name))
    return sorted(entries, key=lambda e: e[1].lower())


def referenced_files(source: str | os.PathLike) -> list[Path]:
    """The files a model source depends on (the card, its model and labels files), for cache keys.
    Best effort: files that cannot be worked out are left out."""
    path = Path(source)
    out = [path]
    if path.suffix.lower() in CARD_SUFFIXES:
        data = _peek(path) if path.is_file() else None
        if isinstance(data, dict):
            for key in ("file", "labels"):
                if isinstance(data.get(key), str):
                    out.append(path.parent / data[key])
            if not isinstance(data.get("file"), str):
                out.extend(path.with_suffix(s) for s in MODEL_SUFFIXES)
    else:
        card = sidecar_card(path)
        if card is not None:
            out.extend(referenced_files(card))
    return out


def _is_card_file(path: Path) -> bool:
    """A card, or a JSON/YAML file too broken to tell (loading it then says what is wrong)."""
    data = _peek(path)
    return is_card_data(data) or isinstance(data, Exception)


UPLOAD_SUFFIXES = MODEL_SUFFIXES + CARD_SUFFIXES + (".txt",)


def store_upload(files: list[tuple[str, bytes]], root: str | os.PathLike) -> Path:
    """Save uploaded files (a model file, optionally its card and labels file) into a folder of
    their own under ``root`` and return what to load: the card if there is one, else the model file.

    The folder is named by the files' sha256, so the same upload lands in the same place.

    Raises:
        ValueError: an unsupported file name, no model file, or more than one card / model file.
    """
    if not files:
        raise ValueError("No files were uploaded.")
    h = hashlib.sha256()
    clean = []
    for name, data in files:
        base = os.path.basename(str(name).replace("\\", "/"))
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,120}", base) or not base.lower().endswith(
            UPLOAD_SUFFIXES
        ):
            raise ValueError(
                f"{quote(str(name))}: upload model files ({', '.join(MODEL_SUFFIXES)}), a card "
                f"({', '.join(CARD_SUFFIXES)}) or a labels .txt, with plain file names."
            )
        clean.append((base, bytes(data)))
        h.update(base.encode() + b"\0" + hashlib.sha256(data).digest())
    if len({n for n, _ in clean}) != len(clean):
        raise ValueError("Two uploaded files have the same name.")
    folder = Path(root) / h.hexdigest()[:20]
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in clean:
        target = folder / name
        if not target.is_file() or target.stat().st_size != len(data):
            target.write_bytes(data)
    cards = [folder / n for n, _ in clean if n.lower().endswith(CARD_SUFFIXES) and _is_card_file(folder / n)]
    models = [folder / n for n, _ in clean if n.lower().endswith(MODEL_SUFFIXES)]
    if len(cards) > 1:
        raise ValueError(f"Upload one model card at a time; got {', '.join(p.name for p in cards)}.")
    if cards:
        return cards[0]
    if len(models) != 1:
        raise ValueError(
            "Upload exactly one model file (" + ", ".join(MODEL_SUFFIXES) + "), optionally "
            f"with its card and labels file; got {len(models)} model files."
        )
    return models[0]


def card_rows(card: dict) -> list[tuple[str, str, bool]]:
    """What a loaded model's card (``Classifier.card``) used, for display.

    Returns:
        (field, value as text, whether the value is the stated default) rows.
    """
    defaults = set(card.get("defaults", ()))
    rows = [
        ("format", str(card.get("format_label", card.get("format", ""))), False),
        ("file", str(card.get("file", "")), "file" in defaults),
    ]
    if card.get("card_file"):
        rows.append(("card", str(card["card_file"]), False))
    for key in (
        "name",
        "description",
        "architecture",
        "labels",
        "input_size",
        "resize",
        "crop",
        "interpolation",
        "channels",
        "mean",
        "std",
        "output",
        "threshold",
        "gradcam_layer",
        "gradcam_reshape",
        "batch",
        "runtime",
    ):
        value = card.get(key)
        if key in ("description", "architecture", "runtime") and not value:
            continue
        if key in ("channels", "output", "threshold", "gradcam_reshape") and key not in card:
            continue  # a card loaded before these fields existed (a replayed record)
        if key == "threshold" and card.get("output") != "sigmoid":
            continue
        if key == "labels":
            value = f"{value} ({card.get('classes')} classes)"
        elif key == "gradcam_layer" and value is None:
            value = "none (Grad-CAM unavailable)"
        elif key == "gradcam_layer" and key in defaults:
            value = f"{value} (found with a test image)"
        elif key == "gradcam_reshape" and card.get("gradcam_layer") is None:
            continue
        elif key == "gradcam_reshape":
            value = f"{value or 'none'}: {RESHAPES.get(value or 'none', '')}"
        elif key == "output":
            value = {
                "softmax": "softmax (one class per image)",
                "sigmoid": "sigmoid (multi-label: every class above the threshold)",
            }.get(value, value)
        elif isinstance(value, (list, tuple)):
            value = ", ".join(f"{v:.4g}" for v in value)
        rows.append((key, str(value), key in defaults))
    return rows
