"""``qualify``: qualify a model's methods on an annotated set (saliency_core/evaluation/qualification.py).

Writes DIR/scorecard.csv (formula-like text neutralised) and DIR/qualification.json; the finished units
go to DIR/results.jsonl as they are done, so running the same command again after a stop resumes.
With ``--store URL`` the scorecard is recorded in the review database, waiting for an admin's sign-off.
Exit status 0 when every method asked for is qualified, 1 when one is not (or is provisional), 2 for
a usage error."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from pathlib import Path

from ..engine.methods import METHODS
from ..engine.safe_text import to_csv
from ..pipeline import json_default
from .common import (
    add_method_options,
    chosen_methods,
    given_params,
    make_folder,
    ranged,
    say,
    say_unexpected,
    whole_number,
)


def add_qualify_command(commands) -> None:
    """The ``qualify`` subcommand."""
    qu = commands.add_parser(
        "qualify",
        help="qualify methods for a model on an annotated set (50+ images): scorecard and verdicts",
        description="Per method: pointing game and relevance mass against the centre-bias and random maps, "
        "deletion/insertion against the random map (each with its confidence interval), the randomisation "
        "sanity check and stability on a sample, and the reproducible detail of averaging methods, each "
        "judged by a stated rule. Verdict per method: qualified, not qualified (the failing criteria in "
        "words) or provisional (fewer than the minimum images, or an interval too wide to decide). Writes "
        "DIR/scorecard.csv and DIR/qualification.json; rerun to resume a stopped run (DIR/results.jsonl). "
        "Exit status 1 when a method asked for is not qualified.",
    )
    _add_dataset_options(qu)
    qu.add_argument(
        "--methods",
        "--method",
        dest="methods",
        action="append",
        metavar="NAME",
        help=f"methods to qualify, comma-separated or repeated ({', '.join(METHODS)})",
    )
    qu.add_argument("--model", default="demo", metavar="PATH", help="'demo' (default), a model file or card")
    qu.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    qu.add_argument("--store", metavar="URL", help="record the scorecard in this review database")
    qu.add_argument("--by", metavar="NAME", help="who ran it, as recorded (default: the system user name)")
    qu.add_argument(
        "--step", type=ranged(0.001, 0.5), default=0.1, metavar="F", help="deletion/insertion step"
    )
    for name, help_text in (
        ("sanity-images", "images sampled for the sanity check (default 3)"),
        ("stability-images", "images sampled for the stability check (default 5)"),
        ("reproducibility-images", "images sampled for the reproducible detail (default 3)"),
    ):
        qu.add_argument(f"--{name}", type=whole_number(0), metavar="N", help=help_text)
    _add_rule_options(qu)
    qu.add_argument("--traceback", action="store_true", help="print full tracebacks of unexpected errors")
    add_method_options(qu)
    qu.set_defaults(run=run_qualify)


def _add_dataset_options(qu) -> None:
    """The data set options: a folder and annotations, the pasted set, or the demo's qualification."""
    from ..evaluation import qualification as ql

    source = qu.add_argument_group("data set (one of)")
    source.add_argument("--images", metavar="DIR", help="folder of images (searched recursively) or a ZIP")
    source.add_argument(
        "--annotations",
        metavar="FILE",
        help="CSV boxes, Pascal VOC XML, COCO JSON, a folder of these or of mask PNGs, or a ZIP",
    )
    source.add_argument(
        "--pasted",
        type=whole_number(1),
        metavar="N",
        help="the bundled pasted-object set of N images (the demo's)",
    )
    source.add_argument(
        "--pasted-seed", type=whole_number(0), default=0, metavar="S", help="its seed (default 0)"
    )
    source.add_argument(
        "--demo",
        action="store_true",
        help=f"the demo's qualification: the demo model, {ql.DEMO_IMAGES} pasted-object images, the methods "
        f"{', '.join(ql.DEMO_METHODS)}; kept in --cache and recorded (approved as the demo's) in the review "
        "database, so the dashboard shows it at once",
    )
    source.add_argument(
        "--cache",
        default=ql.DEMO_CACHE,
        metavar="DIR",
        help=f"--demo: where it is kept (default {ql.DEMO_CACHE})",
    )


def _add_rule_options(qu) -> None:
    """The pass rules, defaulting to the rules' own values."""
    from ..evaluation import qualification as ql

    rules = ql.QualificationRules()
    group = qu.add_argument_group("pass rules (the defaults come from the literature; tighten, never loosen)")
    group.add_argument("--min-images", type=whole_number(1), default=rules.min_images, metavar="N")
    group.add_argument(
        "--localisation-margin", type=ranged(-1, 1), default=rules.localisation_margin, metavar="X"
    )
    group.add_argument(
        "--faithfulness-margin", type=ranged(-1, 1), default=rules.faithfulness_margin, metavar="X"
    )
    group.add_argument("--sanity-threshold", type=ranged(0, 1), default=rules.sanity_threshold, metavar="X")
    group.add_argument(
        "--stability-min", type=ranged(0, 1), default=rules.stability_min_spearman, metavar="X"
    )
    group.add_argument(
        "--max-reproducible-px", type=ranged(0, 64), default=rules.max_reproducible_px, metavar="PX"
    )


