"""Model cards: the small JSON/YAML file next to an operator's weights that says how to use them.

A card names the model file, the class names and the preprocessing; every field is optional and
a missing one gets the default stated in ``FIELDS``. This module only reads and checks cards,
lists a models folder and stores uploads; ``models.py`` loads the weights.

Example card (YAML)::

    name: Weld defect classifier v3
    file: welds.pt            # TorchScript, state dict (.pth), torch.export (.pt2) or ONNX (.onnx)
    architecture: resnet18    # only for a state dict: a torchvision model name
    labels: labels.txt        # or inline: [ok, porosity, crack]
    input_size: 224
    resize: 256
    mean: [0.485, 0.456, 0.406]
    std: [0.229, 0.224, 0.225]
    gradcam_layer: layer4
"""
from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

CARD_SUFFIXES = (".json", ".yaml", ".yml")
MODEL_SUFFIXES = (".pt", ".pth", ".pt2", ".ts", ".torchscript", ".onnx")
LABEL_SUFFIXES = (".txt", ".json")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
MIN_INPUT, MAX_INPUT, MAX_RESIZE = 16, 2048, 4096

# field -> (what it is, the default used when the card leaves it out)
FIELDS: dict[str, tuple[str, str]] = {
    "name": ("display name", "the card's (or model file's) name"),
    "file": ("model file, relative to the card", "the file next to the card with the same name "
             "and a model extension (" + ", ".join(MODEL_SUFFIXES) + ")"),
    "architecture": ("torchvision model name, for a state dict", "none: needed only for a state dict"),
    "labels": ("class names: a list, or a .txt (one per line) / .json file",
               "ImageNet's names if the model has 1000 outputs, else class 0, class 1, ..."),
    "input_size": ("side of the square the network sees, pixels", "224"),
    "resize": ("short side before the centre crop, pixels", "input_size x 8/7 (256 for 224)"),
    "crop": ("how the input square is cut", "centre"),
    "interpolation": ("resampling for the resize: " + ", ".join(INTERPOLATIONS), "bilinear"),
    "mean": ("per-channel mean, pixels in [0, 1]", "ImageNet's 0.485, 0.456, 0.406"),
    "std": ("per-channel standard deviation, pixels in [0, 1]", "ImageNet's 0.229, 0.224, 0.225"),
    "gradcam_layer": ("module whose feature map Grad-CAM uses",
                      "the last layer with a spatial feature map, found with a test image"),
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
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    gradcam_layer: str | None = None
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


def parse_card_text(text: str, name: str) -> Any:
    """JSON or YAML text -> Python data. ``name`` (the file name) picks the parser."""
    if name.lower().endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{name} is not valid JSON (line {err.lineno}, column {err.colno}: "
                             f"{err.msg}).") from None
    try:
        import yaml
    except ImportError:
        raise ValueError(f"{name}: reading YAML cards needs the package pyyaml "
                         "(install the project's requirements.txt), or write the card as JSON.") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{name} is not valid YAML{where}: {problem}.") from None


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{what} {path.name} is not UTF-8 text.") from None
    except OSError as err:
        raise ValueError(f"cannot read {what} {path.name} ({err.strerror or err}).") from None


def is_card_data(data: Any) -> bool:
    """A parsed JSON/YAML file is a card if it is a mapping with at least one card field
    (a labels .json is a list, or a mapping of class indices)."""
    return isinstance(data, dict) and any(k in FIELDS for k in data)


def _inside(folder: Path, value: str, field_name: str, card: str) -> Path:
    """A path named by the card, kept inside the card's folder (no absolute paths, no '..')."""
    pure = PurePosixPath(value.replace("\\", "/"))
    if not value.strip() or pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", value):
        raise ValueError(f"{card}: '{field_name}' must be a file name inside the card's folder "
                         f"(no absolute path, no '..'); got {value!r}.")
    return folder.joinpath(*pure.parts)


def _whole(data: dict, key: str, card: str, low: int, high: int) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        shape = " (one number: the input is square)" if isinstance(value, (list, tuple)) else ""
        raise ValueError(f"{card}: '{key}' must be a whole number of pixels between {low} and {high}"
                         f"{shape}; got {value!r}.")
    return value


def _triple(data: dict, key: str, card: str) -> tuple[float, float, float]:
    value = data[key]
    example = ", ".join(map(str, IMAGENET_MEAN if key == "mean" else IMAGENET_STD))
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                       for v in value)):
        raise ValueError(f"{card}: '{key}' must be three numbers, one per colour channel R, G, B "
                         f"(ImageNet: [{example}]); got {value!r}.")
    value = tuple(float(v) for v in value)
    if any(abs(v) > 1.5 for v in value):
        raise ValueError(f"{card}: '{key}' is in pixel units of [0, 1] (ImageNet: [{example}]); "
                         f"got {list(value)}: values on the 0-255 scale must be divided by 255.")
    if key == "std" and min(value) <= 0:
        raise ValueError(f"{card}: 'std' must be positive; got {list(value)}.")
    return value


