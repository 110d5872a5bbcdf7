"""``validate``: maps against annotations over a data set (saliency_core/evaluation/validate.py)."""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

from ..engine.methods import METHODS
from ..engine.models import load_model
from ..engine.safe_text import to_csv
from ..pipeline import dumps
from .common import (
    absolute_source,
    add_method_options,
    add_ray_options,
    check_ray_options,
    chosen_methods,
    given_params,
    make_folder,
    ranged,
    runnable_methods,
    say,
    say_unexpected,
    whole_number,
)


def add_validate_command(commands) -> None:
    """The ``validate`` subcommand."""
    va = commands.add_parser(
        "validate",
        help="score maps against annotated regions over a data set (50+ images)",
        description="For each annotated image: predict, compute each method's map for the predicted class, "
        "score it against the annotated region (pointing game, relevance mass, relevance rank "
        "accuracy, top-k IoU) and with deletion/insertion curves, beside a centre-bias Gaussian "
        "and a random map. Writes DIR/per_image.csv, DIR/summary.csv (method x metric: mean, CI, "
        "gain over the centre baseline), DIR/summary_table.csv, DIR/skipped.csv and "
        "DIR/validation.json. Exit status 1 if any item was skipped.",
    )
    _add_dataset_options(va)
    _add_scoring_options(va)
    va.add_argument(
        "--model", default="demo", metavar="PATH", help="'demo' (default), a model file or a model card"
    )
    va.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    va.add_argument("--traceback", action="store_true", help="print full tracebacks of unexpected errors")
    add_ray_options(va, "score the images")
    add_method_options(va)
    va.set_defaults(run=run_validate)


def _add_dataset_options(va) -> None:
    """The data set options: a folder and annotations, the demo, or the pasted benchmark."""
    source = va.add_argument_group("data set (one of)")
    source.add_argument("--images", metavar="DIR", help="folder of images (searched recursively) or a ZIP")
    source.add_argument(
        "--annotations",
        metavar="FILE",
        help="CSV boxes (image,x_min,y_min,x_max,y_max[,label]), Pascal VOC XML, COCO JSON, "
        "a folder of these or of mask PNGs (matched by file stem), or a ZIP",
    )
    source.add_argument(
        "--demo",
        action="store_true",
        help="the bundled demo: 5 scikit-image photos with hand-drawn boxes (a demonstration, "
        "not a validation)",
    )
    source.add_argument(
        "--pasted",
        type=whole_number(1),
        metavar="N",
        help="the synthetic benchmark: N scikit-image object photos pasted at random places on "
        "real textures, exact boxes by construction",
    )
    source.add_argument(
        "--pasted-seed", type=whole_number(0), default=0, metavar="S", help="its seed (default 0)"
    )


def _add_scoring_options(va) -> None:
    """The methods and the scoring options: pointing tolerance, top-k, the curves, the interval."""
    from ..evaluation import faithfulness as fa
    from ..evaluation import localisation as lo

    va.add_argument(
        "--methods",
        "--method",
        dest="methods",
        action="append",
        required=True,
        metavar="NAME",
        help=f"methods, comma-separated or repeated ({', '.join(METHODS)}), or 'all'",
    )
    va.add_argument(
        "--tolerance",
        type=ranged(0, 224),
        default=lo.POINTING_TOLERANCE,
        metavar="PX",
        help=f"pointing game tolerance in pixels of the model input (default {lo.POINTING_TOLERANCE:g})",
    )
    va.add_argument(
        "--top-k",
        type=ranged(0.001, 1),
        default=lo.TOP_K,
        metavar="F",
        help=f"share of most relevant pixels for the top-k IoU (default {lo.TOP_K:g})",
    )
    va.add_argument(
        "--no-faithfulness", action="store_true", help="skip the deletion/insertion curves (the slow part)"
    )
    va.add_argument(
        "--measure-on",
        choices=("raw", "shown"),
        default="raw",
        help="what the scores use: the raw map (default) or the map as drawn, averaged maps at "
        "their reproducible detail; summary_table.csv says which",
    )
    va.add_argument(
        "--step",
        type=ranged(0.0001, 0.5),
        default=0.05,
        metavar="F",
        help="deletion/insertion: share of pixels changed per step (default 0.05; Petsiuk et al. "
        "used 224 px of 224x224 = 0.0045)",
    )
    va.add_argument(
        "--deletion-replacement",
        choices=fa.REPLACEMENTS,
        default=fa.DELETION_REPLACEMENT,
        help=f"what deleted pixels become (default {fa.DELETION_REPLACEMENT}: the image's mean colour)",
    )
    va.add_argument(
        "--insertion-replacement",
        choices=fa.REPLACEMENTS,
        default=fa.INSERTION_REPLACEMENT,
        help=f"what insertion starts from (default {fa.INSERTION_REPLACEMENT})",
    )
    va.add_argument(
        "--interval",
        choices=("bootstrap", "t"),
        default="bootstrap",
        help="95%% CI: percentile bootstrap over images (default) or Student t",
    )


