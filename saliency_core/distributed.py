"""Batch work on a Ray cluster: ``validate`` and ``explain`` over many images, many machines.

Ray is an optional extra (``pip install -r requirements-ray.txt``); nothing else in
saliency_core imports this module, and this module imports Ray only when a run starts.

How a run goes: the driver lists the work as small rows (an image's place in the data set
and its name, never its pixels) in a Ray Data dataset; ``map_batches`` hands blocks of rows to
a fixed pool of actors (``ActorPoolStrategy``), each holding its own copy of the model, one per
GPU or a set number per CPU node; each actor reads its images itself and scores them with the
same per-image function as the local run (``validate.score_image``, ``pipeline.explain_image``).
The driver streams the finished blocks (``iter_batches``) and appends them to a results file
in the output folder, flushed and fsync'd block by block, so neither the driver nor a worker
holds the data set, and no finished result is lost when a worker or the driver dies.

Ray restarts an actor that dies and retries its unfinished block. If the whole run stops
(driver killed, cluster lost), ``resume=True`` reads the results file, checks that it was
made with the same model, data and settings, and computes only the images it lacks.

Results equal the local run's: an image's scores depend only on the image, its place in the
data set (seeds) and the settings, never on the worker or batch that computed it. Equal to the
last bit where the workers run the same code and libraries with the same number of torch
threads as the local run (``threads``, default 1; the tests set 1 on both sides).

Example:
    >>> from functools import partial
    >>> from saliency_core.data import pasted_objects
    >>> result = run_validation_ray("demo", partial(pasted_objects, 60), ValidationSettings(["gradient"]),
    ...                             "out/", address="auto", workers=2)
    >>> result.per_image()            # the same table as run_validation(model, pasted_objects(60), ...)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .engine.safe_text import json_text

VALIDATE_LOG = "rows.jsonl"  # validate: one line per finished image
EXPLAIN_LOG = "explained.jsonl"  # explain: one line per image whose files are written
BATCH_SIZE = 8  # images per actor call (and per fsync'd block of the results file)
PER_IMAGE_SETTINGS = (
    "methods",
    "params",
    "tolerance",
    "top_k",
    "faithfulness",
    "step_fraction",
    "deletion_replacement",
    "insertion_replacement",
    "centre_sigma",
    "seed",
    "batch_size",
)


# ---- connecting ------------------------------------------------------------------------------------


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise ValueError(
            "--ray needs Ray, an optional extra: install it with "
            "'.venv/bin/pip install -r requirements-ray.txt'."
        ) from None
    return ray


@contextmanager
def connected(address: str = "auto"):
    """Connect this process to a Ray cluster for the duration of the block.

    Args:
        address: ``"auto"`` (the cluster ``ray start`` started on this machine), ``"host:port"``
            of a cluster's head node (its GCS port, 6379 by default), or ``"local"`` (start a
            private one-machine cluster, stopped at the end).
    Yields:
        the ``ray`` module. A process already connected is left connected.
    Raises:
        ValueError: Ray is not installed, or no cluster answers at ``address``.
    """
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    _check_reachable(address)
    # the workers import this very saliency_core (a zip of the package, sent through the cluster)
    options = {
        "logging_level": logging.WARNING,
        "runtime_env": {"py_modules": [str(Path(__file__).resolve().parent)]},
    }
    try:
        if address == "local":
            ray.init(**options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ValueError(
            f"cannot connect to a Ray cluster at {address!r}: {' '.join(str(err).split())[:300]} "
            "(start one with 'ray start --head', or use --ray local)"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """A quick ValueError for a HOST:PORT nothing listens on (Ray itself retries for minutes)."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--ray takes 'auto', 'local' or HOST:PORT; got {address!r}.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise ValueError(
            f"no Ray cluster answers at {address} ({err.strerror or err}); start one with "
            f"'ray start --head --port {port}' or check the address."
        ) from None


