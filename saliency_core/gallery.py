"""Gallery: a labelled set's predictions and maps, computed once, stored, filtered to the mistakes.

A run (``run``) sends the images of a ``LabelledSet`` that have no stored result through the
pipeline (``pipeline.explain_images``, the one images x methods loop) and writes each image's
prediction and maps to a SQLite file (``ResultStore``) as soon as the image is done, one
transaction per image: a run that is cancelled or killed keeps everything finished, and the next
run computes only what is missing. Results are keyed by what they depend on:

- ``files``: the sha256 of a file's bytes -> the decoded image's hash (or why it cannot be read);
- ``predictions``: (model, image hash) -> top-5 and a thumbnail of the crop the model saw;
- ``maps``: (model, image hash, method, parameters, target) -> the saliency map (float32,
  byte-shuffled and zlib-compressed, exact), its record (``Explanation.record()``) and an
  overlay thumbnail.

"model" is the weights' fingerprint, the card's digest, and the saliency_core and torch versions.
The file sits next to the review database: ``SALIENCY_GALLERY_DB``, else ``gallery.sqlite`` in
the folder of ``SALIENCY_DB`` (default ``./data``).

``table`` joins a set with the stored results (one row per image: true label, prediction,
confidence, correct or not); ``filter_rows``, ``confusion``, ``class_accuracy``, ``tiles``,
``explanations``, ``to_csv`` and ``build_report`` work on it. Sets sent to review are kept as
selections (``save_selection``), so the review queue can show their images later.

Example:
    >>> store = ResultStore("gallery.sqlite")
    >>> labelled = demo_set(model.labels)
    >>> run(model, labelled, ["gradient", "gradcam"], {}, store).computed
    32
    >>> rows = table(store, model, labelled, ["gradient", "gradcam"], {})
    >>> filter_rows(rows, outcome="incorrect", order="confident mistakes first").name.head(3).tolist()
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from .evaluation.annotations import Skipped
from .engine.explain import Explanation, explain, get_method, resolve_params
from .engine.images import image_hash
from .evaluation.labelled import LabelledItem, LabelledSet
from .engine.methods import METHODS
from .pipeline import RenderOptions, explain_images, method_params
from .engine.untrusted import InflateError, cut, inflate

THUMB = 192              # thumbnail side in pixels
THUMB_QUALITY = 85       # JPEG quality of thumbnails (display only; maps are stored exactly)
PAGE_SIZE = 48           # tiles per page
MAX_REVIEW_ITEMS = 2000  # images one selection sent to review may hold
OUTCOMES = ("all", "incorrect", "correct")
ORDERS = ("name", "confident mistakes first", "least confident first", "most confident first")
BUSY_TIMEOUT = 30.0


def gallery_path() -> Path:
    """Where the result store lives: ``SALIENCY_GALLERY_DB``, else ``gallery.sqlite`` next to
    the review database (``SALIENCY_DB``, default ``./data/reviews.sqlite``)."""
    from .review.store import DEFAULT_SQLITE
    explicit = os.environ.get("SALIENCY_GALLERY_DB", "").strip()
    if explicit:
        return Path(explicit).expanduser().absolute()
    review = os.environ.get("SALIENCY_DB", "").strip() or DEFAULT_SQLITE
    return Path(review).expanduser().absolute().parent / "gallery.sqlite"


def model_key(model) -> str:
    """What a stored result depends on besides the image: weights, card, engine versions."""
    import torch
    from ._version import __version__
    digest = (model.card or {}).get("digest") or "-"
    return f"{model.fingerprint}|{digest}|saliency_core {__version__}|torch {torch.__version__}"


def params_key(model, method: str, params: dict | None) -> str:
    """Every parameter ``method`` runs with (defaults filled in), as canonical JSON."""
    used = resolve_params(get_method(method), method_params(method, params), model)
    return json.dumps(used, sort_keys=True, default=str)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---- map encoding ----------------------------------------------------------------------------------

def encode_map(saliency: np.ndarray) -> bytes:
    """float32 (H, W) -> bytes: the four bytes of each float grouped by position, then zlib.
    Lossless; grouping makes the slowly varying high bytes compress."""
    a = np.ascontiguousarray(saliency, dtype="<f4")
    return zlib.compress(a.view(np.uint8).reshape(-1, 4).T.tobytes(), 6)


def decode_map(blob: bytes, shape: Sequence[int]) -> np.ndarray:
    """Inverse of ``encode_map``, inflating at most the bytes ``shape`` needs."""
    h, w = (int(shape[0]), int(shape[1]))
    if not (0 < h <= 8192 and 0 < w <= 8192):
        raise ValueError(f"stored map has an impossible shape {shape}")
    raw = inflate(blob, 4 * h * w)
    if len(raw) != 4 * h * w:
        raise ValueError(f"stored map holds {len(raw)} bytes; {h}x{w} float32 needs {4 * h * w}")
    planes = np.frombuffer(raw, np.uint8).reshape(4, h * w)
    return np.ascontiguousarray(planes.T).view("<f4").reshape(h, w).astype(np.float32)


def _jpeg(image: Image.Image | np.ndarray, side: int = THUMB) -> bytes:
    picture = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    picture = picture.convert("RGB")
    picture.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=THUMB_QUALITY)
    return buf.getvalue()


# ---- the store -------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    file_key TEXT PRIMARY KEY, image_hash TEXT, failed TEXT, width INTEGER, height INTEGER);
CREATE TABLE IF NOT EXISTS predictions (
    model_key TEXT NOT NULL, image_hash TEXT NOT NULL, predicted INTEGER NOT NULL, confidence REAL NOT NULL,
    top5 TEXT NOT NULL, top5_index TEXT NOT NULL, created_at TEXT NOT NULL, thumb BLOB,
    PRIMARY KEY (model_key, image_hash));
CREATE TABLE IF NOT EXISTS maps (
    model_key TEXT NOT NULL, image_hash TEXT NOT NULL, method TEXT NOT NULL, params_key TEXT NOT NULL,
    target INTEGER NOT NULL, record TEXT NOT NULL, error TEXT, created_at TEXT NOT NULL, shape TEXT,
    overlay BLOB, saliency BLOB,
    PRIMARY KEY (model_key, image_hash, method, params_key, target));
CREATE INDEX IF NOT EXISTS predictions_covering ON predictions (model_key, image_hash, predicted, confidence,
                                                               top5_index);
CREATE INDEX IF NOT EXISTS maps_covering ON maps (model_key, method, params_key, image_hash, target, error);
CREATE TABLE IF NOT EXISTS selections (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL,
    model_key TEXT NOT NULL, source TEXT NOT NULL, description TEXT NOT NULL, methods TEXT NOT NULL,
    items INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS selection_items (
    selection_id TEXT NOT NULL, position INTEGER NOT NULL, name TEXT NOT NULL, label TEXT NOT NULL,
    classes TEXT NOT NULL, image_hash TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (selection_id, position));
"""


