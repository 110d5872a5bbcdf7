"""App-side helpers shared by app.py and the pages: cached model, map cache, sidebar settings.
The only module besides app.py and the page scripts that imports streamlit."""

from __future__ import annotations

import io
import logging
import secrets
import string
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager

import streamlit as st
from PIL import Image

import pages._defaults as defaults  # pages/_*.py: helpers, not pages (Streamlit's convention)
import saliency_core as sc
from saliency_core.engine.images import image_notes
from saliency_core.engine.models import source_signature

log = logging.getLogger("saliency_lens")

UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"]
DEFAULT_METHODS = list(defaults.METHODS)  # pages/_defaults.py: one place for every page's defaults
DISCLAIMER = (
    "Saliency maps are supporting evidence and approximations of what the model used, "
    "not proof. Compare several methods and read each map's caution."
)


_ESCAPE = {ord(c): "\\" + c for c in string.punctuation}
_BLANK = {ord(c): " " for c in "\r\n\t\v\f\x85\u2028\u2029"}


def plain(text, limit: int = 2000) -> str:
    """User-written text (names, notes, labels, file names, messages quoting them) for the
    Markdown that st.markdown, st.caption, alerts, image captions, labels and toasts render:
    every ASCII punctuation character backslash-escaped, so links, images, emphasis, HTML,
    LaTeX and Streamlit's :colour[...] directives show as typed; line breaks become spaces;
    at most ``limit`` characters. Longer text with line breaks belongs in st.text / st.code.

    Example:
        >>> plain("![x](http://example.invalid/a.png)")
        '\\!\\[x\\]\\(http\\:\\/\\/example\\.invalid\\/a\\.png\\)'
    """
    text = str(text).translate(_BLANK)
    text = "".join(c for c in text if c.isprintable() or c == " ")
    if len(text) > limit:
        text = text[:limit] + "…"
    return text.translate(_ESCAPE)


@contextmanager
def page_guard(where: str):
    """Run a page (or the sidebar) so that an unexpected error shows a short message with a
    reference, never a stack trace; the trace goes to the server log under that reference.
    st.stop() and reruns pass through (they are not Exceptions)."""
    try:
        yield
    except Exception as err:  # the last line of defence for a page
        reference = secrets.token_hex(4)
        log.error("unexpected error in %s (reference %s)", where, reference, exc_info=err)
        st.error(
            f"Something went wrong in {where} and it stopped. The other pages still work. If it happens "
            f"again, give the operator the reference **{reference}**: the details are in the server log."
        )


def client_id() -> str:
    """Who is at the keyboard, for sign-in throttling: ``ip:ADDRESS`` of the connection; behind a
    reverse proxy on this machine (the connection comes from localhost), the address the proxy
    appended to X-Forwarded-For (or X-Real-IP); else ``session:ID`` of this browser session."""
    try:
        address = st.context.ip_address
        headers = st.context.headers or {}
    except Exception:  # no request context (bare script, tests)
        address, headers = None, {}
    if address:
        return f"ip:{address}"[:200]
    forwarded = headers.get("X-Forwarded-For") or headers.get("X-Real-Ip") or ""
    last = forwarded.split(",")[-1].strip()
    if last:
        return f"ip:{last}"[:200]
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return f"session:{ctx.session_id if ctx else 'unknown'}"


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


def unreadable(sources) -> list[str]:
    """Why each (name, bytes) upload that cannot be decoded will be left out: known as soon as the
    files are read, so a page says it before any run, not after."""
    why = []
    for name, data in sources:
        try:
            decode(data, name)
        except ValueError as err:
            why.append(" ".join(str(err).split()))
    return why


@st.cache_data(max_entries=256, show_spinner=False)
def region_labels(key: tuple, _crop: Image.Image):
    """SLIC regions of a crop the model saw (``saliency_core.regions.segment``); ``key`` names the
    crop: (image hash, model preprocessing)."""
    from saliency_core.engine.regions import segment

    return segment(_crop)