def worker_pool(ray, workers: int | None, threads: int, gpu: bool | None) -> tuple[int, int, float]:
    """(actors, CPUs per actor, GPUs per actor): one actor per GPU where the cluster has GPUs
    (unless ``gpu`` is False), else one per ``threads`` CPUs."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    use_gpu = gpus > 0 if gpu is None else bool(gpu)
    if use_gpu and gpus == 0:
        raise ValueError("GPU workers were asked for, but the Ray cluster has no GPU.")
    if workers is None:
        workers = gpus if use_gpu else max(1, int(resources.get("CPU", 1)) // threads)
    if workers < 1:
        raise ValueError(f"--workers must be 1 or more; got {workers}.")
    return workers, threads, 1.0 if use_gpu else 0.0


def _describe_pool(ray, address: str, actors: int, cpus: int, gpus: float) -> str:
    resources = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return (
        f"Ray cluster at {address}: {nodes} node(s), {resources.get('CPU', 0):g} CPU(s), "
        f"{resources.get('GPU', 0):g} GPU(s); {actors} worker(s) x {cpus} torch thread(s)"
        + (", one GPU each" if gpus else "")
    )


def stream(
    rows: list[dict],
    worker: type,
    constructor: dict,
    *,
    workers: int,
    cpus: int,
    gpus: float,
    batch_size: int,
    preserve_order: bool = False,
) -> Iterator[dict]:
    """Run ``worker`` (a class: ``__init__(**constructor)``, ``__call__(batch) -> batch``) over
    ``rows`` on a fixed pool of ``workers`` actors; yield the output blocks (dicts of numpy
    columns) as they finish, in input order if ``preserve_order``."""
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # the command prints its own progress
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = preserve_order
    batch_size = max(1, min(batch_size, math.ceil(len(rows) / workers)))  # work for every actor
    blocks = max(1, math.ceil(len(rows) / batch_size))
    data = ray.data.from_items(rows, override_num_blocks=blocks)
    mapped = data.map_batches(
        worker,
        fn_constructor_kwargs=constructor,
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus,
        num_gpus=gpus or None,
    )
    yield from mapped.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0)


def _prepare_worker(threads: int, gpus: float):
    """Torch threads and device of an actor; returns the device name."""
    import torch

    torch.set_num_threads(threads)
    return "cuda" if gpus and torch.cuda.is_available() else "cpu"


def _load(model_source: str, device: str):
    from .engine.models import load_model

    return load_model(model_source, device=device)  # the actor's own copy


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ---- the results file ------------------------------------------------------------------------------


class ResultsLog:
    """An append-only JSON-lines file of finished work: a header line saying what run it belongs
    to, then one line per finished image, flushed and fsync'd after every block. Only the
    indexes of the finished images are kept in memory.

    Args:
        path: the file.
        key: what must match for a resumed run to reuse the lines (model, data, settings).
        resume: keep the lines of an earlier run with the same ``key`` (a half-written last line
            is dropped); otherwise the file starts empty.
    Raises:
        ValueError: ``resume`` with a file made by a different run.
    """

    def __init__(self, path: Path, key: dict, resume: bool):
        self.path = Path(path)
        self.key = json.loads(json.dumps(key, default=str))
        self.done: set[int] = set()
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w", encoding="utf-8") as new:
            new.write(json_text({"run": self.key}) + "\n")
            if resume and self.path.exists():
                with open(self.path, encoding="utf-8") as old:
                    self._check(old.readline())
                    for text in old:
                        index = self._index(text)
                        if index is not None and index not in self.done:
                            new.write(text if text.endswith("\n") else text + "\n")
                            self.done.add(index)
            new.flush()
            os.fsync(new.fileno())
        os.replace(temporary, self.path)  # a cut-short last line would spoil the next append

    def _check(self, text: str) -> None:
        try:
            header = json.loads(text)
        except ValueError:
            header = None
        found = header.get("run", {}) if isinstance(header, dict) else {}
        if found != self.key:
            differs = sorted(k for k in set(self.key) | set(found) if found.get(k) != self.key.get(k))
            raise ValueError(
                f"{self.path} holds results of a different run ({', '.join(differs) or 'its header'} "
                "differ); run without --resume to start over, or use another --out folder."
            )

    @staticmethod
    def _index(text: str) -> int | None:
        try:
            value = json.loads(text)
            return int(value["index"])
        except (ValueError, TypeError, KeyError):
            return None  # a line cut short when the run stopped

    def append(self, records: Sequence[dict]) -> None:
        """Write ``records`` (each with an ``index``) and make them durable before returning."""
        with open(self.path, "a", encoding="utf-8") as f:
            for record in records:
                f.write(json_text(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done.update(int(r["index"]) for r in records)

    def records(self) -> list[dict]:
        """Every finished image's line, read back from the file, in data set order."""
        seen: dict[int, dict] = {}
        with open(self.path, encoding="utf-8") as f:
            next(f, None)
            for text in f:
                value = json.loads(text)
                seen.setdefault(int(value["index"]), value)
        return [seen[i] for i in sorted(seen)]


