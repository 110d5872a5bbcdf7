"""Right answer, wrong reason: where each stored map sits relative to the annotated part.

With annotations for a labelled set (any format Validate reads: CSV boxes, Pascal VOC XML, COCO
JSON, mask PNGs, a folder or a ZIP of these), matched to the set's images by file name stem,
each image and method gets:

- ``share_inside``: the share of the map's relevance inside the annotated region (relevance
  mass, ``evaluation.localisation.relevance_mass``: |map| for unsigned methods, the positive
  part for signed ones);
- ``peak_inside``: whether the map's maximum lies inside the region (the pointing game with no
  tolerance, ``localisation.pointing_game``; ties shared).

An image *looked at the part* when ``share_inside >= threshold`` (``THRESHOLD`` by default,
adjustable), else it *looked elsewhere*. The two findings a QA review asks for:

- "right answer, looked elsewhere": predicted correctly with most relevance off the part;
- "wrong answer, looked at the part": a mistake although the map sits on the part.

Nothing is computed here but the two numbers: the maps are read from the ``ResultStore``.

Example:
    >>> annotations, skipped = read_annotations("boxes.csv")
    >>> scores = region_scores(store, model, labelled, annotations, ["gradient"], {})
    >>> rows = with_reasons(table(...), scores, "gradient")
    >>> reason_counts(rows, 0.5)
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from ..engine.methods import METHODS
from ..engine.untrusted import cut
from ..evaluation.annotations import (
    ANNOTATION_SUFFIXES,
    IMAGE_SUFFIXES,
    MAX_ANNOTATION_BYTES,
    MAX_ZIP_MEMBERS,
    Annotation,
    CropGeometry,
    Skipped,
    match,
    read_annotation_file,
)
from ..evaluation.labelled import LabelledSet
from ..evaluation.localisation import pointing_game, relevance_mass
from .store import ResultStore, model_key, params_key

THRESHOLD = 0.5  # share of relevance inside the part at or above which an image "looked at the part"
PEAK_TOLERANCE = 0.0  # pixels: the peak must lie inside the region itself
REASONS = ("all", "right answer, looked elsewhere", "wrong answer, looked at the part")
AT_PART, ELSEWHERE = "looked at the part", "looked elsewhere"


def read_annotations(source: str | os.PathLike) -> tuple[list[Annotation], list[Skipped]]:
    """Every annotation in a file (.csv, .xml, .json, a mask image), a folder of them (searched
    recursively) or a ZIP. Problems come back as ``Skipped``; a missing path raises ValueError."""
    path = Path(source)
    if path.is_dir():
        found, skipped = [], []
        for p in sorted(path.rglob("*")):
            rel = p.relative_to(path).as_posix()
            if (
                not p.is_file()
                or p.is_symlink()
                or any(part.startswith(".") for part in p.relative_to(path).parts)
                or p.suffix.lower() not in ANNOTATION_SUFFIXES + IMAGE_SUFFIXES
            ):
                continue
            got, bad = _read_one(rel, lambda p=p: _read_file(p))
            found += got
            skipped += bad
        return found, skipped
    if not path.is_file():
        raise ValueError(f"{path}: no such annotation file or folder.")
    if path.suffix.lower() == ".zip":
        return _read_zip(path)
    return _read_one(path.name, lambda: _read_file(path))


def _read_file(path: Path) -> bytes:
    if path.stat().st_size > MAX_ANNOTATION_BYTES:
        raise ValueError(f"the file is too large (the limit is {MAX_ANNOTATION_BYTES // 2**20} MiB)")
    return path.read_bytes()


def _read_one(name: str, read) -> tuple[list[Annotation], list[Skipped]]:
    try:
        data = read()
    except (OSError, ValueError) as err:
        return [], [Skipped(name, f"cannot read it ({cut(err, 200)}).")]
    return read_annotation_file(name, data)


def read_annotation_files(files: Sequence[tuple[str, bytes]]) -> tuple[list[Annotation], list[Skipped]]:
    """Every annotation in uploaded files ((name, bytes): .csv, .xml, .json, mask images, ZIPs)."""
    found, skipped = [], []
    for name, data in files:
        if PurePosixPath(name).suffix.lower() == ".zip":
            try:
                got, bad = _read_zip(io.BytesIO(data), name)
            except ValueError as err:
                got, bad = [], [Skipped(name, str(err))]
        elif len(data) > MAX_ANNOTATION_BYTES:
            got, bad = [], [Skipped(name, f"too large (the limit is {MAX_ANNOTATION_BYTES // 2**20} MiB).")]
        else:
            got, bad = read_annotation_file(name, data)
        found += got
        skipped += bad
    return found, skipped


def _read_zip(source, name: str | None = None) -> tuple[list[Annotation], list[Skipped]]:
    name = name or Path(source).name
    try:
        archive = zipfile.ZipFile(source)
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ValueError(f"{name}: not a readable ZIP file ({cut(err, 120)}).") from None
    if len(members) > MAX_ZIP_MEMBERS:
        raise ValueError(f"{name}: the archive holds more than {MAX_ZIP_MEMBERS:,} entries.")
    found, skipped = [], []
    with archive:
        for info in members:
            name = info.filename
            suffix = PurePosixPath(name).suffix.lower()
            if info.is_dir() or suffix not in ANNOTATION_SUFFIXES + IMAGE_SUFFIXES or ".." in name.split("/"):
                continue

            def read(info=info) -> bytes:
                with archive.open(info) as f:  # the real bytes are counted, not the header's size
                    data = f.read(MAX_ANNOTATION_BYTES + 1)
                if len(data) > MAX_ANNOTATION_BYTES:
                    raise ValueError(f"inflates to more than {MAX_ANNOTATION_BYTES // 2**20} MiB")
                return data

            got, bad = _read_one(cut(name, 200), read)
            found += got
            skipped += bad
    return found, skipped


def annotated(
    labelled: LabelledSet, annotations: Sequence[Annotation]
) -> tuple[dict[str, Annotation], list[Skipped]]:
    """Set item name -> its annotation (matched by file name stem), and what did not match."""
    dataset = match([(it.name, it.read) for it in labelled.items], annotations)
    return {item.name: item.annotation for item in dataset.items}, dataset.skipped


def region_scores(
    store: ResultStore,
    model,
    labelled: LabelledSet,
    annotations: dict[str, Annotation],
    methods: Sequence[str],
    params: dict | None,
) -> pd.DataFrame:
    """``share_inside`` and ``peak_inside`` of each stored map of an annotated image.

    Args:
        annotations: item name -> annotation (``annotated``).
    Returns:
        DataFrame with columns ``name``, ``method``, ``share_inside`` (0-1, NaN for a map with
        no relevance), ``peak_inside`` (0-1; the share of tied maxima inside), ``note`` (why an
        image has no score: its region left the crop, no map stored).
    """
    mkey = model_key(model)
    geometry = CropGeometry.of(model)
    items = [it for it in labelled.items if it.name in annotations]
    known = store.files([it.key for it in items])
    sizes = store.sizes([it.key for it in items])
    predicted = store.predictions(mkey, sorted({h for h, f in known.values() if h and not f}), full=False)
    out = []
    for it in items:
        h, failed = known.get(it.key, (None, None))
        if not h or failed or h not in predicted or it.key not in sizes:
            continue
        try:
            region = annotations[it.name].region(sizes[it.key], geometry).mask
        except ValueError as err:
            out += [{"name": it.name, "method": m, "note": cut(err, 200)} for m in methods]
            continue
        for m in methods:
            found = store.stored_map(mkey, h, m, params_key(model, m, params), predicted[h][0])
            if found is None or found[1] is None:
                out.append({"name": it.name, "method": m, "note": "no stored map"})
                continue
            saliency, signed = found[1], METHODS[m].signed
            if saliency.shape != region.shape:
                out.append(
                    {"name": it.name, "method": m, "note": f"map {saliency.shape} is not the crop's size"}
                )
                continue
            out.append(
                {
                    "name": it.name,
                    "method": m,
                    "share_inside": relevance_mass(saliency, region, signed=signed),
                    "peak_inside": pointing_game(saliency, region, tolerance=PEAK_TOLERANCE, signed=signed),
                    "note": "",
                }
            )
    frame = pd.DataFrame(out, columns=["name", "method", "share_inside", "peak_inside", "note"])
    return frame.astype({"share_inside": float, "peak_inside": float})


def with_reasons(rows: pd.DataFrame, scores: pd.DataFrame, method: str) -> pd.DataFrame:
    """``rows`` (``gallery.table``) with ``share_inside`` and ``peak_inside`` of ``method``
    (NaN for images without an annotation or a map)."""
    mine = scores.loc[scores["method"] == method, ["name", "share_inside", "peak_inside"]]
    out = rows.drop(columns=["share_inside", "peak_inside"], errors="ignore")
    return out.merge(mine, on="name", how="left")


def looked(rows: pd.DataFrame, threshold: float = THRESHOLD) -> pd.Series:
    """Per row: ``AT_PART``, ``ELSEWHERE`` or "" (no score)."""
    _check_threshold(threshold)
    share = rows["share_inside"] if "share_inside" in rows else pd.Series(np.nan, index=rows.index)
    return pd.Series(
        np.where(share.isna(), "", np.where(share >= threshold, AT_PART, ELSEWHERE)), index=rows.index
    )


def keep_reason(rows: pd.DataFrame, reason: str, threshold: float = THRESHOLD) -> pd.Series:
    """Boolean mask of the rows that show ``reason`` (one of ``REASONS``)."""
    if reason not in REASONS:
        raise ValueError(f"Expected a reason among {', '.join(REASONS)}; got {reason!r}.")
    if reason == "all":
        return pd.Series(True, index=rows.index)
    where = looked(rows, threshold)
    correct = rows["correct"].fillna(False).astype(bool) & (rows["status"] == "done")
    wrong = ~rows["correct"].fillna(True).astype(bool) & (rows["status"] == "done")
    if reason == REASONS[1]:
        return correct & (where == ELSEWHERE)
    return wrong & (where == AT_PART)


def reason_counts(rows: pd.DataFrame, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Two by two: index ("correct", "wrong") x columns (``AT_PART``, ``ELSEWHERE``), over the
    rows with a result and a score."""
    where = looked(rows, threshold)
    done = (rows["status"] == "done") & (where != "")
    counts = pd.DataFrame(0, index=["correct", "wrong"], columns=[AT_PART, ELSEWHERE])
    for verdict, flag in (("correct", True), ("wrong", False)):
        for column in counts.columns:
            counts.loc[verdict, column] = int((done & (rows["correct"] == flag) & (where == column)).sum())
    counts.index.name = f"share inside >= {threshold:.0%}: looked at the part"
    return counts


def _check_threshold(threshold: float) -> None:
    if not (isinstance(threshold, (int, float)) and 0 <= float(threshold) <= 1):
        raise ValueError(f"The threshold is a share between 0 and 1; got {threshold!r}.")
