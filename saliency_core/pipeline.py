"""The one loop over images x methods: predictions, maps and one record per image.

The command line (``explain``, ``report``), the Ray workers, the report builder and the
dashboard's pages all call ``explain_image`` / ``explain_images``; none keeps its own copy of
the loop, so they cannot drift. Every writer stores an image's results as ``ImageResult.record()``,
one JSON layout, versioned (``"schema": 2``), described by ``saliency_core/schemas/record-2.json``
(schema 2 adds averaged maps' reproducible detail; ``SCHEMA_FILES`` keeps schema 1 readable).

    >>> from saliency_core.pipeline import explain_images
    >>> for result in explain_images(model, ["chelsea.png"], ["gradient", "gradcam"]):
    ...     result.record()["maps"][0]["method"]
    'gradient'
"""

from __future__ import annotations

import io
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torchvision.transforms.functional import to_tensor

from .engine.explain import Explanation, available_methods, explain, get_method
from .engine.images import ImageSource, image_hash, load_image
from .engine.methods import METHODS
from .engine.safe_text import json_text
from .engine.untrusted import one_line

SCHEMA = 2
SCHEMA_FILES = {version: Path(__file__).with_name("schemas") / f"record-{version}.json" for version in (1, 2)}
SCHEMA_FILE = SCHEMA_FILES[SCHEMA]
ALPHA = 0.5  # overlay: weight of the colours
CLIP_PERCENTILE = 99.0  # full colour at this percentile of |values| (PAIR saliency)

ExplainFn = Callable[..., Explanation]
Progress = Callable[[int, int, str], None]


def method_params(method: str, params: dict | None) -> dict:
    """The entries of ``params`` that ``method`` takes (the others would be refused by it).
    ``params`` is one dict for every method, or ``{method: params}`` per method (a review batch
    stores each method's own)."""
    params = params or {}
    if params and all(k in METHODS and isinstance(v, dict) for k, v in params.items()):
        params = params.get(method, {})
    return get_method(method).params_for(params)


@dataclass
class RenderOptions:
    """How PNG overlays are drawn when a caller asks for them (command line, Ray workers).

    ``sign`` None: signed methods drawn signed, the others as magnitudes; ``colormap`` None:
    inferno, or balance for signed maps."""

    sign: str | None = None
    colormap: str | None = None
    alpha: float = ALPHA
    clip_percentile: float = CLIP_PERCENTILE

    def sign_for(self, method: str) -> str:
        from .engine.render import DIVERGING

        if self.sign:
            return self.sign
        if self.colormap in DIVERGING or (self.colormap is None and METHODS[method].signed):
            return "signed"
        return "absolute"


@dataclass
class ImageResult:
    """One image through the pipeline.

    Attributes:
        name: the image's name as given.
        failed: why the image could not be used (then nothing else is set), or None.
        crashed: an unexpected error as plain data (type, message, traceback), or None.
        image_hash, image_size, prediction: of the decoded image (top-5 (index, label, probability)).
        predicted: what the model predicts (``Classifier.predicted_set``): the top class, or for a
            multi-label model every class above its threshold (possibly none).
        crop: the image the model saw (PIL RGB), overlays are drawn on it.
        maps: method -> ``Explanation``, in the order asked for.
        errors: method -> why it failed on this image, in words.
        crashes: method -> unexpected error as plain data.
        pngs: method -> overlay PNG with its colour bar, when ``render`` was asked for.
        rendered: method -> what the overlay shows (sign, colormap, scale, legend...).
        model: ``Classifier.describe()`` of the model used.
    """

    name: str
    failed: str | None = None
    crashed: dict | None = None
    image_hash: str = ""
    image_size: tuple[int, int] = (0, 0)
    prediction: list = field(default_factory=list)
    predicted: list = field(default_factory=list)
    crop: Image.Image | None = None
    maps: dict[str, Explanation] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    crashes: dict[str, dict] = field(default_factory=dict)
    pngs: dict[str, bytes] = field(default_factory=dict)
    rendered: dict[str, dict] = field(default_factory=dict)
    model: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failed is None and self.crashed is None

    def record(self, extra: dict[str, dict] | None = None) -> dict:
        """The image's JSON record (schema 2). ``extra``: method -> more fields for that map
        (e.g. the PNG's file name)."""
        maps = []
        for method, exp in self.maps.items():
            entry = exp.record()
            if method in self.rendered:
                entry["render"] = self.rendered[method]
            entry.update((extra or {}).get(method, {}))
            maps.append(entry)
        return {
            "schema": SCHEMA,
            "image": self.name,
            "image_hash": self.image_hash,
            "image_size": list(self.image_size),
            "model": self.model,
            "prediction": [
                {"index": int(i), "label": str(label), "probability": float(p)}
                for i, label, p in self.prediction
            ],
            "predicted": [
                {"index": int(i), "label": str(label), "probability": float(p)}
                for i, label, p in self.predicted
            ],
            "maps": maps,
            "errors": {**self.errors, **{m: f"{c['type']}: {c['message']}" for m, c in self.crashes.items()}},
        }

    def shipped(self) -> ImageResult:
        """A copy without the attribution arrays (C, H, W), for sending across processes."""
        maps = {m: _light(e) for m, e in self.maps.items()}
        return ImageResult(**{**self.__dict__, "maps": maps})


def _light(exp: Explanation) -> Explanation:
    from dataclasses import replace

    return replace(exp, attribution=np.zeros((0,), np.float32))


def crash(err: BaseException) -> dict:
    """An unexpected error as plain data (it may have to travel from a Ray worker)."""
    return {
        "type": type(err).__name__,
        "message": str(err),
        "traceback": "".join(traceback.format_exception(err)),
    }