def crop_key(model: sc.Classifier, image_hash: str) -> tuple:
    """What a model's crop of an image depends on."""
    return (image_hash, model.input_size, model.resize, model.interpolation)


def map_key(model: sc.Classifier, image_hash: str, method: str, target: int, params: dict) -> tuple:
    # card digest: the same weights with another card (preprocessing, labels) are another model
    return (
        model.fingerprint,
        model.card.get("digest"),
        image_hash,
        method,
        int(target),
        tuple(sorted(params.items())),
    )


def explanation(
    model: sc.Classifier,
    image: Image.Image,
    image_hash: str,
    method: str,
    target: int,
    params: dict,
    progress: Callable[[int, int], None] | None = None,
    preview: Callable | None = None,
) -> sc.Explanation:
    """The map for (model, image, method, target, params), computed at most once.
    ``preview(done, total, saliency)`` shows a running map while SmoothGrad works."""
    used = sc.resolve_params(sc.METHODS[method], params, model)
    key = map_key(model, image_hash, method, target, used)
    cache = map_cache()
    hit = cache.get(key)
    if hit is None:
        with _compute_lock:
            hit = cache.get(key)  # computed meanwhile (the Review prefetch, another session)
            if hit is None:
                hit = sc.explain(
                    model, image, method=method, target=target, progress=progress, preview=preview, **used
                )
                cache.put(key, hit)
    return hit


# One map at a time in this process: 2 CPU cores gain nothing from two at once, and a background
# prefetch then never competes with the map a reviewer is waiting for.
_compute_lock = threading.RLock()
_prefetching: set = set()
_prefetched = MapCache(size=256)  # prefetches done (their maps may since have left the map cache)
_prefetch_guard = threading.Lock()


def prefetch(
    model: sc.Classifier, image: Image.Image, image_hash: str, methods: dict
) -> threading.Thread | None:
    """Compute the maps ``{method: params}`` of ``image`` (its predicted class) in a background
    thread into the shared map cache, one map at a time under the same lock as ``explanation``:
    the Review page does this for the next item while the reviewer looks at the current one.
    Returns the thread, or None when every map is cached or the same prefetch is already running.
    Errors are logged only: the page computes a failed map again in the foreground and says why."""
    key = (
        *model_key(model),
        image_hash,
        tuple(sorted((m, tuple(sorted(p.items()))) for m, p in methods.items())),
    )
    cache = map_cache()
    with _prefetch_guard:
        if key in _prefetching or _prefetched.get(key):
            return None
        _prefetching.add(key)

    def work() -> None:
        try:
            with _compute_lock:
                target = model.predict(image, k=1)[0][0]
            for method, params in methods.items():
                used = sc.resolve_params(sc.METHODS[method], params, model)
                wanted = map_key(model, image_hash, method, target, used)
                if cache.get(wanted) is not None:
                    continue
                with _compute_lock:
                    if cache.get(wanted) is None:
                        cache.put(wanted, sc.explain(model, image, method=method, target=target, **used))
            _prefetched.put(key, True)
        except Exception:  # the foreground computes it again and reports it
            log.exception("prefetch of %s failed", image_hash[:12])
        finally:
            with _prefetch_guard:
                _prefetching.discard(key)

    thread = threading.Thread(target=work, name="saliency-prefetch", daemon=True)
    thread.start()
    return thread


def cached_explain(
    model: sc.Classifier,
    image: Image.Image,
    method: str,
    target: int | None,
    params: dict,
    progress: Callable[[int, int], None] | None = None,
    preview: Callable | None = None,
) -> sc.Explanation:
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
        "params": {  # each as its default's type (the sidebar's widgets, or the methods' defaults)
            key: type(default)(s.get(key, default)) for key, default in defaults.PARAMS.items()
        },
    }


