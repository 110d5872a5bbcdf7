"""Command line: ``python -m saliency_core compare --model-a A --model-b B --images IMAGE... --out DIR``.

Writes ``DIR/comparison.csv`` (one row per image: both predictions, the change, per method the
agreement of the two maps), ``DIR/methods.csv`` (per method: agreement with its interval, beside
model A against itself with another seed) and ``DIR/summary.json`` (everything, with both models'
fingerprints and cards); prints the summary in plain words on stdout. ``--report FILE`` also
writes an HTML report of model B's maps with a comparison section (saliency_core.report).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..engine.devices import CHOICES as DEVICE_CHOICES
from ..engine.images import image_hash
from ..engine.methods import METHODS
from ..engine.models import load_model
from ..engine.safe_text import to_csv
from ..evaluation.compare import CompareSettings, compare_models
from ..evaluation.compare_labels import read_labels
from ..pipeline import dumps
from .common import (
    add_method_options,
    chosen_methods,
    given_params,
    image_files,
    make_folder,
    say,
    say_failures,
    say_unexpected,
    whole_number,
)

DEFAULT_METHODS = "gradient,smoothgrad,gradcam"


def add_compare_command(commands) -> None:
    """The ``compare`` subcommand (hooked into ``cli.build_parser``)."""
    co = commands.add_parser(
        "compare",
        help="what changed between two versions of a model: predictions and maps",
        description="Run model A (the accepted version) and model B (the candidate) on the same images. Per "
        "image: "
        "both top-1 predictions (with --labels: fixed, broken or changed between two wrong classes) "
        "and per method how alike the two maps are (Spearman rank correlation of |map| and overlap of "
        "the strongest 10%% of pixels); per method the mean with a bootstrap interval, beside model A "
        "against itself with another SmoothGrad seed. Writes DIR/comparison.csv, DIR/methods.csv and "
        "DIR/summary.json, and prints the summary. Exit status 1 if the models' classes differ or an "
        "image or map failed.",
    )
    co.add_argument(
        "--model-a",
        required=True,
        metavar="PATH",
        help="the accepted model: 'demo', a model file or a model card",
    )
    co.add_argument(
        "--model-b",
        required=True,
        metavar="PATH",
        help="the candidate model: 'demo', a model file or a model card (same class names as A)",
    )
    co.add_argument(
        "--images",
        nargs="+",
        required=True,
        metavar="IMAGE",
        help="image files, or folders of them (searched recursively)",
    )
    co.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    co.add_argument(
        "--labels",
        metavar="FILE",
        help="CSV with the columns image,label (a class name or index): the true class of each image "
        "(matched by the name given or the file name)",
    )
    co.add_argument(
        "--report",
        metavar="FILE",
        help="also write an HTML report of model B's maps with the comparison as a section",
    )
    co.add_argument(
        "--method",
        action="append",
        metavar="NAME",
        help=f"a method ({', '.join(METHODS)}) or 'all'; repeat or comma-separate for several "
        f"(default {DEFAULT_METHODS})",
    )
    co.add_argument(
        "--most-moved",
        type=whole_number(0),
        default=5,
        metavar="N",
        help="images listed as those whose maps moved most (default 5)",
    )
    co.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default=None,
        help="where to compute: auto (a CUDA GPU when there is one), cpu or cuda "
        "(default: $SALIENCY_DEVICE, else auto)",
    )
    co.add_argument("--traceback", action="store_true", help="print full tracebacks of unexpected errors")
    add_method_options(co)  # --samples, --noise, --seed (the seed baseline uses seed + 1), --steps, ...
    co.set_defaults(run=run_compare)


class _KeepMaps:
    """``explain_fn`` that remembers model B's maps, so the report reuses them instead of
    computing them again."""

    def __init__(self, model):
        self.model_key = (model.fingerprint, model.card.get("digest"))
        self.maps: dict = {}

    def __call__(self, model, image, method, target, params, progress=None, preview=None):
        from ..engine.explain import explain

        key = None
        if (model.fingerprint, model.card.get("digest")) == self.model_key:
            key = (image_hash(image), method, target, tuple(sorted(params.items())))
            if key in self.maps:
                return self.maps[key]
        exp = explain(
            model, image, method=method, target=target, progress=progress, preview=preview, **params
        )
        if key is not None:
            self.maps[key] = exp
        return exp


def run_compare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    methods, expanded = chosen_methods(args.method or [DEFAULT_METHODS], parser)
    out = Path(args.out)
    if not make_folder(out):
        return 2
    start = time.perf_counter()
    models = _load_models(args, start)
    if models is None:
        return 1
    model_a, model_b = models
    read = _read_compare_labels(args, model_a)
    if read is None:
        return 1
    labels, problems = read
    params = given_params(args)
    settings = CompareSettings(methods=methods, params=params, most_moved=args.most_moved)
    images = _named_images(args.images)
    keep = _KeepMaps(model_b) if args.report else None
    try:
        result = compare_models(
            model_a,
            model_b,
            images,
            settings,
            labels,
            label_problems=problems,
            explain_fn=keep,
            progress=_progress_printer(),
        )
    except ValueError as err:
        say(f"error: {err}")
        return 1
    except Exception as err:
        say_unexpected(err, "compare", args)
        return 1
    if expanded:
        for m, reason in result.skipped_methods.items():
            say(f"skipping {m}: {reason}")
    failed = say_failures(result.skipped, result.images)
    if not _write_tables(args, out, result):
        return 1
    for line in result.summary_lines():
        print(line, flush=True)
    if args.report and result.images:
        code = _write_report(args, model_b, images, result, keep)
        failed += code
    say(
        f"done in {time.perf_counter() - start:.1f} s: {len(result.images)} of {result.total} image(s) "
        f"compared, tables in {out}" + (f", {failed} failure(s)" if failed else "")
    )
    return 1 if failed or not result.images else 0


def _load_models(args, start: float):
    """Models A and B, announced with their fingerprints; None (the error said) if one cannot load."""
    try:
        model_a = load_model(args.model_a, device=args.device)
        model_b = load_model(args.model_b, device=args.device)
    except ValueError as err:
        say(f"error: {err}")
        return None
    say(
        f"model A {model_a.name} (sha256 {model_a.fingerprint[:12]}…), model B {model_b.name} "
        f"(sha256 {model_b.fingerprint[:12]}…) loaded in {time.perf_counter() - start:.1f} s"
    )
    return model_a, model_b


def _read_compare_labels(args, model_a):
    """(labels, problems) from ``--labels``, problems said as warnings; None (error said) if unreadable."""
    labels, problems = None, []
    if args.labels:
        try:
            labels, problems = read_labels(args.labels, model_a.labels)
        except ValueError as err:
            say(f"error: {err}")
            return None
        for problem in problems:
            say(f"warning: {problem}")
    return labels, problems


def _named_images(given) -> list:
    """(name, path) per image: file names when they are unique, else the paths."""
    paths = image_files(given)
    stems = [p.name for p in paths]
    names = stems if len(set(stems)) == len(stems) else [str(p) for p in paths]
    return list(zip(names, paths))


def _progress_printer():
    """A progress callback that prints every 5 %."""
    shown = [0]

    def progress(done, total, label):
        step = max(1, total // 20)
        if done == total or done // step > shown[0]:
            shown[0] = done // step
            say(f"[{done}/{total}] {label}")

    return progress


def _write_tables(args, out: Path, result) -> bool:
    """comparison.csv, methods.csv and summary.json in ``out``; False (the error said) if unwritable."""
    try:
        to_csv(result.table(), out / "comparison.csv")  # image names neutralised (formula injection)
        to_csv(result.methods_table(), out / "methods.csv")
        record = {
            **result.record(),
            "command": sys.argv[1:],
            "sources": {"model_a": _source(args.model_a), "model_b": _source(args.model_b)},
        }
        (out / "summary.json").write_text(dumps(record))
    except OSError as err:
        say(f"error: cannot write to {out}: {err.strerror or err}")
        return False
    return True


def _source(given: str) -> str:
    return given if given == "demo" else str(Path(given).resolve())


def _write_report(args, model_b, images, result, keep: _KeepMaps) -> int:
    from .. import report as rp

    try:
        report = rp.build_report(
            model_b,
            images,
            result.methods,
            params=result.settings.params,
            model_source=_source(args.model_b),
            title=f"Comparison: {model_b.name} against {result.model_a['name']}",
            comparison=result.report_section(),
            explain_fn=keep,
        )
        size = report.write(args.report)["html"]
    except ValueError as err:
        say(f"error: report: {err}")
        return 1
    except Exception as err:
        say_unexpected(err, "report", args)
        return 1
    say(f"report of model B's maps with the comparison: {args.report} ({size / 2**20:.1f} MiB)")
    return 0
