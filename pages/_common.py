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

log = logging.getLogger("saliency_lens")

DEFAULT_METHODS = ["gradient", "guided_backprop", "smoothgrad", "gradcam"]
DISCLAIMER = ("Saliency maps are supporting evidence and approximations of what the model used, "
              "not proof. Compare several methods and read each map's caution.")


@st.cache_resource(show_spinner="Loading the model…")
def get_model(source: str) -> sc.Classifier:
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
    return (model.fingerprint, image_hash, method, int(target), tuple(sorted(params.items())))


def explanation(model: sc.Classifier, image: Image.Image, image_hash: str, method: str, target: int,
                params: dict, progress: Callable[[int, int], None] | None = None) -> sc.Explanation:
    """The map for (model, image, method, target, params), computed at most once."""
    used = sc.resolve_params(sc.METHODS[method], params, model)
    key = map_key(model, image_hash, method, target, used)
    cache = map_cache()
    hit = cache.get(key)
    if hit is None:
        hit = sc.explain(model, image, method=method, target=target, progress=progress, **used)
        cache.put(key, hit)
    return hit


def is_cached(model: sc.Classifier, image_hash: str, method: str, target: int, params: dict) -> bool:
    used = sc.resolve_params(sc.METHODS[method], params, model)
    return map_cache().get(map_key(model, image_hash, method, target, used)) is not None


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


def method_params(method: str, params: dict) -> dict:
    """The subset of the sidebar parameters that ``method`` takes."""
    return {k: v for k, v in params.items() if k in sc.METHODS[method].defaults}


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