class ResultStore:
    """Predictions and maps of gallery runs in one SQLite file (WAL; one connection per thread).

    Args:
        path: the SQLite file; default ``gallery_path()``.
    Raises:
        ValueError: the file or its folder cannot be created or opened, in plain words.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, busy_timeout: float = BUSY_TIMEOUT):
        self.path = Path(path) if path else gallery_path()
        self.busy_timeout = float(busy_timeout)
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(f"Cannot create the folder {self.path.parent} for the gallery's results: "
                             f"{err.strerror or err}. Set SALIENCY_GALLERY_DB to a writable path.") from None
        try:
            self._db().executescript(_SCHEMA)   # each statement commits on its own
        except sqlite3.Error as err:
            raise ValueError(f"Cannot use {self.path} for the gallery's results ({err}). Set "
                             "SALIENCY_GALLERY_DB to a writable SQLite file.") from None

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
                db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")   # a crash may lose the last image, never corrupt
            except sqlite3.Error as err:
                raise ValueError(f"Cannot open the gallery's results {self.path} ({err}). Set "
                                 "SALIENCY_GALLERY_DB to a writable SQLite file.") from None
            self._local.db = db
        return db

    class _Tx:
        def __init__(self, store: "ResultStore", write: bool):
            self.store, self.write = store, write

        def __enter__(self) -> sqlite3.Connection:
            self.db = self.store._db()
            try:
                self.db.execute("BEGIN IMMEDIATE" if self.write else "BEGIN")
            except sqlite3.Error as err:
                raise ValueError(f"The gallery's results {self.store.path} cannot be used ({err}).") from None
            return self.db

        def __exit__(self, kind, err, tb):
            if kind is None:
                self.db.execute("COMMIT")
            else:
                self.db.execute("ROLLBACK")
                if isinstance(err, sqlite3.Error):
                    raise ValueError(f"The gallery's results {self.store.path} reported an error ({err}); "
                                     "nothing was written.") from None
            return False

    def _write(self) -> "_Tx":
        return ResultStore._Tx(self, True)

    def _read(self) -> "_Tx":
        return ResultStore._Tx(self, False)

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def version(self) -> tuple:
        """Changes whenever anything was written (for caches of ``table``)."""
        with self._read() as db:
            return tuple(db.execute("SELECT (SELECT count(*) FROM files), (SELECT count(*) FROM predictions), "
                                    "(SELECT count(*) FROM maps), (SELECT count(*) FROM selections)").fetchone())

    # ---- reading -------------------------------------------------------------------------------
    @staticmethod
    def _wanted(db: sqlite3.Connection, values: Iterable[str]) -> None:
        """Fill this connection's temporary table ``wanted`` with ``values``: queries join it
        (one index probe per value) instead of passing thousands of parameters."""
        db.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (value TEXT PRIMARY KEY)")
        db.execute("DELETE FROM temp.wanted")
        db.executemany("INSERT OR IGNORE INTO temp.wanted VALUES (?)", ((v,) for v in values))

    def files(self, keys: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
        """file key -> (image hash, why it cannot be read), for the keys that were seen."""
        with self._read() as db:
            self._wanted(db, keys)
            return {key: (h, failed) for key, h, failed in db.execute(
                "SELECT f.file_key, f.image_hash, f.failed FROM temp.wanted w JOIN files f ON f.file_key = w.value")}

    def predictions(self, mkey: str, hashes: Sequence[str], full: bool = True) -> dict[str, tuple[int, float, list]]:
        """image hash -> (predicted index, its probability, top 5): [(index, label, probability)],
        or with ``full=False`` only the five indices (faster for thousands of images)."""
        with self._read() as db:
            self._wanted(db, hashes)
            if not full:
                return {h: (int(predicted), float(confidence), [int(i) for i in top5.split()])
                        for h, predicted, confidence, top5 in db.execute(
                            "SELECT p.image_hash, p.predicted, p.confidence, p.top5_index FROM temp.wanted w JOIN "
                            "predictions p ON p.model_key = ? AND p.image_hash = w.value", (mkey,))}
            return {h: (int(predicted), float(confidence), [tuple(p) for p in json.loads(top5)])
                    for h, predicted, confidence, top5 in db.execute(
                        "SELECT p.image_hash, p.predicted, p.confidence, p.top5 FROM temp.wanted w JOIN predictions p "
                        "ON p.model_key = ? AND p.image_hash = w.value", (mkey,))}

    def mapped(self, mkey: str, method: str, pkey: str, hashes: Sequence[str]) -> dict[str, str | None]:
        """image hash -> None (map stored) or the error stored, for the maps of the predicted class."""
        with self._read() as db:
            self._wanted(db, hashes)
            return dict(db.execute(
                "SELECT m.image_hash, m.error FROM temp.wanted w JOIN predictions p ON p.model_key = ? AND "
                "p.image_hash = w.value JOIN maps m ON m.model_key = p.model_key AND m.method = ? AND "
                "m.params_key = ? AND m.image_hash = p.image_hash AND m.target = p.predicted",
                (mkey, method, pkey)))

    def thumbs(self, mkey: str, hashes: Sequence[str], method: str | None = None, pkey: str | None = None
               ) -> dict[str, bytes]:
        """image hash -> JPEG: the overlay of ``method`` where stored, else the plain crop."""
        hashes = list(hashes)
        out: dict[str, bytes] = {}
        marks = ",".join("?" * len(hashes))
        if not hashes:
            return out
        with self._read() as db:
            if method is not None:
                for h, jpeg in db.execute(
                        f"SELECT m.image_hash, m.overlay FROM maps m JOIN predictions p ON p.model_key = m.model_key "
                        f"AND p.image_hash = m.image_hash AND p.predicted = m.target WHERE m.model_key = ? AND "
                        f"m.method = ? AND m.params_key = ? AND m.overlay IS NOT NULL AND m.image_hash IN ({marks})",
                        [mkey, method, pkey, *hashes]):
                    out[h] = bytes(jpeg)
            rest = [h for h in hashes if h not in out]
            if rest:
                marks = ",".join("?" * len(rest))
                for h, jpeg in db.execute(f"SELECT image_hash, thumb FROM predictions WHERE model_key = ? AND "
                                          f"image_hash IN ({marks})", [mkey, *rest]):
                    if jpeg is not None:
                        out[h] = bytes(jpeg)
        return out

    def stored_map(self, mkey: str, h: str, method: str, pkey: str, target: int) -> tuple[dict, np.ndarray | None, str | None] | None:
        """(record, saliency or None, error) of one stored map, or None."""
        with self._read() as db:
            row = db.execute("SELECT record, error, shape, saliency FROM maps WHERE model_key = ? AND image_hash = ? "
                             "AND method = ? AND params_key = ? AND target = ?",
                             (mkey, h, method, pkey, int(target))).fetchone()
        if row is None:
            return None
        record, error, shape, blob = row
        if error is not None:
            return json.loads(record), None, error
        try:
            return json.loads(record), decode_map(bytes(blob), json.loads(shape)), None
        except (ValueError, InflateError, TypeError) as err:
            return json.loads(record), None, f"the stored map is damaged ({err}); run the set again to recompute it"

    # ---- writing -------------------------------------------------------------------------------
    def put_failure(self, file_key: str, reason: str) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO files (file_key, image_hash, failed) VALUES (?, NULL, ?)",
                       (file_key, cut(reason, 1000)))

    def put_result(self, mkey: str, file_key: str, result, pkeys: dict[str, str],
                   render: RenderOptions | None = None) -> None:
        """One image's prediction and maps (a ``pipeline.ImageResult``), in one transaction."""
        from .engine.render import render as draw
        render = render or RenderOptions()
        predicted, _, confidence = result.prediction[0]
        rows = []
        for method, exp in result.maps.items():
            sign = render.sign_for(method)
            r = draw(exp.saliency, exp.image, sign=sign, alpha=render.alpha, clip_percentile=render.clip_percentile,
                     target_label=exp.target_label, meaning=METHODS[method].meaning)
            record = {**exp.record(), "render": {"sign": r.sign, "colormap": r.colormap, "scale": r.scale,
                                                 "near_zero": r.near_zero, "legend": r.legend}}
            rows.append((mkey, result.image_hash, method, pkeys[method], int(exp.target),
                         json.dumps(record, default=_plain), None, _now(), json.dumps(list(exp.saliency.shape)),
                         _jpeg(r.overlay), encode_map(exp.saliency)))
        for method, message in [*result.errors.items(),
                                *((m, f"unexpected {c['type']}: {c['message']}") for m, c in result.crashes.items())]:
            rows.append((mkey, result.image_hash, method, pkeys[method], int(predicted),
                         json.dumps({"method": method}), cut(message, 1000), _now(), None, None, None))
        thumb = _jpeg(result.crop) if result.crop is not None else None
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, NULL, ?, ?)",
                       (file_key, result.image_hash, int(result.image_size[0]), int(result.image_size[1])))
            db.execute("INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (mkey, result.image_hash, int(predicted), float(confidence),
                        json.dumps([[int(i), str(l), float(p)] for i, l, p in result.prediction]),
                        " ".join(str(int(i)) for i, _, _ in result.prediction), _now(), thumb))
            db.executemany("INSERT OR REPLACE INTO maps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    # ---- selections sent to review ---------------------------------------------------------------
    def save_selection(self, name: str, created_by: str, mkey: str, source: str, description: str,
                       methods: dict, items: Sequence[tuple[str, str, Sequence[int], str, bytes]]) -> str:
        """Keep ``items`` ((name, label, its class indices, image hash, file bytes)) as a
        selection; returns its id (the same items, model and methods give the same id)."""
        if not items:
            raise ValueError("No images to send: the filters leave none.")
        if len(items) > MAX_REVIEW_ITEMS:
            raise ValueError(f"{len(items):,} images are too many for one review batch; the limit is "
                             f"{MAX_REVIEW_ITEMS:,}. Narrow the filters (e.g. mistakes only, one class).")
        digest = hashlib.sha256(json.dumps([mkey, methods, [(n, lab, h) for n, lab, _, h, _ in items]],
                                           sort_keys=True, default=str).encode()).hexdigest()[:16]
        with self._write() as db:
            if db.execute("SELECT 1 FROM selections WHERE id = ?", (digest,)).fetchone() is None:
                db.execute("INSERT INTO selections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (digest, cut(name, 200), _now(), cut(created_by, 200), mkey, cut(source, 500),
                            cut(description, 1000), json.dumps(methods, default=str), len(items)))
                db.executemany("INSERT INTO selection_items VALUES (?, ?, ?, ?, ?, ?, ?)",
                               [(digest, i, n, lab, json.dumps([int(c) for c in classes]), h, data)
                                for i, (n, lab, classes, h, data) in enumerate(items)])
        return digest

    def selection(self, selection_id: str) -> dict | None:
        with self._read() as db:
            row = db.execute("SELECT id, name, created_at, created_by, model_key, source, description, methods, "
                             "items FROM selections WHERE id = ?", (selection_id,)).fetchone()
        if row is None:
            return None
        keys = ("id", "name", "created_at", "created_by", "model_key", "source", "description", "methods", "items")
        out = dict(zip(keys, row))
        out["methods"] = json.loads(out["methods"])
        return out

    def selection_items(self, selection_id: str) -> list[dict]:
        """[{name, label, classes, hash, data}] of a selection, in the order sent."""
        with self._read() as db:
            rows = db.execute("SELECT name, label, classes, image_hash, data FROM selection_items "
                              "WHERE selection_id = ? ORDER BY position", (selection_id,)).fetchall()
        return [{"name": n, "label": lab, "classes": tuple(json.loads(c)), "hash": h, "data": bytes(d)}
                for n, lab, c, h, d in rows]


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# ---- runs -------------------------------------------------------------------------------------------