def _names_digest(names: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


# ---- validate --------------------------------------------------------------------------------------


class _ValidateWorker:
    """A Ray actor: the model, the data set's item list (images are read when scored) and the
    run's plan, loaded once; scores blocks of images with ``validate.score_image``."""

    def __init__(self, model_source: str, dataset: Callable, settings, threads: int, gpus: float, run: str):
        import torch

        from .evaluation.validate import plan_run

        device = _prepare_worker(threads, gpus)
        self.model = _load(model_source, device)
        self.items = dataset().items
        self.settings = settings
        self.plan = plan_run(self.model, settings)
        self.run = run
        self.where = _where()
        self.threads = torch.get_num_threads()  # recorded with each image

    def __call__(self, batch: dict) -> dict:
        from .evaluation.validate import score_image

        lines = []
        for index, name in zip(batch["index"], batch["name"]):
            index = int(index)
            item = self.items[index] if index < len(self.items) else None
            if item is None or item.name != name:
                raise ValueError(
                    f"the data set differs on worker {self.where}: image {index} is "
                    f"{item.name if item else 'missing'!r} there but {name!r} on the driver; "
                    "every node must see the same files at the same paths."
                )
            scores = score_image(self.model, item, index, self.settings, self.plan)
            lines.append(
                json_text({**scores.record(), "worker": self.where, "threads": self.threads, "run": self.run})
            )
        return {"index": np.asarray(batch["index"]), "line": np.asarray(lines, dtype=object)}


def run_validation_ray(
    model_source: str,
    dataset: Callable,
    settings,
    out: str | os.PathLike,
    *,
    address: str = "auto",
    workers: int | None = None,
    resume: bool = False,
    threads: int = 1,
    gpu: bool | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int, int, float | None], None] | None = None,
    log: Callable[[str], None] | None = None,
    model=None,
    listing=None,
):
    """``validate.run_validation`` on a Ray cluster, with a results file to resume from.

    Args:
        model_source: what ``load_model`` takes (``"demo"``, or a model file / card at a path
            every node sees); each actor loads its own copy.
        dataset: a function without arguments that returns the ``annotations.Dataset``, e.g.
            ``functools.partial(pasted_objects, 60, seed=0)``; called on the driver and once
            per actor, so images are read by the workers, never shipped. Paths must be the
            same on every node (a shared file system).
        settings: ``ValidationSettings``; thumbnails of the worst images are not kept (``worst``
            is ignored), everything else is as in the local run.
        out: folder for the results file ``rows.jsonl`` (created if missing).
        address: see ``connected``.
        workers: number of model-holding actors; default one per GPU, else one per ``threads``
            CPUs of the cluster.
        resume: reuse the finished images of an earlier run into ``out`` with the same model,
            data and settings; compute only the rest.
        threads: torch threads (and CPUs reserved) per actor.
        gpu: one GPU per actor; default: if the cluster has GPUs.
        batch_size: images per actor call and per fsync'd block of the results file.
        progress: ``progress(done, total, None)`` as blocks finish.
        log: ``log(line)`` for what the run is doing (cluster, resumed images).
        model, listing: the driver's ``Classifier`` and ``Dataset`` if already loaded from
            ``model_source`` and ``dataset`` (saves loading them twice).
    Returns:
        ``ValidationResult`` whose rows, skipped items and curves equal the local run's.
    Raises:
        ValueError: bad settings, no usable method, Ray missing or unreachable, a results file
            of another run with ``resume``, or a data set that differs on a worker.
    """
    from .evaluation.validate import ImageScores, RunTotals, plan_run

    settings.check()
    started = time.perf_counter()
    model, data = _driver_copies(model_source, dataset, model, listing)
    plan = plan_run(model, settings)
    names = [item.name for item in data.items]
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    results = ResultsLog(folder / VALIDATE_LOG, _validation_key(model, data, names, settings), resume)
    todo = [{"index": i, "name": name} for i, name in enumerate(names) if i not in results.done]
    total, done = len(names), len(results.done)
    say = log or (lambda line: None)
    if resume:
        say(
            f"resuming: {done} of {total} image(s) already scored in {results.path}; computing the other "
            f"{len(todo)}"
        )
    if progress:
        progress(done, total, None)
    if todo:
        constructor = {
            "model_source": model_source,
            "dataset": dataset,
            "settings": settings,
            "run": uuid.uuid4().hex[:12],
        }
        pool = _PoolSettings(address, workers, threads, gpu, batch_size)
        _score_on_pool(todo, constructor, pool, say, results, progress, done, total)
    totals = RunTotals(list(data.skipped) + plan.skipped)
    for line in results.records():
        totals.add(ImageScores.from_record(line))
    return totals.result(settings, model, data.description, total, started)