def _text(data: dict, key: str, card: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{card}: '{key}' must be text; got {value!r}.")
    return value.strip()


def _label_list(items: Any, where: str) -> list[str]:
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"{where}: class names must be a non-empty list; got {items!r}.")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, bool) or item is None:
            raise ValueError(f"{where}: class name {i} is {item!r}, not text (YAML reads yes/no/on/off/"
                             "true/false/null as values: put such names in quotes).")
        if isinstance(item, (int, float)):
            item = str(item)
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{where}: class name {i} must be non-empty text; got {item!r}.")
        out.append(item.strip())
    return out


def read_labels(path: Path, card: str) -> list[str]:
    """Class names from a ``.txt`` (one per line, blank lines skipped) or ``.json`` file
    (a list of names, or a mapping "0".."n-1" -> name or -> [id, name])."""
    if not path.is_file():
        raise ValueError(f"{card}: the labels file {path.name} does not exist next to the card.")
    text = _read_text(path, "labels file")
    if path.suffix.lower() == ".txt":
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if not names:
            raise ValueError(f"{card}: the labels file {path.name} has no class names.")
        return names
    if path.suffix.lower() != ".json":
        raise ValueError(f"{card}: the labels file must be .txt (one name per line) or .json; "
                         f"got {path.name}.")
    data = parse_card_text(text, path.name)
    if isinstance(data, dict):
        try:
            keys = sorted(data, key=int)
        except (TypeError, ValueError):
            raise ValueError(f"{path.name}: a labels mapping must have class indices 0, 1, ... "
                             "as keys.") from None
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
    data = parse_card_text(_read_text(path, "model card"), card)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{card}: a model card must be a mapping of fields (name: ..., file: ...); "
                         f"got a {type(data).__name__}.")
    for key in data:
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"{card}: unknown field '{key}'{hint}. Known fields: {', '.join(FIELDS)}.")
    folder = path.parent
    out = ModelCard(file=path, name=path.stem, path=path, sha256=_sha256(path),
                    defaults=[k for k in FIELDS if data.get(k) is None])
    given = {k: v for k, v in data.items() if v is not None}

    if "name" in given:
        out.name = _text(given, "name", card)[:200]
    if "description" in given:
        out.description = _text(given, "description", card)
    if "architecture" in given:
        out.architecture = _text(given, "architecture", card)
    if "gradcam_layer" in given:
        out.gradcam_layer = _text(given, "gradcam_layer", card)
    if "file" in given:
        out.file = _inside(folder, _text(given, "file", card), "file", card)
        if not out.file.is_file():
            raise ValueError(f"{card}: the model file {given['file']!r} does not exist next to the card.")
    else:
        found = [path.with_suffix(s) for s in MODEL_SUFFIXES if path.with_suffix(s).is_file()]
        if not found:
            raise ValueError(f"{card} names no 'file', and there is no {path.stem} with a model extension "
                             f"({', '.join(MODEL_SUFFIXES)}) next to it.")
        if len(found) > 1:
            raise ValueError(f"{card} names no 'file', and several files could be meant "
                             f"({', '.join(p.name for p in found)}): name one with 'file'.")
        out.file = found[0]

    if "labels" in given:
        value = given["labels"]
        if isinstance(value, str):
            labels_path = _inside(folder, value, "labels", card)
            out.labels, out.labels_source = read_labels(labels_path, card), labels_path.name
        else:
            out.labels, out.labels_source = _label_list(value, f"{card} 'labels'"), "inline"
    if "input_size" in given:
        out.input_size = _whole(given, "input_size", card, MIN_INPUT, MAX_INPUT)
    out.resize = default_resize(out.input_size)
    if "resize" in given:
        out.resize = _whole(given, "resize", card, out.input_size, MAX_RESIZE)
    if "crop" in given:
        crop = str(given["crop"]).strip().lower()
        if crop not in ("centre", "center"):
            raise ValueError(f"{card}: 'crop' can only be 'centre' (resize the short side to 'resize', "
                             f"then cut the central input_size square); got {given['crop']!r}.")
    if "interpolation" in given:
        mode = str(given["interpolation"]).strip().lower()
        if mode not in INTERPOLATIONS:
            raise ValueError(f"{card}: 'interpolation' must be one of {', '.join(INTERPOLATIONS)}; "
                             f"got {given['interpolation']!r}.")
        out.interpolation = mode
    if "mean" in given:
        out.mean = _triple(given, "mean", card)
    if "std" in given:
        out.std = _triple(given, "std", card)
    return out


