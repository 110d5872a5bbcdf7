"""Replay: read a report's replay block, find its model by fingerprint, recompute and compare every map."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from ..engine.estimate import check_work, work_passes
from ..engine.images import load_image
from ..engine.methods import METHODS
from ..engine.untrusted import InflateError, cut, inflate, quote
from .content import MAX_MAP_SIDE, MAX_REPORT_BYTES, MAX_THREADS, REPLAY_ID, SCHEMA, as_float32, map_summary
from .qualification import check as qualification_check

# ---- replay ---------------------------------------------------------------------------------------


class _ReplayFinder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=False)
        self.inside, self.chunks, self.found = False, [], False

    def handle_starttag(self, tag, attrs):
        if tag == "script" and dict(attrs).get("id") == REPLAY_ID:
            self.inside, self.found = True, True

    def handle_endtag(self, tag):
        if tag == "script":
            self.inside = False

    def handle_data(self, data):
        if self.inside:
            self.chunks.append(data)


def read_replay(source: str | os.PathLike) -> dict:
    """The replay block of a report: an HTML file (or its text), or a JSON file.

    Raises:
        ValueError: the file is missing or holds no readable replay block.

    Example:
        >>> read_replay("report.html")["schema"]
        'saliency-lens-report/1'
    """
    text = source if isinstance(source, str) else ""
    if not text.lstrip().startswith(("<", "{")):  # a file name, not the document itself
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"{path}: no such file.")
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_REPORT_BYTES + 1)
            if len(data) > MAX_REPORT_BYTES:
                raise ValueError(
                    f"{path}: larger than {MAX_REPORT_BYTES >> 20} MiB, more than a report "
                    "made here holds; it was not read."
                )
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: cannot read it as a text file ({cut(err, 160)}).") from None
        name = str(path)
    else:
        name = "the report"
    stripped = text.lstrip()
    if stripped.startswith("{"):
        raw = stripped
    else:
        finder = _ReplayFinder()
        finder.feed(text)
        if not finder.found:
            raise ValueError(
                f'{name}: no replay data found (expected a <script id="{REPLAY_ID}"> block, '
                "as written by saliency_core's report). Was this file made by another tool?"
            )
        raw = "".join(finder.chunks)
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{name}: the replay data is damaged (not valid JSON: {err.msg} at line {err.lineno})."
        ) from None
    except (ValueError, RecursionError) as err:  # nesting too deep, a 5000-digit number
        raise ValueError(f"{name}: the replay data is damaged ({cut(err, 120)}).") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        got = record.get("schema") if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"{name}: the replay data has format {quote(got)}; this version reads {SCHEMA!r}.")
    return record


@dataclass
class ReplayResult:
    """One map's replay: ``status`` is "match" (same float32 bytes, or within ``tolerance``),
    "mismatch" or "error"; ``max_abs_diff`` is None when the report does not store the map."""

    image: str
    method: str
    status: str
    max_abs_diff: float | None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "match"

    def line(self) -> str:
        diff = "max abs difference " + (
            "unknown" if self.max_abs_diff is None else f"{self.max_abs_diff:.3g}"
        )
        return f"{self.image}  {self.method}  {self.status}  {diff}" + (
            f"  ({self.detail})" if self.detail else ""
        )


def recorded_fingerprint(record: dict) -> str:
    """The sha256 of the weights a report was made with, checked to be one.

    Raises:
        ValueError: the report records no fingerprint, or something else in its place.
    """
    model = record.get("model")
    want = model.get("fingerprint") if isinstance(model, dict) else None
    if not (isinstance(want, str) and len(want) == 64 and all(c in "0123456789abcdef" for c in want)):
        raise ValueError(
            "The report does not record the fingerprint (sha256) of its model's weights, so "
            "no model can be matched to it; nothing was replayed."
        )
    return want


def find_replay_model(record: dict, models_dir: str | os.PathLike | None = None, device=None):
    """The model a report was made with, found by the fingerprint it records: the demo, or a model
    (card or model file) in ``models_dir`` (default ``SALIENCY_MODELS_DIR``, else ``./models``).
    A model path written in the report is never used: a crafted report could name any file.

    Raises:
        ValueError: no model there has the recorded fingerprint, or none of those that do loads.
    """
    from ..engine.cards import CARD_SUFFIXES, find_models, read_card
    from ..engine.models import demo_fingerprint, demo_weights, file_sha256, load_model

    want = recorded_fingerprint(record)
    if demo_fingerprint(str(demo_weights())) == want:
        return load_model("demo", device=device)
    folder = Path(models_dir if models_dir is not None else os.environ.get("SALIENCY_MODELS_DIR", "models"))
    candidates = []
    for source, _ in find_models(folder):
        path = Path(source)
        try:
            weights = read_card(path).file if path.suffix.lower() in CARD_SUFFIXES else path
            if file_sha256(weights) == want:
                candidates.append(source)
        except (ValueError, OSError):
            continue  # an unreadable card is not the one
    card = (record.get("model") or {}).get("card")
    digest = (
        card.get("card", {}).get("digest")
        if isinstance(card, dict) and isinstance(card.get("card"), dict)
        else None
    )
    loaded, errors = [], []
    for source in candidates:
        try:
            model = load_model(source, device=device)
        except ValueError as err:
            errors.append(str(err))
            continue
        if digest is None or model.card.get("digest") == digest:
            return model  # the same weights with the same card (preprocessing, labels)
        loaded.append(model)
    if loaded:
        return loaded[0]
    if errors:
        raise ValueError(f"The model with this report's fingerprint cannot be loaded: {errors[0]}")
    raise ValueError(
        f"No model with this report's fingerprint ({want[:12]}…) was found: it is not the demo "
        f"and not in the models folder {folder}. Put the model there or give it with --model PATH "
        "(its fingerprint must match); a model path written in the report is never used."
    )


def replay(
    record: dict,
    model=None,
    *,
    tolerance: float = 0.0,
    progress: Callable[[ReplayResult], None] | None = None,
    models_dir: str | os.PathLike | None = None,
) -> list[ReplayResult]:
    """Recompute every map of a report's replay block and compare it with the recorded one.

    Args:
        record: ``read_replay(...)``.
        model: a ``Classifier``; None finds the model by the recorded fingerprint
            (``find_replay_model``: the demo or the models folder, never a path in the report).
        tolerance: 0 = the float32 bytes must be identical; > 0 = a map also matches when its
            largest difference is at most ``tolerance`` x the recorded map's largest |value|
            (needs the stored map).
        progress: called with each result as it is found.
        models_dir: where to look for the model (default ``SALIENCY_MODELS_DIR`` or ``./models``).
    Returns:
        One ``ReplayResult`` per recorded map, in report order; a damaged item is an "error" with
        its reason, and the others go on.
    Raises:
        ValueError: no model with the recorded fingerprint, a model whose fingerprint differs from
            the recorded one, or a recorded thread count out of range.

    Example:
        >>> all(r.ok for r in replay(read_replay("report.html")))
        True
    """
    import torch

    model, threads, images = _replay_inputs(record, model, models_dir)
    environment = record.get("environment")
    made_on = _device_type(environment.get("device") if isinstance(environment, dict) else None)
    _check_replay_work(images, twice=made_on != model.device.type)
    before = torch.get_num_threads()
    results: list[ReplayResult] = []
    if "qualification" in record:  # the appended scorecard must be this model's own
        status, words = qualification_check(record["qualification"], model.fingerprint)
        results.append(ReplayResult("(qualification appendix)", "record", status, None, words))
        if progress:
            progress(results[-1])
    try:
        if threads:
            torch.set_num_threads(threads)  # reductions are ordered by thread count
        for index, item in enumerate(images):
            for result in _replay_image(model, index, item, tolerance, made_on):
                results.append(result)
                if progress:
                    progress(result)
    finally:
        torch.set_num_threads(before)
    return results


def _replay_inputs(record: dict, model, models_dir) -> tuple:
    """(model, thread count or None, images) of a replay, each checked; ValueError otherwise."""
    want = recorded_fingerprint(record)
    if model is None:
        model = find_replay_model(record, models_dir)
    if model.fingerprint != want:
        raise ValueError(
            f"The model given ({cut(model.name)}) is not the one this report was made with: its "
            f"weights' sha256 is {model.fingerprint[:12]}…, the report's {want[:12]}…. Nothing "
            "was replayed."
        )
    environment = record.get("environment")
    threads = environment.get("threads") if isinstance(environment, dict) else None
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS
    ):
        raise ValueError(
            f"The report's CPU thread count must be a whole number from 1 to {MAX_THREADS}; "
            f"got {quote(threads)}. Nothing was replayed."
        )
    images = record.get("images", [])
    if not isinstance(images, list):
        raise ValueError(
            f"The report's list of images is damaged (got {quote(images)}); nothing was replayed."
        )
    return model, threads, images


def _replay_image(model, index: int, item, tolerance: float, made_on: str):
    """The ``ReplayResult`` of each recorded map of one image (an "error" for a damaged one)."""
    if not isinstance(item, dict) or not isinstance(item.get("maps", []), list):
        yield ReplayResult(f"image {index + 1}", "?", "error", None, "this image's record is damaged")
        return
    name = cut(item.get("name", "?"))
    maps = [m if isinstance(m, dict) else {} for m in item.get("maps", [])]
    try:
        payload = item["input"]
        data = base64.b64decode(payload["base64"], validate=True)
        if hashlib.sha256(data).hexdigest() != payload.get("sha256"):
            raise ValueError("the embedded image does not match its recorded sha256")
        picture = load_image(data, name=name)
    except (KeyError, TypeError, ValueError) as err:
        for m in maps:
            yield ReplayResult(
                name, cut(m.get("method", "?")), "error", None, f"image unusable: {cut(err, 200)}"
            )
        return
    for m in maps:
        method = cut(m.get("method", "?"))
        try:
            yield _replay_map(model, name, payload, picture, m, tolerance, made_on)
        except (KeyError, TypeError, ValueError, OverflowError, RuntimeError) as err:
            yield ReplayResult(name, method, "error", None, cut(" ".join(str(err).split()), 300))


def _replay_map(model, name: str, payload: dict, picture, m: dict, tolerance: float, made_on: str):
    """One recorded map recomputed and compared; on another kind of device, also with another seed."""
    method = cut(m.get("method", "?"))
    params = m.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError(f"the parameters are not a mapping ({quote(params)})")
    params = _as_recorded(method, params)
    target = m.get("target")
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < len(model.labels):
        raise ValueError(
            f"the class index must be a whole number from 0 to {len(model.labels) - 1}; got {quote(target)}"
        )
    if payload.get("kind") == "crop" and picture.size != (model.input_size, model.input_size):
        raise ValueError(
            f"the stored crop is {picture.size[0]}x{picture.size[1]} but the "
            f"model takes {model.input_size}x{model.input_size}"
        )
    saliency = _recompute(model, payload, picture, method, target, params)
    result = _compare(name, method, saliency, m.get("saliency") or {}, tolerance)
    replay_on = model.device.type
    next_seed = partial(
        _recompute, model, payload, picture, method, target, {**params, "seed": _next_seed(params)}
    )
    if not result.ok:  # made under an execution plan: its stated tolerance
        result = _within_plan(result, saliency, m.get("saliency") or {}, m.get("diagnostics"), next_seed)
    if not result.ok and made_on != replay_on:
        result = _across_devices(result, saliency, m.get("saliency") or {}, made_on, replay_on, next_seed)
    return result


# Replay on another kind of device (a GPU-made report on a CPU): float arithmetic differs, the
# random draws do not (they are made on the CPU). Single-pass methods run in fp32 on both; a
# ReLU6 gate within rounding of its threshold can flip, which moves a map by up to about 1 %
# (float32 vs float64 on the CPU: 6.5e-6 on chelsea.png, 1 % on camera.png), so they match within
# SINGLE_PASS_DEVICE_TOLERANCE (relative L2 error). Averaging methods may use TF32 on a GPU: they
# match when the map moved less than a tenth of what changing the seed moves it (the rule in
# saliency_core/engine/_fast.py), measured here by recomputing with the next seed.
SINGLE_PASS_DEVICE_TOLERANCE = 2e-2
AVERAGING_DEVICE_SHARE = 0.1


def _device_type(recorded) -> str:
    """'cuda' or 'cpu' from a recorded device ('cuda:0 (NVIDIA H200)', 'cpu', None = cpu)."""
    return str(recorded or "cpu").split(":", 1)[0].split(" ", 1)[0].strip().lower() or "cpu"


def _recompute(model, payload: dict, picture, method: str, target: int, params: dict) -> np.ndarray:
    import torch
    from torchvision.transforms.functional import to_tensor

    from ..engine.explain import attribute, explain, reduce_channels

    if payload.get("kind") == "crop":
        x = to_tensor(picture).unsqueeze(0).to(model.device)
        attribution, _, _ = attribute(model, x, torch.tensor([target], device=x.device), method, **params)
        return reduce_channels(attribution, METHODS[method].reduction)[0].float().cpu().numpy()
    return explain(model, picture, method=method, target=target, **params).saliency


def _relative_l2(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _across_devices(
    result: ReplayResult,
    saliency: np.ndarray,
    recorded: dict,
    made_on: str,
    replay_on: str,
    other_seed: Callable[[], np.ndarray],
) -> ReplayResult:
    """A mismatch between devices judged by the stated cross-device tolerance (above)."""
    stored = _stored_map(recorded, np.shape(saliency))
    if stored is None:
        return result
    moved = _relative_l2(saliency, stored)
    where = f"made on {made_on}, replayed on {replay_on}"
    if METHODS[result.method].averaging:
        spread = _relative_l2(other_seed(), saliency)
        ok = moved <= AVERAGING_DEVICE_SHARE * spread
        rule = (
            f"{where}: the map moved {moved:.3g} (relative), {moved / max(spread, 1e-30):.3g}x what a change "
            f"of seed moves it (allowed {AVERAGING_DEVICE_SHARE:g}x)"
        )
    else:
        ok = moved <= SINGLE_PASS_DEVICE_TOLERANCE
        rule = f"{where}: the map moved {moved:.3g} (relative), allowed {SINGLE_PASS_DEVICE_TOLERANCE:g}"
    return ReplayResult(result.image, result.method, "match" if ok else "mismatch", result.max_abs_diff, rule)


def _as_recorded(method: str, params: dict) -> dict:
    """Parameters as the recording ran them: maps recorded before ``settled_at`` existed (record
    schema 1) stopped ``until_settled`` on the raw pixels, which is ``settled_at`` 0."""
    if method in METHODS and "settled_at" in METHODS[method].defaults and "settled_at" not in params:
        return {**params, "settled_at": 0}
    return params


def _within_plan(
    result: ReplayResult,
    saliency: np.ndarray,
    recorded: dict,
    diagnostics,
    other_seed: Callable[[], np.ndarray],
) -> ReplayResult:
    """A mismatch of a map made under an execution plan (bfloat16, channels-last; see
    saliency_core/engine/plans.py), judged by the plan's recorded tolerance: the recomputed map
    matches when it moved (1 - Spearman at the recorded detail) at most the recorded movement, or
    less than a tenth of what a change of seed moves it on this image (measured by recomputing
    with the next seed). A map made in float32 gets no such tolerance."""
    from ..engine.plans import RULE_SHARE, movement, replay_tolerance

    tolerance = replay_tolerance(diagnostics)
    stored = _stored_map(recorded, np.shape(saliency)) if tolerance else None
    if stored is None:
        return result
    sigma, allowed = tolerance["detail_px"], tolerance["max_movement"]
    moved = movement(saliency, stored, sigma)
    plan = cut(str(diagnostics["plan"].get("plan")), 40)  # read from the file: shown cut, as text
    if moved <= allowed:
        rule = (
            f"made under plan {plan!r}: moved {moved:.3g} at {sigma:g} px, recorded tolerance {allowed:.3g}"
        )
        return ReplayResult(result.image, result.method, "match", result.max_abs_diff, rule)
    spread = movement(other_seed(), saliency, sigma)
    ok = moved < RULE_SHARE * spread
    rule = (
        f"made under plan {plan!r}: moved {moved:.3g} at {sigma:g} px, {moved / max(spread, 1e-30):.3g}x "
        f"what a change of seed moves it (allowed under {RULE_SHARE:g}x)"
    )
    return ReplayResult(result.image, result.method, "match" if ok else "mismatch", result.max_abs_diff, rule)


def _check_replay_work(images: list, twice: bool) -> int:
    """Estimate every recorded map's network passes before any is recomputed and refuse past the
    operator's limit (``estimate.check_work``). ``twice``: replayed on another kind of device, an
    averaging map may be recomputed with the next seed too."""
    planned = [
        (m.get("method"), m.get("params"))
        for item in images
        if isinstance(item, dict) and isinstance(item.get("maps"), list)
        for m in item["maps"]
        if isinstance(m, dict)
    ]
    passes = work_passes(planned)
    if twice:
        passes += work_passes(
            (m, p) for m, p in planned if isinstance(m, str) and m in METHODS and METHODS[m].averaging
        )
    return check_work(passes, f"This report's replay data ({len(planned)} maps)")


def _next_seed(params: dict) -> int:
    seed = params.get("seed", 0)
    return (seed if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**62 else 0) + 1


def _stored_map(recorded: dict, shape) -> np.ndarray | None:
    """The float32 map stored in a replay record, inflated to at most the bytes of ``shape``
    (the map just recomputed, never a size read from the report); None when absent, unreadable
    or of another size."""
    if not recorded.get("data"):
        return None
    size = int(np.prod(shape)) * 4
    try:
        data = inflate(base64.b64decode(recorded["data"], validate=True), size)
        if len(data) != size:
            return None
        return np.frombuffer(data, dtype="<f4").reshape(shape)
    except (InflateError, ValueError, TypeError):
        return None


def _recorded_shape(recorded: dict) -> tuple[int, ...] | None:
    """A stored map's (height, width), or None when the record holds something else."""
    shape = recorded.get("shape")
    if not (
        isinstance(shape, list)
        and len(shape) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_MAP_SIDE for n in shape)
    ):
        return None
    return tuple(shape)