def _score_on_pool(todo, constructor, pool, say, results, progress, done: int, total: int) -> None:
    """Score ``todo`` on the actor pool, appending each block to ``results`` and reporting progress."""
    with _pool_blocks(todo, _ValidateWorker, constructor, pool, say) as blocks:
        for block in blocks:
            results.append([json.loads(line) for line in block["line"]])
            done += len(block["line"])
            if progress:  # no estimate of the time left: blocks come back in bursts
                progress(done, total, None)


def _driver_copies(model_source: str, dataset: Callable, model, listing):
    """The driver's model and data set: those given, else loaded from ``model_source`` and ``dataset``."""
    from .engine.models import load_model

    model = model if model is not None else load_model(model_source)
    data = listing if listing is not None else dataset()
    return model, data


def _validation_key(model, data, names: list[str], settings) -> dict:
    """What identifies a validation run for ``resume``: model, per-image settings and data."""
    record = settings.record()
    return {
        "command": "validate",
        "model": model.fingerprint,
        "settings": {k: record[k] for k in PER_IMAGE_SETTINGS},
        "data": {"description": data.description, "images": len(names), "names_sha256": _names_digest(names)},
    }


@dataclass(frozen=True)
class _PoolSettings:
    """Where and how a run's actors are placed: ``address``, ``workers``, ``threads``, ``gpu``,
    ``batch_size`` as ``run_validation_ray`` takes them."""

    address: str
    workers: int | None
    threads: int
    gpu: bool | None
    batch_size: int


@contextmanager
def _pool_blocks(
    todo: list[dict],
    worker: type,
    constructor: dict,
    pool: _PoolSettings,
    say: Callable[[str], None],
    preserve_order: bool = False,
):
    """Connect to Ray, size and describe the actor pool, and give the blocks ``worker`` returns
    for ``todo`` (workers' ValueErrors in their own words); the connection lasts the ``with``."""
    with connected(pool.address) as ray:
        actors, cpus, gpus = worker_pool(ray, pool.workers, pool.threads, pool.gpu)
        say(_describe_pool(ray, pool.address, actors, cpus, gpus))
        yield _user_errors(
            stream(
                todo,
                worker,
                {**constructor, "threads": cpus, "gpus": gpus},
                workers=actors,
                cpus=cpus,
                gpus=gpus,
                batch_size=pool.batch_size,
                preserve_order=preserve_order,
            )
        )


def _user_errors(blocks: Iterator[dict]) -> Iterator[dict]:
    """Ray's wrapped exceptions -> the ValueError a worker raised, in its own words."""
    try:
        yield from blocks
    except Exception as err:
        cause = err
        while getattr(cause, "cause", None) is not None or getattr(cause, "__cause__", None) is not None:
            cause = getattr(cause, "cause", None) or cause.__cause__
        if isinstance(cause, ValueError):
            raise ValueError(str(cause).splitlines()[-1] if str(cause) else "a worker failed") from None
        raise


# ---- explain ---------------------------------------------------------------------------------------


class ExplainWorker:
    """A Ray actor: the model, loaded once; explains blocks of images with the pipeline's
    ``explain_image`` and returns the results (PNG bytes included, attribution arrays left out)
    for the driver to write."""

    def __init__(self, model_source: str, methods: list[str], options: dict, threads: int, gpus: float):
        from .engine.explain import available_methods

        device = _prepare_worker(threads, gpus)
        self.model = _load(model_source, device)
        self.usable = available_methods(self.model)
        self.methods = methods
        self.options = options

    def __call__(self, batch: dict) -> dict:
        from .pipeline import explain_image

        o = self.options
        results = [
            pickle.dumps(
                explain_image(
                    self.model,
                    path,
                    name,
                    self.methods,
                    o["params"],
                    o["target"],
                    usable=self.usable,
                    render=o["render"],
                ).shipped()
            )
            for path, name in zip(batch["path"], batch["name"])
        ]
        return {"index": np.asarray(batch["index"]), "results": np.asarray(results, dtype=object)}