def bare_card(model_file: str | os.PathLike) -> ModelCard:
    """The card of a model file that has none: every field at its default."""
    model_file = Path(model_file)
    return ModelCard(file=model_file, name=model_file.name,
                     defaults=[k for k in FIELDS if k != "file"])


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
        name = data.get("name") if isinstance(data.get("name"), str) else path.stem
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
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,120}", base) or \
                not base.lower().endswith(UPLOAD_SUFFIXES):
            raise ValueError(f"{name!r}: upload model files ({', '.join(MODEL_SUFFIXES)}), a card "
                             f"({', '.join(CARD_SUFFIXES)}) or a labels .txt, with plain file names.")
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
        raise ValueError("Upload exactly one model file (" + ", ".join(MODEL_SUFFIXES) + "), optionally "
                         f"with its card and labels file; got {len(models)} model files.")
    return models[0]


def card_rows(card: dict) -> list[tuple[str, str, bool]]:
    """What a loaded model's card (``Classifier.card``) used, for display.

    Returns:
        (field, value as text, whether the value is the stated default) rows.
    """
    defaults = set(card.get("defaults", ()))
    rows = [("format", str(card.get("format_label", card.get("format", ""))), False),
            ("file", str(card.get("file", "")), "file" in defaults)]
    if card.get("card_file"):
        rows.append(("card", str(card["card_file"]), False))
    for key in ("name", "description", "architecture", "labels", "input_size", "resize", "crop",
                "interpolation", "mean", "std", "gradcam_layer", "batch", "runtime"):
        value = card.get(key)
        if key in ("description", "architecture", "runtime") and not value:
            continue
        if key == "labels":
            value = f"{value} ({card.get('classes')} classes)"
        elif key == "gradcam_layer" and value is None:
            value = "none (Grad-CAM unavailable)"
        elif key == "gradcam_layer" and key in defaults:
            value = f"{value} (found with a test image)"
        elif isinstance(value, (list, tuple)):
            value = ", ".join(f"{v:.4g}" for v in value)
        rows.append((key, str(value), key in defaults))
    return rows