def _compare(name: str, method: str, saliency: np.ndarray, recorded: dict, tolerance: float) -> ReplayResult:
    s = as_float32(saliency)
    now = map_summary(s)
    if not isinstance(recorded, dict):
        return ReplayResult(name, method, "error", None, "the recorded map is damaged")
    shape = _recorded_shape(recorded)
    if shape is None:
        return ReplayResult(
            name,
            method,
            "error",
            None,
            f"the recorded map's shape is not two sides of 1 to {MAX_MAP_SIDE} pixels "
            f"({quote(recorded.get('shape'))})",
        )
    if shape != s.shape:
        return ReplayResult(name, method, "mismatch", None, f"shape {tuple(s.shape)} vs recorded {shape}")
    stored = None
    if recorded.get("data"):
        size = s.size * 4  # float32: the recorded shape, checked above, bounds the inflated bytes
        try:
            if not isinstance(recorded["data"], str) or len(recorded["data"]) > 2 * size + 1024:
                raise InflateError("it is not compressed data of a map this size")
            raw = inflate(base64.b64decode(recorded["data"], validate=True), size)
            if len(raw) != size:
                raise InflateError(f"it holds {len(raw):,} bytes, not {size:,}")
            stored = np.frombuffer(raw, dtype="<f4").reshape(s.shape)
        except (InflateError, ValueError) as err:
            return ReplayResult(
                name,
                method,
                "error",
                None,
                f"the map stored in the report is not a float32 map of {shape[0]} x {shape[1]} "
                f"({err}); it was not used",
            )
    diff = (
        float(np.abs(s.astype(np.float64) - stored.astype(np.float64)).max()) if stored is not None else None
    )
    if now["sha256"] == recorded.get("sha256"):
        return ReplayResult(name, method, "match", 0.0 if diff is None else diff)
    if diff is not None and tolerance > 0:
        peak = float(np.abs(stored).max()) if stored.size else 0.0
        if diff <= tolerance * peak:
            return ReplayResult(name, method, "match", diff, f"within tolerance {tolerance:g} x max|map|")
    detail = (
        ""
        if stored is not None
        else (f"map not stored in the report; maximum now {now['max']:.6g}, recorded {recorded.get('max')}")
    )
    return ReplayResult(name, method, "mismatch", diff, detail)