@dataclass
class ExplainedImage:
    """What the driver did with one image: its file stem (None if it could not be read), maps
    written and failures."""

    index: int
    image: str
    stem: str | None
    written: int
    failed: int


def run_explain_ray(
    model_source: str,
    images: Sequence[tuple[str, str]],
    methods: list[str],
    options,
    out,
    write: Callable[[int, str, list], ExplainedImage],
    replay: Callable[[ExplainedImage], None],
    *,
    key: dict,
    address: str = "auto",
    workers: int | None = None,
    resume: bool = False,
    threads: int = 1,
    gpu: bool | None = None,
    batch_size: int = 4,
    log: Callable[[str], None] | None = None,
) -> list[ExplainedImage]:
    """Explain ``images`` on a Ray cluster; the driver writes each image's files in input order.

    Args:
        model_source: what ``load_model`` takes, at a path every node sees.
        images: (name as given, absolute path) pairs; workers read the paths.
        methods, options: what ``pipeline.explain_image`` takes (options: ``params``, ``target``
            and ``render``, a ``RenderOptions``).
        out: output folder; ``explained.jsonl`` lists the images whose files are written.
        write: ``write(index, name, result) -> ExplainedImage`` writes one image's PNGs and JSON
            and prints its lines, as the local run does.
        replay: called, in input order, for each image an earlier run already wrote (resume),
            so that file stems are given out as in one uninterrupted run.
        key: what identifies the run (model, methods, parameters) for ``resume``.
        address, workers, resume, threads, gpu, batch_size: as for ``run_validation_ray``.
        log: ``log(line)`` for what the run is doing.
    Returns:
        every image's ``ExplainedImage``, those of the earlier run included, in input order.
    """
    results = ResultsLog(
        Path(out) / EXPLAIN_LOG,
        {**key, "images": len(images), "names_sha256": _names_digest([n for n, _ in images])},
        resume,
    )
    earlier = [
        ExplainedImage(**{k: r[k] for k in ("index", "image", "stem", "written", "failed")})
        for r in results.records()
    ]
    say = log or (lambda line: None)
    if resume:
        say(
            f"resuming: {len(earlier)} of {len(images)} image(s) already written ({results.path}); "
            f"explaining the other {len(images) - len(earlier)}"
        )
    ordered = _InOrder(earlier, replay)
    todo = [
        {"index": i, "path": path, "name": name}
        for i, (name, path) in enumerate(images)
        if i not in results.done
    ]
    if todo:
        constructor = {"model_source": model_source, "methods": methods, "options": options}
        pool = _PoolSettings(address, workers, threads, gpu, batch_size)
        with _pool_blocks(todo, ExplainWorker, constructor, pool, say, preserve_order=True) as blocks:
            for block in blocks:
                results.append(_write_block(block, images, write, ordered))
    ordered.replay_until(len(images))
    return ordered.out


class _InOrder:
    """Every image's ``ExplainedImage`` in input order: an earlier run's are replayed before
    the first newly written image that follows them."""

    def __init__(self, earlier: list[ExplainedImage], replay: Callable[[ExplainedImage], None]):
        self.pending = list(earlier)
        self.replay = replay
        self.out: list[ExplainedImage] = []

    def replay_until(self, index: int) -> None:
        while self.pending and self.pending[0].index < index:
            item = self.pending.pop(0)
            self.replay(item)
            self.out.append(item)


def _write_block(block: dict, images, write, ordered: _InOrder) -> list[dict]:
    """Write one block's images (after replaying earlier ones before them); their log records."""
    finished = []
    for index, blob in zip(block["index"], block["results"]):
        index = int(index)
        ordered.replay_until(index)
        item = write(index, images[index][0], pickle.loads(blob))
        ordered.out.append(item)
        finished.append(
            {
                "index": index,
                "image": item.image,
                "stem": item.stem,
                "written": item.written,
                "failed": item.failed,
            }
        )
    return finished