def explain_image(
    model,
    source: ImageSource,
    name: str,
    methods: Sequence[str],
    params: dict | None = None,
    target: int | None = None,
    *,
    usable: dict | None = None,
    render: RenderOptions | None = None,
    explain_fn: ExplainFn | None = None,
    progress: Callable[[int, int], None] | None = None,
    preview: Callable | None = None,
    on_map: Callable[[str], None] | None = None,
) -> ImageResult:
    """Predict one image and compute each method's map on it.

    Args:
        model: a loaded ``Classifier``.
        source: path, bytes or PIL image; ``name`` is how messages name it.
        methods: registry names, in display order.
        params: method parameters, each method gets the ones it takes; or ``{method: params}``.
        target: class index; None explains each image's predicted class.
        usable: ``available_methods(model)`` when the caller has it (computed otherwise).
        render: also draw each map as a PNG overlay with its colour bar (``pngs``).
        explain_fn: ``explain_fn(model, image, method, target, params, progress=, preview=)``
            instead of ``saliency_core.explain`` (the dashboard passes its cached version).
        progress, preview: passed to each method (chunked methods report through them).
        on_map: called with the method name after each map (done or failed).
    Returns:
        ``ImageResult``; an image that cannot be read has ``failed`` set, a method that fails
        has its message in ``errors``, and the other methods still run.
    """
    try:
        image = load_image(source, name=name)
        crop = model.crop(image)
        x = to_tensor(crop).unsqueeze(0)
        prediction, predicted = model.predict(x, k=5), model.predicted_set(x)
    except ValueError as err:
        return ImageResult(name=name, failed=one_line(err, name))
    except Exception as err:  # one bad image must not stop the batch
        return ImageResult(name=name, crashed=crash(err))
    result = ImageResult(
        name=name,
        image_hash=image_hash(image),
        image_size=tuple(image.size),
        prediction=prediction,
        predicted=predicted,
        crop=crop,
        model=model.describe(),
    )
    usable = available_methods(model) if usable is None else usable
    for method in methods:
        try:
            if usable.get(method):
                raise ValueError(f"{METHODS[method].label} cannot run on this model: {usable[method]}.")
            used = method_params(method, params)
            if explain_fn is not None:
                exp = explain_fn(model, image, method, target, used, progress=progress, preview=preview)
            else:
                exp = explain(
                    model, image, method=method, target=target, progress=progress, preview=preview, **used
                )
            result.maps[method] = exp
            if render is not None:
                result.pngs[method], result.rendered[method] = _png(exp, render)
        except (ValueError, OSError) as err:
            result.errors[method] = " ".join(str(err).split())
        except Exception as err:  # one failing map must not stop the others
            result.crashes[method] = crash(err)
        if on_map is not None:
            on_map(method)
    return result


def explain_images(
    model,
    sources: Iterable,
    methods: Sequence[str],
    params: dict | None = None,
    target: int | None = None,
    *,
    render: RenderOptions | None = None,
    explain_fn: ExplainFn | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Iterator[ImageResult]:
    """``explain_image`` over many images, one result at a time, in order.

    Args:
        sources: paths, or ``(name, source)`` pairs (source: path, bytes or PIL image).
        progress: ``progress(maps done, maps in all, label)`` after each map.
        cancel: checked before each image; when it returns True the loop stops (what was done
            has already been yielded).
    Yields:
        ``ImageResult`` per image.
    """
    sources = list(sources)
    methods = list(dict.fromkeys(methods))
    for m in methods:
        get_method(m)
    usable = available_methods(model)
    total, done = len(sources) * len(methods), 0
    for item in sources:
        if cancel is not None and cancel():
            return
        name, source = item if isinstance(item, tuple) else (str(item), item)

        def step(method: str, name=name):
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total, f"{name} · {METHODS[method].label}")

        result = explain_image(
            model,
            source,
            name,
            methods,
            params,
            target,
            usable=usable,
            render=render,
            explain_fn=explain_fn,
            on_map=step,
        )
        if not result.ok:
            done += len(methods)
            if progress is not None:
                progress(done, total, f"{name}: skipped")
        yield result


def _png(exp: Explanation, options: RenderOptions) -> tuple[bytes, dict]:
    from .engine.render import overlay_with_colorbar, render, shown_map

    sign = options.sign_for(exp.method)
    shown = shown_map(exp.saliency, exp.method, exp.diagnostics)  # averaged maps: reproducible detail
    rendered = render(
        shown.saliency,
        exp.image,
        sign=sign,
        colormap=options.colormap,
        alpha=options.alpha,
        clip_percentile=options.clip_percentile,
        target_label=exp.target_label,
        meaning=METHODS[exp.method].meaning,
    )
    buf = io.BytesIO()
    Image.fromarray(overlay_with_colorbar(rendered)).save(buf, format="PNG")
    return buf.getvalue(), {
        "sign": rendered.sign,
        "colormap": rendered.colormap,
        "scale": rendered.scale,
        "near_zero": rendered.near_zero,
        "legend": rendered.legend,
        "clip_percentile": options.clip_percentile,
        "alpha": options.alpha,
        "detail_px": shown.detail_px,
        "detail_words": shown.words,
    }


def json_default(value: Any):
    """``json.dumps(default=...)`` for the values records hold (NumPy, tensors, paths)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # torch tensors
        return value.tolist()
    return str(value)


def dumps(record: dict) -> str:
    """A record as strict JSON text (no NaN or Infinity: ``json_text``), the one encoder every
    record writer uses."""
    return json_text(record, indent=2) + "\n"