def run_validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    _check_dataset_choice(args, parser)
    methods, expanded = chosen_methods(args.methods, parser)
    check_ray_options(args, parser)
    out = Path(args.out)
    if not make_folder(out):
        return 2
    start = time.perf_counter()
    make_dataset = _dataset_maker(args)
    try:
        model = load_model(args.model, device=args.device)
        dataset = make_dataset()
    except ValueError as err:
        say(f"error: {err}")
        return 1
    if expanded:
        methods = runnable_methods(model, methods)
    settings = _validation_settings(args, methods)
    say(
        f"{dataset.description} ({len(dataset)} annotated image(s), {len(dataset.skipped)} item(s) skipped "
        f"so far); model {model.name}"
    )
    try:
        result = _score(args, model, make_dataset, dataset, settings, out)
    except ValueError as err:
        say(f"error: {err}")
        return 1
    except Exception as err:
        say_unexpected(err, "validate", args)
        return 1
    for s in result.skipped:
        say(f"skipped: {s.item}: {s.reason}")
    for w in result.warnings:
        say(f"warning: {w}")
    table = _write_results(out, result)
    if table is None:
        return 1
    if not table.empty:
        print(table.to_string(index=False), flush=True)
    print(result.summary()["interval"].iloc[0] if not table.empty else "no image could be scored", flush=True)
    say(
        f"done in {time.perf_counter() - start:.1f} s ({result.seconds / max(result.images, 1):.2f} s per "
        f"image): {result.images} of {result.total} image(s) scored, tables in {out}"
    )
    return 1 if result.skipped or not result.images else 0


def _check_dataset_choice(args, parser) -> None:
    """Exactly one data set, and a folder of images with its annotations (parser.error otherwise)."""
    chosen = [bool(args.images or args.annotations), args.demo, args.pasted is not None]
    if sum(chosen) != 1:
        parser.error("give one data set: --images DIR --annotations FILE, --demo, or --pasted N")
    if args.images and not args.annotations and not str(args.images).lower().endswith(".zip"):
        parser.error("--images DIR needs --annotations FILE (only a ZIP can hold both)")
    if args.annotations and not args.images:
        parser.error("--annotations needs --images DIR")


def _dataset_maker(args):
    """A function without arguments that builds the chosen data set."""
    from ..evaluation import annotations as an
    from ..evaluation.data import demo_dataset, pasted_objects

    if args.demo:
        return demo_dataset
    if args.pasted is not None:
        return partial(pasted_objects, args.pasted, seed=args.pasted_seed)
    if args.ray:  # the workers list the folder themselves: absolute paths
        return partial(
            an.dataset_from_folder,
            str(Path(args.images).resolve()),
            str(Path(args.annotations).resolve()) if args.annotations else None,
        )
    return partial(an.dataset_from_folder, args.images, args.annotations)


def _validation_settings(args, methods):
    from ..evaluation.validate import ValidationSettings

    return ValidationSettings(
        methods=methods,
        params=given_params(args),
        tolerance=args.tolerance,
        top_k=args.top_k,
        faithfulness=not args.no_faithfulness,
        step_fraction=args.step,
        deletion_replacement=args.deletion_replacement,
        insertion_replacement=args.insertion_replacement,
        seed=args.seed or 0,
        interval=args.interval,
        worst=0,
        measure_on=args.measure_on,
    )


def _progress_printer():
    """A progress callback that prints every 5 % (a Ray run reports whole blocks at a time)."""
    shown = [0]

    def progress(done, total, eta):
        step = max(1, total // 20)
        if done and (done == total or done // step > shown[0]):
            shown[0] = done // step
            say(f"{done}/{total} images" + (f", about {eta:.0f} s left" if eta else ""))

    return progress


def _score(args, model, make_dataset, dataset, settings, out: Path):
    """The validation result, computed here or on a Ray cluster (``--ray``)."""
    from ..evaluation.validate import run_validation

    progress = _progress_printer()
    if args.ray:
        from ..distributed import run_validation_ray

        return run_validation_ray(
            absolute_source(args.model),
            make_dataset,
            settings,
            out,
            address=args.ray,
            workers=args.workers,
            threads=args.threads,
            resume=args.resume,
            progress=progress,
            log=say,
            model=model,
            listing=dataset,
        )
    return run_validation(model, dataset, settings, progress=progress)


def _write_results(out: Path, result):
    """Write the tables and validation.json; the summary table, or None (the error said) if unwritable."""
    try:
        to_csv(result.per_image(), out / "per_image.csv")
        to_csv(result.summary(), out / "summary.csv")
        table = result.summary_table()
        to_csv(table, out / "summary_table.csv")
        to_csv(result.skipped_table(), out / "skipped.csv")
        record = {**result.record(), "command": sys.argv[1:]}
        (out / "validation.json").write_text(dumps(record))
    except OSError as err:
        say(f"error: cannot write to {out}: {err.strerror or err}")
        return None
    return table
