"""App-side helpers shared by app.py and the pages: cached model, map cache, sidebar settings.
The only module besides app.py and the page scripts that imports streamlit."""
from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from typing import Callable

import streamlit as st
from PIL import Image

import saliency_core as sc
from saliency_core.models import source_signature

log = logging.getLogger("saliency_lens")

UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"]
DEFAULT_METHODS = ["gradient", "guided_backprop", "smoothgrad", "gradcam"]
DISCLAIMER = ("Saliency maps are supporting evidence and approximations of what the model used, "
              "not proof. Compare several methods and read each map's caution.")


def get_model(source: str) -> sc.Classifier:
    """The model for ``source`` ("demo", a model file or a model card), loaded once per version
    of its files: the cache key is the path plus the size, modification time and inode of the
    card, weights and labels file, so a replaced file is loaded again."""
    return _load_model(source, source_signature(source))


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def _load_model(source: str, signature: str) -> sc.Classifier:
    return sc.load_model(source)


class MapCache:
    """Explanations shared by all sessions, least recently used dropped first."""

    def __init__(self, size: int = 512):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@st.cache_resource
def map_cache() -> MapCache:
    return MapCache()


@st.cache_data(max_entries=128, show_spinner=False)
def decode(data: bytes, name: str) -> Image.Image:
    """Validated RGB image from uploaded bytes (ValueError in plain words otherwise)."""
    return sc.load_image(data, name=name)


def map_key(model: sc.Classifier, image_hash: str, method: str, target: int, params: dict) -> tuple:
    # card digest: the same weights with another card (preprocessing, labels) are another model
    return (model.fingerprint, model.card.get("digest"), image_hash, method, int(target),
            tuple(sorted(params.items())))


def explanation(model: sc.Classifier, image: Image.Image, image_hash: str, method: str, target: int,
                params: dict, progress: Callable[[int, int], None] | None = None,
                preview: Callable | None = None) -> sc.Explanation:
    """The map for (model, image, method, target, params), computed at most once.
    ``preview(done, total, saliency)`` shows a running map while SmoothGrad works."""
    used = sc.resolve_params(sc.METHODS[method], params, model)
    key = map_key(model, image_hash, method, target, used)
    cache = map_cache()
    hit = cache.get(key)
    if hit is None:
        hit = sc.explain(model, image, method=method, target=target, progress=progress, preview=preview,
                         **used)
        cache.put(key, hit)
    return hit


def cached_explain(model: sc.Classifier, image: Image.Image, method: str, target: int | None, params: dict,
                   progress: Callable[[int, int], None] | None = None,
                   preview: Callable | None = None) -> sc.Explanation:
    """``explanation`` in the form the pipeline calls (saliency_core.pipeline, ``explain_fn``)."""
    if target is None:
        target = model.predict(image, k=1)[0][0]
    return explanation(model, image, sc.image_hash(image), method, target, params, progress, preview)


def is_cached(model: sc.Classifier, image_hash: str, method: str, target: int, params: dict) -> bool:
    used = sc.resolve_params(sc.METHODS[method], params, model)
    return map_cache().get(map_key(model, image_hash, method, target, used)) is not None


def require_frame() -> None:
    """Run pages only inside app.py's frame (router + sidebar). Because a pages/ folder exists,
    Streamlit starts in its legacy mode, where a first request for a page's URL runs that page
    alone (and AppTest starts every run so); switch that off and rerun through app.py."""
    from streamlit.runtime.pages_manager import PagesManager
    if PagesManager.uses_pages_directory:  # st.navigation (app.py) sets it False before pages run
        PagesManager.uses_pages_directory = False
        st.rerun()


def settings() -> dict:
    """What the shared sidebar holds (set by app.py)."""
    s = st.session_state
    return {
        "model": s.get("model", "demo"),
        "methods": list(s.get("methods", DEFAULT_METHODS)),
        "params": {"samples": int(s.get("samples", 50)), "noise": float(s.get("noise", 0.15)),
                   "seed": int(s.get("seed", 0)), "steps": int(s.get("steps", 50)),
                   "baseline": s.get("baseline", "black")},
    }


def page_model(cfg: dict) -> sc.Classifier:
    """The sidebar's model; on failure an error on the page, and the page stops."""
    try:
        return get_model(cfg["model"])
    except ValueError as err:
        st.error(f"The model could not be loaded: {err}")
        st.stop()


