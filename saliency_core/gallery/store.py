"""The gallery's result store: one SQLite file of predictions, exact maps and thumbnails, keyed by
model, image hash, method and parameters, written one image per transaction."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from ..engine.explain import get_method, resolve_params
from ..engine.methods import METHODS
from ..engine.safe_text import json_text
from ..engine.untrusted import InflateError, cut, inflate
from ..pipeline import RenderOptions, method_params

THUMB = 192  # thumbnail side in pixels
THUMB_QUALITY = 85  # JPEG quality of thumbnails (display only; maps are stored exactly)


MAX_REVIEW_ITEMS = 2000  # images one selection sent to review may hold
BUSY_TIMEOUT = 30.0


def gallery_path() -> Path:
    """Where the result store lives: ``SALIENCY_GALLERY_DB``, else ``gallery.sqlite`` next to
    the review database (``SALIENCY_DB``, default ``./data/reviews.sqlite``)."""
    from ..review.store import DEFAULT_SQLITE

    explicit = os.environ.get("SALIENCY_GALLERY_DB", "").strip()
    if explicit:
        return Path(explicit).expanduser().absolute()
    review = os.environ.get("SALIENCY_DB", "").strip() or DEFAULT_SQLITE
    return Path(review).expanduser().absolute().parent / "gallery.sqlite"


def model_key(model) -> str:
    """What a stored result depends on besides the image: weights, card, engine versions."""
    import torch

    from .._version import __version__

    digest = (model.card or {}).get("digest") or "-"
    return f"{model.fingerprint}|{digest}|saliency_core {__version__}|torch {torch.__version__}"


def params_key(model, method: str, params: dict | None) -> str:
    """Every parameter ``method`` runs with (defaults filled in), as canonical JSON."""
    used = resolve_params(get_method(method), method_params(method, params), model)
    return json.dumps(used, sort_keys=True, default=str)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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


def _map_row(mkey: str, image_hash: str, method: str, pkey: str, exp, render: RenderOptions) -> tuple:
    """The ``maps`` row of one drawn explanation: its record with the render's words, the
    overlay (JPEG) and the map itself."""
    from ..engine.render import render as draw

    r = draw(
        exp.saliency,
        exp.image,
        sign=render.sign_for(method),
        alpha=render.alpha,
        clip_percentile=render.clip_percentile,
        target_label=exp.target_label,
        meaning=METHODS[method].meaning,
    )
    record = {
        **exp.record(),
        "render": {
            "sign": r.sign,
            "colormap": r.colormap,
            "scale": r.scale,
            "near_zero": r.near_zero,
            "legend": r.legend,
        },
    }
    return (
        mkey,
        image_hash,
        method,
        pkey,
        int(exp.target),
        json_text(record),
        None,
        _now(),
        json.dumps(list(exp.saliency.shape)),
        _jpeg(r.overlay),
        encode_map(exp.saliency),
    )


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
CREATE TABLE IF NOT EXISTS small_maps (
    model_key TEXT NOT NULL, image_hash TEXT NOT NULL, method TEXT NOT NULL, params_key TEXT NOT NULL,
    side INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (model_key, image_hash, method, params_key, side));
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
            raise ValueError(
                f"Cannot create the folder {self.path.parent} for the gallery's results: "
                f"{err.strerror or err}. Set SALIENCY_GALLERY_DB to a writable path."
            ) from None
        try:
            self._db().executescript(_SCHEMA)  # each statement commits on its own
        except sqlite3.Error as err:
            raise ValueError(
                f"Cannot use {self.path} for the gallery's results ({err}). Set "
                "SALIENCY_GALLERY_DB to a writable SQLite file."
            ) from None

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
                db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")  # a crash may lose the last image, never corrupt
            except sqlite3.Error as err:
                raise ValueError(
                    f"Cannot open the gallery's results {self.path} ({err}). Set "
                    "SALIENCY_GALLERY_DB to a writable SQLite file."
                ) from None
            self._local.db = db
        return db

    class _Tx:
        def __init__(self, store: ResultStore, write: bool):
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
                    raise ValueError(
                        f"The gallery's results {self.store.path} reported an error ({err}); "
                        "nothing was written."
                    ) from None
            return False

    def _write(self) -> _Tx:
        return ResultStore._Tx(self, True)

    def _read(self) -> _Tx:
        return ResultStore._Tx(self, False)

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def version(self) -> tuple:
        """Changes whenever anything was written (for caches of ``table``)."""
        with self._read() as db:
            return tuple(
                db.execute(
                    "SELECT (SELECT count(*) FROM files), (SELECT count(*) FROM predictions), "
                    "(SELECT count(*) FROM maps), (SELECT count(*) FROM selections)"
                ).fetchone()
            )

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
            return {
                key: (h, failed)
                for key, h, failed in db.execute(
                    "SELECT f.file_key, f.image_hash, f.failed FROM temp.wanted w JOIN files f ON "
                    "f.file_key = w.value"
                )
            }

    def sizes(self, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        """file key -> (width, height) of the decoded image, for the files read so far."""
        with self._read() as db:
            self._wanted(db, keys)
            return {
                key: (int(w), int(h))
                for key, w, h in db.execute(
                    "SELECT f.file_key, f.width, f.height FROM temp.wanted w JOIN files f "
                    "ON f.file_key = w.value WHERE f.width IS NOT NULL AND f.height IS NOT NULL"
                )
            }

    def predictions(
        self, mkey: str, hashes: Sequence[str], full: bool = True
    ) -> dict[str, tuple[int, float, list]]:
        """image hash -> (predicted index, its probability, top 5): [(index, label, probability)],
        or with ``full=False`` only the five indices (faster for thousands of images)."""
        with self._read() as db:
            self._wanted(db, hashes)
            if not full:
                return {
                    h: (int(predicted), float(confidence), [int(i) for i in top5.split()])
                    for h, predicted, confidence, top5 in db.execute(
                        "SELECT p.image_hash, p.predicted, p.confidence, p.top5_index FROM temp.wanted w "
                        "JOIN predictions p ON p.model_key = ? AND p.image_hash = w.value",
                        (mkey,),
                    )
                }
            return {
                h: (int(predicted), float(confidence), [tuple(p) for p in json.loads(top5)])
                for h, predicted, confidence, top5 in db.execute(
                    "SELECT p.image_hash, p.predicted, p.confidence, p.top5 FROM temp.wanted w JOIN "
                    "predictions p ON p.model_key = ? AND p.image_hash = w.value",
                    (mkey,),
                )
            }

    def mapped(self, mkey: str, method: str, pkey: str, hashes: Sequence[str]) -> dict[str, str | None]:
        """image hash -> None (map stored) or the error stored, for the maps of the predicted class."""
        with self._read() as db:
            self._wanted(db, hashes)
            return dict(
                db.execute(
                    "SELECT m.image_hash, m.error FROM temp.wanted w JOIN predictions p ON p.model_key = ? "
                    "AND p.image_hash = w.value JOIN maps m ON m.model_key = p.model_key AND m.method = ? "
                    "AND m.params_key = ? AND m.image_hash = p.image_hash AND m.target = p.predicted",
                    (mkey, method, pkey),
                )
            )

    def thumbs(
        self, mkey: str, hashes: Sequence[str], method: str | None = None, pkey: str | None = None
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
                    "SELECT m.image_hash, m.overlay FROM maps m JOIN predictions p ON p.model_key = "
                    "m.model_key AND p.image_hash = m.image_hash AND p.predicted = m.target WHERE "
                    "m.model_key = ? AND m.method = ? AND m.params_key = ? AND m.overlay IS NOT NULL AND "
                    f"m.image_hash IN ({marks})",
                    [mkey, method, pkey, *hashes],
                ):
                    out[h] = bytes(jpeg)
            rest = [h for h in hashes if h not in out]
            if rest:
                marks = ",".join("?" * len(rest))
                for h, jpeg in db.execute(
                    f"SELECT image_hash, thumb FROM predictions WHERE model_key = ? AND "
                    f"image_hash IN ({marks})",
                    [mkey, *rest],
                ):
                    if jpeg is not None:
                        out[h] = bytes(jpeg)
        return out

    def stored_map(
        self, mkey: str, h: str, method: str, pkey: str, target: int
    ) -> tuple[dict, np.ndarray | None, str | None] | None:
        """(record, saliency or None, error) of one stored map, or None."""
        with self._read() as db:
            row = db.execute(
                "SELECT record, error, shape, saliency FROM maps WHERE model_key = ? AND image_hash = ? "
                "AND method = ? AND params_key = ? AND target = ?",
                (mkey, h, method, pkey, int(target)),
            ).fetchone()
        if row is None:
            return None
        record, error, shape, blob = row
        if error is not None:
            return json.loads(record), None, error
        try:
            return json.loads(record), decode_map(bytes(blob), json.loads(shape)), None
        except (ValueError, InflateError, TypeError) as err:
            return (
                json.loads(record),
                None,
                f"the stored map is damaged ({err}); run the set again to recompute it",
            )

    def small_maps(
        self, mkey: str, method: str, pkey: str, side: int, hashes: Sequence[str]
    ) -> dict[str, bytes]:
        """image hash -> the stored (side x side) float32 map (little-endian bytes) kept for grouping."""
        with self._read() as db:
            self._wanted(db, hashes)
            return {
                h: bytes(data)
                for h, data in db.execute(
                    "SELECT s.image_hash, s.data FROM temp.wanted w JOIN small_maps s ON "
                    "s.image_hash = w.value AND s.model_key = ? AND s.method = ? AND s.params_key = ? "
                    "AND s.side = ?",
                    (mkey, method, pkey, int(side)),
                )
            }

    def full_maps(self, mkey: str, method: str, pkey: str, hashes: Sequence[str]) -> list[tuple]:
        """[(image hash, record JSON, shape JSON, encoded map)] of the stored maps of the predicted
        class (errors left out), for ``hashes``."""
        with self._read() as db:
            self._wanted(db, hashes)
            return db.execute(
                "SELECT m.image_hash, m.record, m.shape, m.saliency FROM temp.wanted w JOIN predictions p ON "
                "p.model_key = ? AND p.image_hash = w.value JOIN maps m ON m.model_key = p.model_key AND "
                "m.image_hash = p.image_hash AND m.method = ? AND m.params_key = ? AND "
                "m.target = p.predicted AND m.error IS NULL",
                (mkey, method, pkey),
            ).fetchall()

    def put_small_maps(self, rows: Sequence[tuple[str, str, str, str, int, bytes]]) -> None:
        """Keep (model key, image hash, method, params key, side, float32 bytes) maps for grouping."""
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO small_maps VALUES (?, ?, ?, ?, ?, ?)", rows)

    # ---- writing -------------------------------------------------------------------------------
    def put_failure(self, file_key: str, reason: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO files (file_key, image_hash, failed) VALUES (?, NULL, ?)",
                (file_key, cut(reason, 1000)),
            )

    def put_result(
        self, mkey: str, file_key: str, result, pkeys: dict[str, str], render: RenderOptions | None = None
    ) -> None:
        """One image's prediction and maps (a ``pipeline.ImageResult``), in one transaction."""
        render = render or RenderOptions()
        predicted, _, confidence = result.prediction[0]
        rows = [
            _map_row(mkey, result.image_hash, method, pkeys[method], exp, render)
            for method, exp in result.maps.items()
        ]
        for method, message in [
            *result.errors.items(),
            *((m, f"unexpected {c['type']}: {c['message']}") for m, c in result.crashes.items()),
        ]:
            rows.append(
                (
                    mkey,
                    result.image_hash,
                    method,
                    pkeys[method],
                    int(predicted),
                    json.dumps({"method": method}),
                    cut(message, 1000),
                    _now(),
                    None,
                    None,
                    None,
                )
            )
        thumb = _jpeg(result.crop) if result.crop is not None else None
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, NULL, ?, ?)",
                (file_key, result.image_hash, int(result.image_size[0]), int(result.image_size[1])),
            )
            db.execute(
                "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    mkey,
                    result.image_hash,
                    int(predicted),
                    float(confidence),
                    json_text([[int(i), str(name), float(p)] for i, name, p in result.prediction]),
                    " ".join(str(int(i)) for i, _, _ in result.prediction),
                    _now(),
                    thumb,
                ),
            )
            db.executemany("INSERT OR REPLACE INTO maps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    # ---- selections sent to review ---------------------------------------------------------------
    def save_selection(
        self,
        name: str,
        created_by: str,
        mkey: str,
        source: str,
        description: str,
        methods: dict,
        items: Sequence[tuple[str, str, Sequence[int], str, bytes]],
    ) -> str:
        """Keep ``items`` ((name, label, its class indices, image hash, file bytes)) as a
        selection; returns its id (the same items, model and methods give the same id)."""
        if not items:
            raise ValueError("No images to send: the filters leave none.")
        if len(items) > MAX_REVIEW_ITEMS:
            raise ValueError(
                f"{len(items):,} images are too many for one review batch; the limit is "
                f"{MAX_REVIEW_ITEMS:,}. Narrow the filters (e.g. mistakes only, one class)."
            )
        digest = hashlib.sha256(
            json.dumps(
                [mkey, methods, [(n, lab, h) for n, lab, _, h, _ in items]], sort_keys=True, default=str
            ).encode()
        ).hexdigest()[:16]
        with self._write() as db:
            if db.execute("SELECT 1 FROM selections WHERE id = ?", (digest,)).fetchone() is None:
                db.execute(
                    "INSERT INTO selections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        digest,
                        cut(name, 200),
                        _now(),
                        cut(created_by, 200),
                        mkey,
                        cut(source, 500),
                        cut(description, 1000),
                        json.dumps(methods, default=str),
                        len(items),
                    ),
                )
                db.executemany(
                    "INSERT INTO selection_items VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (digest, i, n, lab, json.dumps([int(c) for c in classes]), h, data)
                        for i, (n, lab, classes, h, data) in enumerate(items)
                    ],
                )
        return digest

    def selection(self, selection_id: str) -> dict | None:
        with self._read() as db:
            row = db.execute(
                "SELECT id, name, created_at, created_by, model_key, source, description, methods, "
                "items FROM selections WHERE id = ?",
                (selection_id,),
            ).fetchone()
        if row is None:
            return None
        keys = (
            "id",
            "name",
            "created_at",
            "created_by",
            "model_key",
            "source",
            "description",
            "methods",
            "items",
        )
        out = dict(zip(keys, row))
        out["methods"] = json.loads(out["methods"])
        return out

    def selection_items(self, selection_id: str) -> list[dict]:
        """[{name, label, classes, hash, data}] of a selection, in the order sent."""
        with self._read() as db:
            rows = db.execute(
                "SELECT name, label, classes, image_hash, data FROM selection_items "
                "WHERE selection_id = ? ORDER BY position",
                (selection_id,),
            ).fetchall()
        return [
            {"name": n, "label": lab, "classes": tuple(json.loads(c)), "hash": h, "data": bytes(d)}
            for n, lab, c, h, d in rows
        ]