def page_model(cfg: dict) -> sc.Classifier:
    """The sidebar's model; on failure an error on the page, and the page stops."""
    try:
        return get_model(cfg["model"])
    except ValueError as err:
        st.error(f"The model could not be loaded: {plain(err)}")
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
    from saliency_core.engine.samples import sample_images

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
        st.error(plain(err))
        st.stop()
    for note in image_notes(image):
        st.info(plain(note))
    return name, image, sc.image_hash(image)


def prediction_words(model: sc.Classifier, predicted: list) -> str:
    """The prediction in words for Markdown: the top class, or a multi-label model's set."""
    if not model.multilabel:
        ((_, label, p),) = predicted
        return f"**Prediction:** {plain(label)} ({p:.1%})"
    rule = f"multi-label: every class above {model.threshold:.0%}"
    if not predicted:
        return f"**Predicted classes** ({rule}): none"
    return f"**Predicted classes** ({rule}): " + ", ".join(
        f"{plain(label)} ({p:.1%})" for _, label, p in predicted
    )


def method_params(method: str, params: dict) -> dict:
    """The subset of the sidebar parameters that ``method`` takes."""
    return sc.METHODS[method].params_for(params)


def report_error(where: str, err: Exception) -> None:
    """A plain message on the page; the traceback goes to the server log only. ``where`` and the
    message are shown as text (they may quote file names)."""
    if isinstance(err, ValueError):
        message = str(err)
        for name in (where, where.split(" · ")[0]):  # messages that start with the file's name: once
            if message.startswith(f"{name}: "):
                message = message[len(name) + 2 :]
                break
        st.error(f"**{plain(where)}**: {plain(message)}")
    else:
        reference = secrets.token_hex(4)
        log.error("%s failed (reference %s)", where, reference, exc_info=err)
        st.error(
            f"**{plain(where)}**: something went wrong ({type(err).__name__}). The other results are "
            f"unaffected; the details are in the server log under reference **{reference}**."
        )


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
    """Keep ``verdict`` (a ``metrics.SanityVerdict``) as this model's verdict for its method, on
    the photo it was computed for (and as the method's latest on any photo)."""
    _sanity_verdicts().put((*model_key(model), verdict.method, verdict.image_hash), verdict)
    _sanity_verdicts().put((*model_key(model), verdict.method, None), verdict)


def sanity_verdict(model: sc.Classifier, method: str, image_hash: str | None = None):
    """The last randomisation verdict computed for (model, method) on the photo ``image_hash``;
    with ``image_hash=None`` the latest on any photo (it names its photo). None if there is none."""
    return _sanity_verdicts().get((*model_key(model), method, image_hash))


# ---- long runs: an estimate before, progress and Cancel while running ---------------------------------


def estimate_caption(seconds: float, what: str) -> None:
    """Say before a run starts how long it will take here (``saliency_core.engine.estimate``)."""
    from saliency_core.engine.estimate import describe_seconds

    st.caption(
        f":material/schedule: {what}: {describe_seconds(seconds)} on this machine "
        "(from a timing of the model made just now)."
    )


def request_run(name: str) -> None:
    """Button callback: start run ``name`` on this rerun (a flag set in a callback survives
    require_frame()'s rerun, which a button's click value does not)."""
    st.session_state[f"{name}__running"] = True


def cancel_run(name: str) -> None:
    st.session_state[f"{name}__running"] = False
    st.session_state[f"{name}__cancelled"] = True


def run_active(name: str) -> bool:
    """Whether run ``name`` was started and has neither finished nor been cancelled."""
    return bool(st.session_state.get(f"{name}__running"))


def run_cancelled(name: str) -> bool:
    return bool(st.session_state.get(f"{name}__cancelled"))


def finish_run(name: str) -> None:
    st.session_state[f"{name}__running"] = False
    st.session_state[f"{name}__cancelled"] = False