def _settings(args, methods):
    from ..evaluation import qualification as ql

    rules = ql.QualificationRules(
        min_images=args.min_images,
        localisation_margin=args.localisation_margin,
        faithfulness_margin=args.faithfulness_margin,
        sanity_threshold=args.sanity_threshold,
        stability_min_spearman=args.stability_min,
        max_reproducible_px=args.max_reproducible_px,
    )
    samples = {
        k: getattr(args, k)
        for k in ("sanity_images", "stability_images", "reproducibility_images")
        if getattr(args, k) is not None
    }
    return ql.QualificationSettings(
        methods,
        params=given_params(args),
        rules=rules,
        step_fraction=args.step,
        seed=args.seed or 0,
        **samples,
    )


def run_demo(args: argparse.Namespace) -> int:
    from ..evaluation import qualification as ql
    from ..review.qualification import qualify_demo
    from ..review.store import ReviewStore, StoreError

    out = Path(args.out)
    if not make_folder(out):
        return 2
    start = time.perf_counter()
    try:
        with ReviewStore(args.store) as store:
            result, rec = qualify_demo(args.cache, store, progress=lambda d, t, w: say(f"{d}/{t} {w}"))
            say(f"in force: qualification record {rec.id} in {store.where}")
    except (StoreError, ValueError) as err:
        say(f"error: {err}")
        return 1
    return _write(args, out, result, list(ql.DEMO_METHODS), time.perf_counter() - start, store=False)


def run_qualify(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..engine.models import load_model
    from ..evaluation import annotations as an
    from ..evaluation import qualification as ql
    from ..evaluation.data import pasted_objects

    if sum([bool(args.images or args.annotations), args.pasted is not None, args.demo]) != 1:
        parser.error("give one data set: --images DIR --annotations FILE, --pasted N, or --demo")
    if args.demo:
        return run_demo(args)
    if not args.methods:
        parser.error("the following arguments are required: --methods")
    if args.annotations and not args.images:
        parser.error("--annotations needs --images DIR")
    methods, _ = chosen_methods(args.methods, parser)
    out = Path(args.out)
    if not make_folder(out):
        return 2
    start = time.perf_counter()
    try:
        model = load_model(args.model, device=args.device)
        if args.pasted is not None:
            dataset = pasted_objects(args.pasted, seed=args.pasted_seed)
        else:
            dataset = an.dataset_from_folder(args.images, args.annotations)
        run = ql.QualificationRun(model, dataset, _settings(args, methods), results=out / "results.jsonl")
    except ValueError as err:
        say(f"error: {err}")
        return 1
    say(f"{dataset.description} ({len(dataset)} annotated image(s)); model {model.name}; {run.total} units")
    if run.done:
        say(f"resuming: {len(run.done)} of {run.total} units already done")

    def progress(done, total, what):
        say(f"{done}/{total} {what}")

    try:
        result = run.run(progress=progress)
    except ValueError as err:
        say(f"error: {err}")
        return 1
    except Exception as err:  # noqa: BLE001
        say_unexpected(err, "qualify", args)
        return 1
    return _write(args, out, result, methods, time.perf_counter() - start)


def _write(args, out: Path, result, methods: list[str], seconds: float, store: bool = True) -> int:
    from ..review.qualification import QualificationStore
    from ..review.store import ReviewStore, StoreError

    try:
        to_csv(result.table(), out / "scorecard.csv")
        record = {**result.record(), "command": sys.argv[1:], "wall_seconds": round(seconds, 1)}
        (out / "qualification.json").write_text(json.dumps(record, indent=2, default=json_default) + "\n")
    except OSError as err:
        say(f"error: cannot write to {out}: {err.strerror or err}")
        return 1
    for r in result.rows:
        cell = "n/a" if r["figure"] is None else f"{r['figure']:.3f}"
        if r["low"] is not None and r["high"] is not None:
            cell += f" [{r['low']:.3f}, {r['high']:.3f}]"
        print(f"{r['method']:<22} {r['criterion']:<16} {cell:<28} {r['verdict']}", flush=True)
    for m, v in result.verdicts.items():
        print(f"{m}: {v['verdict']}. {v['reason']}", flush=True)
    if args.store and store:
        try:
            with ReviewStore(args.store) as store:
                rec = QualificationStore(store).add(
                    result, run_by=args.by or getpass.getuser(), via="command line"
                )
            say(f"recorded as qualification record {rec.id} in {store.where}; an admin signs it off")
        except (StoreError, ValueError) as err:
            say(f"error: {err}")
            return 1
    say(f"done in {seconds:.1f} s: scorecard in {out}")
    return 0 if all(result.verdicts.get(m, {}).get("verdict") == "qualified" for m in methods) else 1