@dataclass
class RunProgress:
    """Where a run stands: ``done`` of ``total`` images (``stored`` were there already)."""

    done: int
    total: int
    computed: int
    seconds: float
    name: str = ""

    @property
    def rate(self) -> float:
        """Images computed per second so far (0 before the first)."""
        return self.computed / self.seconds if self.seconds > 0 and self.computed else 0.0

    @property
    def seconds_left(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate else None

    def words(self) -> str:
        """``12 of 32 images · 1.8 images/s · about 11 s left``."""
        text = f"{self.done:,} of {self.total:,} images"
        if self.rate:
            text += f" · {self.rate:.2f} images/s"
            left = self.seconds_left
            if left is not None and self.done < self.total:
                text += f" · about {_duration(left)} left"
        return text


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class RunReport:
    """What a run did: images ``computed`` now, already ``stored``, ``failed`` (unreadable,
    each with the reason, stored so they are not tried again), ``errors`` (a method failing on
    an image), whether it was ``cancelled``, and how long it took."""

    total: int
    stored: int = 0
    computed: int = 0
    failed: list[Skipped] = field(default_factory=list)
    errors: list[Skipped] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 and self.computed else 0.0


class _Lazy:
    """A file the pipeline reads when it gets to it (``load_image`` calls ``read()``)."""

    def __init__(self, item: LabelledItem):
        self.item = item

    def read(self) -> bytes:
        return self.item.read()


def pending(store: ResultStore, model, labelled: LabelledSet, methods: Sequence[str], params: dict | None
            ) -> tuple[list[LabelledItem], int, list[Skipped]]:
    """(items without a complete stored result, how many have one, files already found unreadable)."""
    mkey = model_key(model)
    pkeys = {m: params_key(model, m, params) for m in methods}
    known = store.files([it.key for it in labelled.items])
    hashes = sorted({h for h, failed in known.values() if h and not failed})
    complete = set(store.predictions(mkey, hashes))
    for m in methods:
        complete &= set(store.mapped(mkey, m, pkeys[m], sorted(complete)))
    todo, stored, failed = [], 0, []
    for it in labelled.items:
        h, reason = known.get(it.key, (None, None))
        if reason:
            failed.append(Skipped(it.name, _strip_name(reason, it.name)))
        elif h in complete:
            stored += 1
        else:
            todo.append(it)
    return todo, stored, failed


def stored_explain_fn(store: ResultStore, compute: Callable[..., Explanation] | None = None):
    """An ``explain_fn`` for the pipeline that returns stored maps and computes (with ``compute``,
    default ``saliency_core.explain``) only the others."""
    compute = compute or (lambda model, image, method, target, params, progress=None, preview=None:
                          explain(model, image, method=method, target=target, progress=progress, preview=preview,
                                  **params))

    def fn(model, image, method, target, params, progress=None, preview=None):
        mkey = model_key(model)
        h = image_hash(image)
        if target is None:
            known = store.predictions(mkey, [h]).get(h)
            target = known[0] if known else None
        if target is not None:
            hit = stored_explanation(store, model, h, method, params, int(target))
            if hit is not None:
                hit.image = model.crop(image)
                return hit
        return compute(model, image, method, target, params, progress=progress, preview=preview)
    return fn


def stored_explanation(store: ResultStore, model, h: str, method: str, params: dict | None, target: int,
                       crop: Image.Image | None = None) -> Explanation | None:
    """The stored ``Explanation`` (saliency exact; ``attribution`` is not stored: empty), or None.
    Raises ValueError with the stored reason when the method failed on this image."""
    mkey = model_key(model)
    found = store.stored_map(mkey, h, method, params_key(model, method, params), target)
    if found is None:
        return None
    record, saliency, error = found
    if error is not None:
        raise ValueError(error)
    prediction = [(int(p["index"]), str(p["label"]), float(p["probability"])) for p in record["prediction"]]
    return Explanation(attribution=np.zeros((0,), np.float32), saliency=saliency, target=int(record["target"]),
                       target_label=str(record["target_label"]), method=method, params=dict(record["params"]),
                       reduction=str(record["reduction"]), image=crop, prediction=prediction, image_hash=h,
                       model_fingerprint=str(record["model_fingerprint"]),
                       diagnostics=dict(record.get("diagnostics") or {}), seconds=float(record.get("seconds", 0)),
                       device=str(record.get("device", "cpu")))


def run(model, labelled: LabelledSet, methods: Sequence[str], params: dict | None, store: ResultStore, *,
        progress: Callable[[RunProgress], None] | None = None, cancel: Callable[[], bool] | None = None,
        ray_address: str | None = None, model_source: str | None = None, ray_min_images: int = 200) -> RunReport:
    """Predict and explain every image of ``labelled`` that has no stored result, and store each.

    Args:
        model: a loaded ``Classifier``.
        labelled: the set (``saliency_core.labelled``).
        methods: registry names; params: method parameters (each method takes its own).
        store: where results are read and written.
        progress: called after each image with a ``RunProgress``.
        cancel: checked before each image; True stops the run (finished images are kept).
        ray_address: run on this Ray cluster (``distributed``) when at least ``ray_min_images``
            images are pending and each is a file on the server; ``model_source`` (what
            ``load_model`` takes, at a path every node sees) is then needed.
    Returns:
        ``RunReport``.
    """
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ValueError("Choose at least one saliency method.")
    for m in methods:
        get_method(m)
    started = time.perf_counter()
    mkey = model_key(model)
    pkeys = {m: params_key(model, m, params) for m in methods}
    todo, stored, failed = pending(store, model, labelled, methods, params)
    report = RunReport(total=len(labelled), stored=stored, failed=failed)
    done = stored + len(failed)
    if progress is not None:
        progress(RunProgress(done, report.total, 0, 0.0))
    if not todo:
        report.seconds = time.perf_counter() - started
        return report
    if ray_address and model_source and len(todo) >= ray_min_images and all(it.path for it in todo):
        results = _ray_results(model_source, todo, methods, params, ray_address, cancel)
    else:
        results = explain_images(model, [(it.name, _Lazy(it)) for it in todo], methods, params,
                                 explain_fn=stored_explain_fn(store), cancel=cancel)
    for item, result in zip(todo, results):
        if result.failed is not None:
            store.put_failure(item.key, result.failed)
            report.failed.append(Skipped(item.name, _strip_name(result.failed, item.name)))
        elif result.crashed is not None:
            report.errors.append(Skipped(item.name, f"unexpected {result.crashed['type']}: "
                                                    f"{cut(result.crashed['message'], 300)}"))
        else:
            store.put_result(mkey, item.key, result, pkeys)
            report.computed += 1
            for m, message in result.errors.items():
                report.errors.append(Skipped(item.name, f"{METHODS[m].label}: {message}"))
        done += 1
        del result
        if progress is not None:
            progress(RunProgress(done, report.total, report.computed, time.perf_counter() - started, item.name))
    report.cancelled = done < report.total
    report.seconds = time.perf_counter() - started
    return report


def _strip_name(text: str, name: str) -> str:
    return text[len(name) + 2:] if text.startswith(name + ": ") else text


def _ray_results(model_source: str, todo: Sequence[LabelledItem], methods, params, address: str,
                 cancel: Callable[[], bool] | None):
    """Pipeline results of ``todo`` computed by Ray workers (``distributed``), in order."""
    import pickle
    from . import distributed
    rows = [{"index": i, "path": it.path, "name": it.name} for i, it in enumerate(todo)]
    with distributed.connected(address) as ray:
        actors, cpus, gpus = distributed._pool(ray, None, 1, None)
        constructor = {"model_source": model_source, "methods": list(methods),
                       "options": {"params": params or {}, "target": None, "render": None},
                       "threads": cpus, "gpus": gpus}
        for block in distributed.stream(rows, distributed._ExplainWorker, constructor, workers=actors, cpus=cpus,
                                        gpus=gpus, batch_size=distributed.BATCH_SIZE, preserve_order=True):
            for blob in block["results"]:
                if cancel is not None and cancel():
                    return
                yield pickle.loads(blob)


# ---- the table --------------------------------------------------------------------------------------

COLUMNS = ("name", "label", "status", "reason", "predicted_label", "predicted_class", "confidence", "correct",
           "in_top5", "image_hash", "key", "duplicate_of", "flags", "review")


def table(store: ResultStore, model, labelled: LabelledSet, methods: Sequence[str], params: dict | None
          ) -> pd.DataFrame:
    """One row per image of ``labelled`` with its stored result.

    Columns: ``name``, ``label`` (true), ``status`` ("done", "not computed", "unreadable",
    "duplicate"), ``reason``, ``predicted_label`` (the set's label whose classes hold the
    predicted class, else "other: <class>"), ``predicted_class`` (the model's name),
    ``confidence`` (its probability), ``correct``, ``in_top5`` (a true class among the top 5),
    ``image_hash``, ``key``, ``duplicate_of``, ``maps`` (methods with a stored map),
    ``complete`` (nothing left to compute for these methods), and ``flags`` (checks that
    failed), ``checks`` (checks that passed) and ``review`` (empty; pages fill them in).
    """
    mkey = model_key(model)
    items = labelled.items
    known = store.files([it.key for it in items])
    hashes = sorted({h for h, f in known.values() if h and not f})
    predicted = store.predictions(mkey, hashes, full=False)
    mapped = {m: store.mapped(mkey, m, params_key(model, m, params), list(predicted)) for m in methods}
    owner = {}
    for c, indices in labelled.classes.items():
        for i in indices:
            owner.setdefault(i, c)
    first_of: dict[str, str] = {}
    rows = []
    for it in items:
        h, failed = known.get(it.key, (None, None))
        row = {"name": it.name, "label": it.label, "status": "not computed", "reason": "", "predicted_label": "",
               "predicted_class": "", "confidence": np.nan, "correct": None, "in_top5": None,
               "image_hash": h or "", "key": it.key, "duplicate_of": "", "maps": "",
               "flags": "", "checks": "", "review": "", "complete": False}
        if failed:
            row.update(status="unreadable", reason=_strip_name(failed, it.name), complete=True)
        elif h and h in first_of:
            row.update(status="duplicate", duplicate_of=first_of[h], complete=all(h in mapped[m] for m in methods),
                       reason=f"the same picture as {first_of[h]}; counted once")
        elif h and h in predicted:
            index, confidence, top5 = predicted[h]
            label_of = owner.get(index)
            with_map = [m for m in methods if h in mapped[m] and mapped[m][h] is None]
            row.update(status="done", complete=all(h in mapped[m] for m in methods),
                       predicted_class=model.labels[index] if 0 <= index < len(model.labels) else str(index),
                       confidence=confidence, correct=index in it.classes,
                       in_top5=any(i in it.classes for i in top5), maps=",".join(with_map))
            row["predicted_label"] = label_of if label_of is not None else f"other: {row['predicted_class']}"
            first_of[h] = it.name
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "maps", "checks", "complete"])
    frame["confidence"] = frame["confidence"].astype(float)
    return frame


