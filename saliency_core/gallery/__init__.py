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

The store is ``gallery.store``; runs, the table and exports are here.

Example:
    >>> store = ResultStore("gallery.sqlite")
    >>> labelled = demo_set(model.labels)
    >>> run(model, labelled, ["gradient", "gradcam"], {}, store).computed
    32
    >>> rows = table(store, model, labelled, ["gradient", "gradcam"], {})
    >>> filter_rows(rows, outcome="incorrect", order="confident mistakes first").name.head(3).tolist()
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from PIL import Image

from ..engine.estimate import check_work, work_passes
from ..engine.explain import Explanation, explain, get_method
from ..engine.images import image_hash
from ..engine.methods import METHODS
from ..engine.untrusted import cut
from ..evaluation.annotations import Skipped
from ..evaluation.labelled import LabelledItem, LabelledSet
from ..pipeline import explain_images, method_params
from . import groups, reasons
from .groups import keep_small_maps
from .reasons import THRESHOLD, keep_reason
from .store import (
    BUSY_TIMEOUT,
    MAX_REVIEW_ITEMS,
    THUMB,
    THUMB_QUALITY,
    ResultStore,
    decode_map,
    encode_map,
    gallery_path,
    model_key,
    params_key,
)

__all__ = [
    "BUSY_TIMEOUT",
    "MAX_REVIEW_ITEMS",
    "ORDERS",
    "OTHER_REST",
    "OUTCOMES",
    "PAGE_SIZE",
    "THUMB",
    "THUMB_QUALITY",
    "ResultStore",
    "RunProgress",
    "RunReport",
    "Tile",
    "build_report",
    "cell_labels",
    "class_accuracy",
    "confusion",
    "decode_map",
    "encode_map",
    "explanations",
    "filter_rows",
    "gallery_path",
    "groups",
    "reasons",
    "model_key",
    "page_of",
    "pages",
    "params_key",
    "pending",
    "run",
    "safe_csv",
    "stored_explain_fn",
    "stored_explanation",
    "table",
    "tiles",
    "to_csv",
]


PAGE_SIZE = 48  # tiles per page
OUTCOMES = ("all", "incorrect", "correct")
ORDERS = (
    "name",
    "confident mistakes first",
    "least confident first",
    "most confident first",
    "share inside, lowest first",
    "share inside, highest first",
)


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