def page_methods(model: sc.Classifier, cfg: dict) -> list[str]:
    """The sidebar's methods that ``model`` can run; a warning names the others and why.
    With none left, a hint and the page stops."""
    usable = sc.available_methods(model)
    for m in [m for m in cfg["methods"] if usable.get(m)]:
        st.warning(f"**{sc.METHODS[m].label}** is left out: it {usable[m]}.")
    methods = [m for m in cfg["methods"] if not usable.get(m)]
    if not methods:
        st.info("Choose at least one saliency method in the sidebar, then press **Apply**.")
        st.stop()
    return methods


def single_image(upload_types: list[str]) -> tuple[str, Image.Image, str]:
    """One uploaded image or sample photo: (name, RGB image, image hash); stops with a message
    when there is none or it cannot be read."""
    from saliency_core.samples import sample_images
    left, right = st.columns([3, 2])
    with left:
        upload = st.file_uploader("Upload an image", type=upload_types)
    with right:
        samples = sample_images()
        picked = st.selectbox("…or use a sample photo", list(samples), disabled=upload is not None)
    if upload is not None:
        name, data = upload.name, upload.getvalue()
    elif picked:
        name, data = picked, open(samples[picked], "rb").read()
    else:
        st.info("Upload an image to begin.")
        st.stop()
    try:
        image = decode(data, name)
    except ValueError as err:
        st.error(f"{err}")
        st.stop()
    return name, image, sc.image_hash(image)


def method_params(method: str, params: dict) -> dict:
    """The subset of the sidebar parameters that ``method`` takes."""
    return sc.METHODS[method].params_for(params)


def report_error(where: str, err: Exception) -> None:
    """A plain message on the page; the traceback goes to the server log only."""
    if isinstance(err, ValueError):
        st.error(f"**{where}**: {err}")
    else:
        log.exception("%s failed", where)
        st.error(f"**{where}**: something went wrong ({type(err).__name__}: {err}). "
                 "The other results are unaffected; the details are in the server log.")


def png_bytes(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


# ---- stability and sanity-check results (pages/stability.py, pages/sanity.py) ----------------

def model_key(model: sc.Classifier) -> tuple:
    """What identifies a model in cache keys: weights and card."""
    return (model.fingerprint, model.card.get("digest"))


@st.cache_resource
def result_cache() -> MapCache:
    """Stability and sanity-check runs shared by all sessions; few, as each holds many maps."""
    return MapCache(size=24)


def computed(key: tuple, compute: Callable[[], object]):
    """``compute()`` at most once per ``key`` (a tuple of hashable values)."""
    cache = result_cache()
    hit = cache.get(key)
    if hit is None:
        hit = compute()
        cache.put(key, hit)
    return hit


def is_computed(key: tuple) -> bool:
    return result_cache().get(key) is not None


@st.cache_resource
def _sanity_verdicts() -> MapCache:
    """(model, method) -> the latest SanityVerdict. Filled by the Sanity check page only: the
    Explain page shows a verdict once one was computed and never starts a run itself."""
    return MapCache(size=1024)


def record_sanity_verdict(model: sc.Classifier, verdict) -> None:
    """Keep ``verdict`` (a ``metrics.SanityVerdict``) as this model's verdict for its method."""
    _sanity_verdicts().put((*model_key(model), verdict.method), verdict)


def sanity_verdict(model: sc.Classifier, method: str):
    """The last randomisation verdict computed for (model, method), or None."""
    return _sanity_verdicts().get((*model_key(model), method))


@st.cache_resource
def _stability_verdicts() -> MapCache:
    """(model, image hash, method) -> (verdict, reason), filled by the Stability page; the
    Gallery shows them as flags and never starts a check itself."""
    return MapCache(size=100_000)


def record_stability_verdict(model: sc.Classifier, image_hash: str, method: str, verdict: str, reason: str) -> None:
    _stability_verdicts().put((*model_key(model), image_hash, method), (verdict, reason))


def stability_verdict(model: sc.Classifier, image_hash: str, method: str) -> tuple[str, str] | None:
    """The last stability verdict computed for this image and method, or None."""
    return _stability_verdicts().get((*model_key(model), image_hash, method))


def has_stability_verdicts() -> bool:
    return len(_stability_verdicts()) > 0