@contextmanager
def cancellable(name: str, text: str):
    """A progress bar and a Cancel button while run ``name`` computes. A click on Cancel stops
    the script at its next Streamlit call (the bar's next update); what the run stored in
    session_state so far stays, and the page shows it. Yields the progress bar."""
    bar = st.progress(0.0, text=text)
    stop = st.empty()
    stop.button(
        "Cancel",
        key=f"{name}__cancel",
        icon=":material/cancel:",
        on_click=cancel_run,
        args=(name,),
        help="Stops the run. What was finished so far is kept and shown.",
    )
    try:
        yield bar
    finally:
        bar.empty()
        stop.empty()


# ---- layout: maps in a grid, colour bars, alt text ----------------------------------------------------

GRID_CSS = """<style>
/* Map grids (pages/_common.map_rows): at most four per row, at least 200 px each; two per row on
   a phone-width window. Layout only: no user text here. */
div[class*="st-key-mapgrid"] div[data-testid="stHorizontalBlock"] { flex-wrap: wrap; }
div[class*="st-key-mapgrid"] div[data-testid="stColumn"] { min-width: 200px; }
@media (max-width: 640px) {
  div[class*="st-key-mapgrid"] div[data-testid="stHorizontalBlock"] {
    flex-direction: row !important; flex-wrap: wrap !important; gap: 1rem !important; }
  div[class*="st-key-mapgrid"] div[data-testid="stColumn"] {
    min-width: calc(50% - 0.75rem) !important; max-width: calc(50% - 0.75rem) !important;
    flex: 1 1 calc(50% - 0.75rem) !important; width: calc(50% - 0.75rem) !important; }
}
</style>"""
PER_ROW = 4


def map_rows(items: list, key: str, per_row: int = PER_ROW):
    """Lay ``items`` out in rows of at most ``per_row`` equal columns: yields ``(row_items,
    columns)``; what the caller draws after a row's columns (cautions) spans the full width."""
    st.html(GRID_CSS)
    with st.container(key=f"mapgrid-{key}"):
        for start in range(0, len(items), per_row):
            row = items[start : start + per_row]
            yield row, st.columns(per_row, gap="medium")[: len(row)]


def colour_bar(r, alt: str = "") -> None:
    """The colour bar of a rendered map (framed, so its dark end shows on a dark theme), labelled
    in words; the exact numbers in its tooltip."""
    from saliency_core.engine import render as rd

    st.image(
        rd.colorbar_image(r, height=12, width=256, frame=True),
        width="stretch",
        alt=alt or "Colour scale from low influence (left) to high influence (right)",
    )
    words = (
        "lowers the score ← no effect → raises the score" if r.sign == "signed" else "low → high influence"
    )
    ticks = ", ".join(label for _, label in r.colorbar_ticks)
    st.caption(words, help=f"Values along the bar: {ticks}. {r.legend}")


def map_alt(method_label: str, image_name: str, target_label: str, probability: float | None = None) -> str:
    """Alt text of an overlay: which method, which class, which image."""
    what = f"{method_label} saliency map over {image_name}, explaining the class {target_label}"
    return (
        what
        + (f" ({probability:.0%} confidence)" if probability is not None else "")
        + ": brighter areas influenced the score more."
    )


@st.cache_resource
def _stability_verdicts() -> MapCache:
    """(model, image hash, method) -> (verdict, reason), filled by the Stability page; the
    Gallery shows them as flags and never starts a check itself."""
    return MapCache(size=100_000)


def record_stability_verdict(
    model: sc.Classifier, image_hash: str, method: str, verdict: str, reason: str
) -> None:
    _stability_verdicts().put((*model_key(model), image_hash, method), (verdict, reason))


def stability_verdict(model: sc.Classifier, image_hash: str, method: str) -> tuple[str, str] | None:
    """The last stability verdict computed for this image and method, or None."""
    return _stability_verdicts().get((*model_key(model), image_hash, method))


def has_stability_verdicts() -> bool:
    return len(_stability_verdicts()) > 0