def filter_rows(rows: pd.DataFrame, *, true_labels: Sequence[str] = (), predicted_labels: Sequence[str] = (),
                outcome: str = "all", confidence: tuple[float, float] = (0.0, 1.0), flagged: bool | None = None,
                order: str = "name") -> pd.DataFrame:
    """The rows with a result that pass every filter, in ``order``.

    Args:
        true_labels, predicted_labels: keep these (empty: all).
        outcome: "all", "incorrect" or "correct".
        confidence: (low, high) range of the predicted class's probability, inclusive.
        flagged: True: only rows with flags; False: only rows without; None: all.
        order: one of ``ORDERS``: "confident mistakes first" puts the wrong predictions first,
            surest first; "least confident first" sorts by confidence, lowest first.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"Expected an outcome among {', '.join(OUTCOMES)}; got {outcome!r}.")
    if order not in ORDERS:
        raise ValueError(f"Expected an order among {', '.join(ORDERS)}; got {order!r}.")
    keep = rows["status"] == "done"
    if true_labels:
        keep &= rows["label"].isin(list(true_labels))
    if predicted_labels:
        keep &= rows["predicted_label"].isin(list(predicted_labels))
    if outcome != "all":
        keep &= rows["correct"] == (outcome == "correct")
    low, high = confidence
    keep &= rows["confidence"].between(float(low), float(high))
    if flagged is not None:
        keep &= (rows["flags"] != "") == flagged
    out = rows[keep]
    if order == "confident mistakes first":
        out = out.assign(_c=out["correct"].astype(bool)).sort_values(["_c", "confidence", "name"],
                                                                      ascending=[True, False, True]).drop(columns="_c")
    elif order == "least confident first":
        out = out.sort_values(["confidence", "name"], ascending=[True, True])
    elif order == "most confident first":
        out = out.sort_values(["confidence", "name"], ascending=[False, True])
    else:
        out = out.sort_values("name")
    return out


def page_of(rows: pd.DataFrame, page: int, size: int = PAGE_SIZE) -> pd.DataFrame:
    """Rows of page ``page`` (1-based; clamped to the pages there are)."""
    pages = max(1, -(-len(rows) // size))
    page = min(max(int(page), 1), pages)
    return rows.iloc[(page - 1) * size: page * size]


def pages(rows: pd.DataFrame, size: int = PAGE_SIZE) -> int:
    return max(1, -(-len(rows) // size))


@dataclass
class Tile:
    """One grid tile: the picture (overlay JPEG) and what the caption and alt text say."""

    name: str
    image_hash: str
    jpeg: bytes | None
    caption: str
    alt: str
    correct: bool


def tiles(store: ResultStore, model, rows: pd.DataFrame, method: str | None, params: dict | None) -> list[Tile]:
    """Tiles for ``rows`` (a page): one query for all their thumbnails."""
    mkey = model_key(model)
    pkey = params_key(model, method, params) if method else None
    jpegs = store.thumbs(mkey, rows["image_hash"].tolist(), method, pkey)
    out = []
    what = f"{METHODS[method].label} overlay" if method else "photo"
    for r in rows.itertuples(index=False):
        verdict = "correct" if r.correct else "mistake"
        caption = f"{r.name}\n\ntrue: {r.label} · predicted: {r.predicted_class} ({r.confidence:.0%} sure)"
        alt = (f"{what} of {r.name}; true class {r.label}, the model predicted {r.predicted_class} with "
               f"{r.confidence:.0%} confidence ({verdict})")
        out.append(Tile(r.name, r.image_hash, jpegs.get(r.image_hash), caption, alt, bool(r.correct)))
    return out


def explanations(store: ResultStore, model, image_hash_: str, methods: Sequence[str], params: dict | None,
                 crop: Image.Image | None) -> tuple[list, dict[str, Explanation], dict[str, str]]:
    """(top-5, method -> stored Explanation, method -> why there is none) of one image; nothing
    is computed."""
    mkey = model_key(model)
    found = store.predictions(mkey, [image_hash_]).get(image_hash_)
    if found is None:
        return [], {}, {m: "not computed yet" for m in methods}
    predicted, _, top5 = found
    maps, missing = {}, {}
    for m in methods:
        try:
            exp = stored_explanation(store, model, image_hash_, m, params, predicted, crop=crop)
        except ValueError as err:
            missing[m] = str(err)
            continue
        if exp is None:
            missing[m] = "not computed yet (run the set with this method and these parameters)"
        else:
            maps[m] = exp
    return top5, maps, missing


OTHER_REST = "other: the rest"


def confusion(rows: pd.DataFrame, max_other: int = 12) -> pd.DataFrame:
    """Counts: index true label, columns predicted label (the set's labels first, then the
    ``max_other`` most frequent other predicted classes, then ``OTHER_REST`` for the others,
    whose labels are in ``counts.attrs["rest"]``), over the rows with a result."""
    done = rows[rows["status"] == "done"]
    true = sorted(done["label"].unique())
    others = done.loc[~done["predicted_label"].isin(true), "predicted_label"].value_counts()
    ranked = sorted(others.index, key=lambda c: (-others[c], c))
    shown, rest = ranked[:max_other], ranked[max_other:]
    predicted = done["predicted_label"].where(~done["predicted_label"].isin(rest), OTHER_REST)
    columns = true + shown + ([OTHER_REST] if rest else [])
    counts = pd.crosstab(done["label"], predicted).reindex(index=true, columns=columns, fill_value=0)
    counts.index.name, counts.columns.name = "true", "predicted"
    counts.attrs["rest"] = list(rest)
    return counts


def cell_labels(counts: pd.DataFrame, predicted: str) -> list[str]:
    """The predicted labels a confusion-matrix column stands for (``OTHER_REST``: several)."""
    return list(counts.attrs.get("rest", [])) if predicted == OTHER_REST else [predicted]


def class_accuracy(rows: pd.DataFrame) -> pd.DataFrame:
    """Per true label: images, correct, accuracy; the set as a whole last ("all")."""
    done = rows[rows["status"] == "done"]
    per = done.groupby("label")["correct"].agg(images="count", correct="sum").reset_index()
    per["correct"] = per["correct"].astype(int)
    total = pd.DataFrame([{"label": "all", "images": int(per["images"].sum()), "correct": int(per["correct"].sum())}])
    per = pd.concat([per, total], ignore_index=True)
    per["accuracy"] = per["correct"] / per["images"].where(per["images"] > 0)
    return per


# ---- exports ----------------------------------------------------------------------------------------

EXPORT_COLUMNS = ("name", "label", "predicted_label", "predicted_class", "confidence", "correct", "in_top5",
                  "image_hash", "flags", "checks", "review")


def safe_csv(frame: pd.DataFrame) -> str:
    """``frame`` as CSV text through ``engine.safe_text.to_csv``: text cells (and column names)
    that a spreadsheet would run as a formula get a leading ``'``; numbers stay numbers."""
    from .engine.safe_text import to_csv as safe_to_csv
    return safe_to_csv(frame)


def to_csv(rows: pd.DataFrame, model=None) -> str:
    """The rows as CSV (``EXPORT_COLUMNS``, plus the model's fingerprint), through ``safe_csv``."""
    out = rows.loc[:, [c for c in EXPORT_COLUMNS if c in rows.columns]].copy()
    out["confidence"] = out["confidence"].round(6)
    if model is not None:
        out["model_fingerprint"] = model.fingerprint
    return safe_csv(out)


def build_report(store: ResultStore, model, labelled: LabelledSet, rows: pd.DataFrame, methods: Sequence[str],
                 params: dict | None, *, title: str = "Gallery report", model_source: str = "demo",
                 progress: Callable[[int, int, str], None] | None = None):
    """A ``saliency_core.report.Report`` of ``rows`` (e.g. the filtered mistakes), built by the
    report builder from the stored maps (none recomputed when all are stored)."""
    from .report import build_report as build
    by_name = {it.name: it for it in labelled.items}
    images = [(name, by_name[name].read()) for name in rows["name"] if name in by_name]
    return build(model, images, list(methods), params=params, model_source=model_source, title=title,
                 explain_fn=stored_explain_fn(store), progress=progress)