def pending(
    store: ResultStore, model, labelled: LabelledSet, methods: Sequence[str], params: dict | None
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
    compute = compute or (
        lambda model, image, method, target, params, progress=None, preview=None: explain(
            model, image, method=method, target=target, progress=progress, preview=preview, **params
        )
    )

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


def stored_explanation(
    store: ResultStore,
    model,
    h: str,
    method: str,
    params: dict | None,
    target: int,
    crop: Image.Image | None = None,
) -> Explanation | None:
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
    return Explanation(
        attribution=np.zeros((0,), np.float32),
        saliency=saliency,
        target=int(record["target"]),
        target_label=str(record["target_label"]),
        method=method,
        params=dict(record["params"]),
        reduction=str(record["reduction"]),
        image=crop,
        prediction=prediction,
        image_hash=h,
        model_fingerprint=str(record["model_fingerprint"]),
        diagnostics=dict(record.get("diagnostics") or {}),
        seconds=float(record.get("seconds", 0)),
        device=str(record.get("device", "cpu")),
    )


def run(
    model,
    labelled: LabelledSet,
    methods: Sequence[str],
    params: dict | None,
    store: ResultStore,
    *,
    progress: Callable[[RunProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    ray_address: str | None = None,
    model_source: str | None = None,
    ray_min_images: int = 200,
    ray_workers: int | None = None,
) -> RunReport:
    """Predict and explain every image of ``labelled`` that has no stored result, and store each.

    Args:
        model: a loaded ``Classifier``.
        labelled: the set (``saliency_core.labelled``).
        methods: registry names; params: method parameters (each method takes its own).
        store: where results are read and written.
        progress: called after each image with a ``RunProgress``; cancel: checked before each
            image, True stops the run (finished images are kept).
        ray_address: run on this Ray cluster (``distributed``) when at least ``ray_min_images``
            images are pending and each is a file on the server; ``model_source`` (what
            ``load_model`` takes, at a path every node sees) is then needed; ``ray_workers``: how many.
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
    _check_cost(methods, params, len(todo))
    report = RunReport(total=len(labelled), stored=stored, failed=failed)
    done = stored + len(failed)
    if progress is not None:
        progress(RunProgress(done, report.total, 0, 0.0))
    if not todo:
        report.seconds = time.perf_counter() - started
        return report
    if ray_address and model_source and len(todo) >= ray_min_images and all(it.path for it in todo):
        results = _ray_results(model_source, todo, methods, params, ray_address, cancel, ray_workers)
    else:
        lazy = [(it.name, _Lazy(it)) for it in todo]
        results = explain_images(
            model, lazy, methods, params, explain_fn=stored_explain_fn(store), cancel=cancel
        )
    for item, result in zip(todo, results):
        if result.failed is not None:
            store.put_failure(item.key, result.failed)
            report.failed.append(Skipped(item.name, _strip_name(result.failed, item.name)))
        elif result.crashed is not None:
            report.errors.append(
                Skipped(
                    item.name, f"unexpected {result.crashed['type']}: {cut(result.crashed['message'], 300)}"
                )
            )
        else:
            store.put_result(mkey, item.key, result, pkeys)
            keep_small_maps(store, mkey, result, pkeys)  # the 32 x 32 maps shortcut groups read
            report.computed += 1
            for m, message in result.errors.items():
                report.errors.append(Skipped(item.name, f"{METHODS[m].label}: {message}"))
        done += 1
        del result
        if progress is not None:
            progress(
                RunProgress(done, report.total, report.computed, time.perf_counter() - started, item.name)
            )
    report.cancelled = done < report.total
    report.seconds = time.perf_counter() - started
    return report


def _check_cost(methods: Sequence[str], params: dict | None, images: int) -> int:
    """The run's network passes, refused past the operator's limit before any is made
    (``estimate.check_work``): a set from a folder can order any amount of work."""
    passes = work_passes([(m, method_params(m, params)) for m in methods], repeat=images)
    return check_work(passes, f"The gallery run ({images} images to compute)")


def _strip_name(text: str, name: str) -> str:
    return text[len(name) + 2 :] if text.startswith(name + ": ") else text


def _ray_results(
    model_source: str,
    todo: Sequence[LabelledItem],
    methods,
    params,
    address: str,
    cancel: Callable[[], bool] | None,
    workers: int | None = None,
):
    """Pipeline results of ``todo`` computed by Ray workers (``distributed``), in order."""
    import pickle

    from .. import distributed

    rows = [{"index": i, "path": it.path, "name": it.name} for i, it in enumerate(todo)]
    with distributed.connected(address) as ray:
        actors, cpus, gpus = distributed.worker_pool(ray, workers, 1, None)
        constructor = {
            "model_source": model_source,
            "methods": list(methods),
            "options": {"params": params or {}, "target": None, "render": None},
            "threads": cpus,
            "gpus": gpus,
        }
        for block in distributed.stream(
            rows,
            distributed.ExplainWorker,
            constructor,
            workers=actors,
            cpus=cpus,
            gpus=gpus,
            batch_size=distributed.BATCH_SIZE,
            preserve_order=True,
        ):
            for blob in block["results"]:
                if cancel is not None and cancel():
                    return
                yield pickle.loads(blob)


# ---- the table --------------------------------------------------------------------------------------

COLUMNS = (
    "name",
    "label",
    "status",
    "reason",
    "predicted_label",
    "predicted_class",
    "confidence",
    "correct",
    "in_top5",
    "image_hash",
    "key",
    "duplicate_of",
    "flags",
    "review",
)


def table(
    store: ResultStore, model, labelled: LabelledSet, methods: Sequence[str], params: dict | None
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
        row = {
            "name": it.name,
            "label": it.label,
            "status": "not computed",
            "reason": "",
            "predicted_label": "",
            "predicted_class": "",
            "confidence": np.nan,
            "correct": None,
            "in_top5": None,
            "image_hash": h or "",
            "key": it.key,
            "duplicate_of": "",
            "maps": "",
            "flags": "",
            "checks": "",
            "review": "",
            "complete": False,
        }
        if failed:
            row.update(status="unreadable", reason=_strip_name(failed, it.name), complete=True)
        elif h and h in first_of:
            row.update(
                status="duplicate",
                duplicate_of=first_of[h],
                complete=all(h in mapped[m] for m in methods),
                reason=f"the same picture as {first_of[h]}; counted once",
            )
        elif h and h in predicted:
            index, confidence, top5 = predicted[h]
            label_of = owner.get(index)
            with_map = [m for m in methods if h in mapped[m] and mapped[m][h] is None]
            row.update(
                status="done",
                complete=all(h in mapped[m] for m in methods),
                predicted_class=model.labels[index] if 0 <= index < len(model.labels) else str(index),
                confidence=confidence,
                correct=index in it.classes,
                in_top5=any(i in it.classes for i in top5),
                maps=",".join(with_map),
            )
            row["predicted_label"] = label_of if label_of is not None else f"other: {row['predicted_class']}"
            first_of[h] = it.name
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "maps", "checks", "complete"])
    frame["confidence"] = frame["confidence"].astype(float)
    return frame


def filter_rows(
    rows: pd.DataFrame,
    *,
    true_labels: Sequence[str] = (),
    predicted_labels: Sequence[str] = (),
    outcome: str = "all",
    confidence: tuple[float, float] = (0.0, 1.0),
    flagged: bool | None = None,
    order: str = "name",
    reason: str = "all",
    threshold: float = THRESHOLD,
) -> pd.DataFrame:
    """The rows with a result that pass every filter, in ``order``.

    Args:
        true_labels, predicted_labels: keep these (empty: all).
        outcome: "all", "incorrect" or "correct".
        confidence: (low, high) range of the predicted class's probability, inclusive.
        flagged: True: only rows with flags; False: only rows without; None: all.
        order: one of ``ORDERS``: "confident mistakes first" puts the wrong predictions first,
            surest first; "least confident first" sorts by confidence, lowest first; "share
            inside, ..." sorts by the share of the map inside the annotated part (rows with
            ``share_inside``, ``gallery.reasons.with_reasons``; images without one last).
        reason: one of ``reasons.REASONS``: "right answer, looked elsewhere" keeps correct
            predictions whose share inside the part is below ``threshold``; "wrong answer,
            looked at the part" keeps mistakes whose share is at or above it.
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
    if reason != "all":
        keep &= keep_reason(rows, reason, threshold)
    out = rows[keep]
    if order == "confident mistakes first":
        out = (
            out.assign(_c=out["correct"].astype(bool))
            .sort_values(["_c", "confidence", "name"], ascending=[True, False, True])
            .drop(columns="_c")
        )
    elif order == "least confident first":
        out = out.sort_values(["confidence", "name"], ascending=[True, True])
    elif order == "most confident first":
        out = out.sort_values(["confidence", "name"], ascending=[False, True])
    elif order.startswith("share inside"):
        share = out["share_inside"] if "share_inside" in out else pd.Series(np.nan, index=out.index)
        out = (
            out.assign(_s=share)
            .sort_values(["_s", "name"], ascending=[order.endswith("lowest first"), True], na_position="last")
            .drop(columns="_s")
        )
    else:
        out = out.sort_values("name")
    return out


def page_of(rows: pd.DataFrame, page: int, size: int = PAGE_SIZE) -> pd.DataFrame:
    """Rows of page ``page`` (1-based; clamped to the pages there are)."""
    pages = max(1, -(-len(rows) // size))
    page = min(max(int(page), 1), pages)
    return rows.iloc[(page - 1) * size : page * size]


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


def tiles(
    store: ResultStore, model, rows: pd.DataFrame, method: str | None, params: dict | None
) -> list[Tile]:
    """Tiles for ``rows`` (a page): one query for all their thumbnails."""
    mkey = model_key(model)
    pkey = params_key(model, method, params) if method else None
    jpegs = store.thumbs(mkey, rows["image_hash"].tolist(), method, pkey)
    out = []
    what = f"{METHODS[method].label} overlay" if method else "photo"
    for r in rows.itertuples(index=False):
        verdict = "correct" if r.correct else "mistake"
        caption = f"{r.name}\n\ntrue: {r.label} · predicted: {r.predicted_class} ({r.confidence:.0%} sure)"
        alt = (
            f"{what} of {r.name}; true class {r.label}, the model predicted {r.predicted_class} with "
            f"{r.confidence:.0%} confidence ({verdict})"
        )
        share = getattr(r, "share_inside", np.nan)
        if share == share:  # not NaN: the image is annotated and its map scored
            peak = "inside" if getattr(r, "peak_inside", 0.0) >= 0.5 else "outside"
            where = f"{share:.0%} of the map inside the part · peak {peak}"
            caption += f"\n\n{where}"
            alt += f"; {where}"
        out.append(Tile(r.name, r.image_hash, jpegs.get(r.image_hash), caption, alt, bool(r.correct)))
    return out


def explanations(
    store: ResultStore,
    model,
    image_hash_: str,
    methods: Sequence[str],
    params: dict | None,
    crop: Image.Image | None,
) -> tuple[list, dict[str, Explanation], dict[str, str]]:
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
    total = pd.DataFrame(
        [{"label": "all", "images": int(per["images"].sum()), "correct": int(per["correct"].sum())}]
    )
    per = pd.concat([per, total], ignore_index=True)
    per["accuracy"] = per["correct"] / per["images"].where(per["images"] > 0)
    return per


# ---- exports ----------------------------------------------------------------------------------------

EXPORT_COLUMNS = (
    "name",
    "label",
    "predicted_label",
    "predicted_class",
    "confidence",
    "correct",
    "in_top5",
    "image_hash",
    "flags",
    "checks",
    "review",
)


def safe_csv(frame: pd.DataFrame) -> str:
    """``frame`` as CSV text through ``engine.safe_text.to_csv``: text cells (and column names)
    that a spreadsheet would run as a formula get a leading ``'``; numbers stay numbers."""
    from ..engine.safe_text import to_csv as safe_to_csv

    return safe_to_csv(frame)


def to_csv(rows: pd.DataFrame, model=None) -> str:
    """The rows as CSV (``EXPORT_COLUMNS``, plus the model's fingerprint), through ``safe_csv``."""
    out = rows.loc[:, [c for c in EXPORT_COLUMNS if c in rows.columns]].copy()
    out["confidence"] = out["confidence"].round(6)
    if model is not None:
        out["model_fingerprint"] = model.fingerprint
    return safe_csv(out)


def build_report(
    store: ResultStore,
    model,
    labelled: LabelledSet,
    rows: pd.DataFrame,
    methods: Sequence[str],
    params: dict | None,
    *,
    title: str = "Gallery report",
    model_source: str = "demo",
    progress: Callable[[int, int, str], None] | None = None,
    outline_share: float | None = None,
):
    """A ``saliency_core.report.Report`` of ``rows`` (e.g. the filtered mistakes), built by the
    report builder from the stored maps (none recomputed when all are stored); ``outline_share``
    adds each map's region view (``report.build_report``)."""
    from ..report import build_report as build

    by_name = {it.name: it for it in labelled.items}
    images = [(name, by_name[name].read()) for name in rows["name"] if name in by_name]
    return build(
        model,
        images,
        list(methods),
        params=params,
        model_source=model_source,
        title=title,
        explain_fn=stored_explain_fn(store),
        progress=progress,
        outline_share=outline_share,
    )
