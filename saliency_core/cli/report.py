"""``report`` (a self-contained HTML / PDF report) and ``replay`` (recompute a report's maps)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..engine.methods import METHODS
from ..engine.models import load_model
from .common import (
    add_method_options,
    chosen_methods,
    given_params,
    ranged,
    runnable_methods,
    say,
    say_failures,
    say_unexpected,
    whole_number,
)


def add_report_commands(commands) -> None:
    """The ``report`` and ``replay`` subcommands."""
    _add_report_parser(commands)
    _add_replay_parser(commands)


def _add_report_parser(commands) -> None:
    """The ``report`` subcommand and its options."""
    rp = commands.add_parser(
        "report",
        help="a self-contained HTML report (and PDF) of images x methods",
        description="Compute each method's map for each image and write one self-contained HTML file "
        "(pictures embedded, no external addresses, prints on A4) with a plain-language summary, "
        "the model card, each method's parameters and known limits, the predictions and maps, and "
        "a JSON block from which 'replay' recomputes every map. --pdf also writes a PDF.",
    )
    rp.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, WebP, BMP, TIFF)")
    rp.add_argument(
        "--methods",
        "--method",
        dest="methods",
        action="append",
        required=True,
        metavar="NAME",
        help=f"methods, comma-separated or repeated ({', '.join(METHODS)}), or 'all'",
    )
    rp.add_argument("--out", required=True, metavar="FILE", help="the HTML file to write")
    rp.add_argument("--pdf", metavar="FILE", help="also write the report as a PDF")
    rp.add_argument(
        "--model", default="demo", metavar="PATH", help="'demo' (default), a model file or a model card"
    )
    rp.add_argument("--title", default=None, help="title on the first page (default 'Saliency report')")
    rp.add_argument(
        "--outline",
        type=ranged(0.01, 0.99),
        metavar="SHARE",
        help="also show each map as the outline of the image regions holding this share of it "
        "(e.g. 0.3), beside the overlay",
    )
    rp.add_argument(
        "--target",
        type=whole_number(0),
        metavar="IDX",
        help="class index to explain (default: the predicted class)",
    )
    for name, what in (
        ("sanity", "the JSON written by 'sanity --out'"),
        ("stability", "the JSON written by 'stability --out'"),
        ("validation", "validation metrics"),
        ("reviews", "review decisions"),
    ):
        rp.add_argument(f"--{name}", metavar="FILE", help=f"add a section from {what} (JSON or CSV rows)")
    rp.add_argument(
        "--audit",
        action="store_true",
        help="verify the review database's audit log ($DATABASE_URL or $SALIENCY_DB) and state the "
        "result with the review decisions",
    )
    rp.add_argument("--traceback", action="store_true", help="print full tracebacks of unexpected errors")
    add_method_options(rp)
    rp.set_defaults(run=run_report)


def _add_replay_parser(commands) -> None:
    """The ``replay`` subcommand and its options."""
    rr = commands.add_parser(
        "replay",
        help="recompute every map of a report and say whether it matches",
        description="Read the JSON block of a report made by 'report' (or the Report page), find the model "
        "with "
        "the fingerprint it records (the demo, or a model in the models folder; a path written in "
        "the report is never loaded), recompute every map with the recorded image, method, "
        "parameters, seed and class, and print one line per map: match or mismatch, with the "
        "largest difference. Exit status 0 only if every map matches.",
    )
    rr.add_argument("report", metavar="REPORT", help="the report's HTML file")
    rr.add_argument(
        "--model",
        metavar="PATH",
        help="load the model from here (a model file or card); its fingerprint must match the report's",
    )
    rr.add_argument(
        "--models",
        metavar="DIR",
        help="the models folder to search by fingerprint (default: $SALIENCY_MODELS_DIR or ./models)",
    )
    rr.add_argument(
        "--tolerance",
        type=ranged(0, 1),
        default=0.0,
        metavar="R",
        help="also accept maps whose largest difference is at most R x the map's largest value "
        "(default 0: the float32 numbers must be identical)",
    )
    rr.add_argument("--traceback", action="store_true", help="print full tracebacks of unexpected errors")
    rr.set_defaults(run=run_replay)


def _result_rows(path: str, kind: str):
    """Rows for an optional report section from a JSON or CSV file; the JSON of ``sanity --out`` /
    ``stability --out`` is turned into one row per image and method."""
    p = Path(path)
    try:
        if p.suffix.lower() == ".csv":
            import pandas as pd

            return pd.read_csv(p).to_dict(orient="records")
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"--{kind} {path}: no such file.") from None
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise ValueError(
            f"--{kind} {path}: cannot read it as JSON or CSV ({' '.join(str(err).split())})."
        ) from None
    if isinstance(data, dict) and isinstance(data.get("images"), dict):
        rows = []
        for image, rec in data["images"].items():
            if kind == "sanity":
                rows += [{"image": Path(image).name, **v} for v in (rec.get("verdicts") or {}).values()]
            else:
                rows += [
                    {"image": Path(image).name, "method": m, **s}
                    for m, s in (rec.get("methods") or {}).items()
                ]
        return rows
    return data


def run_report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .. import report as rp

    methods, expanded = chosen_methods(args.methods, parser)
    start = time.perf_counter()
    try:
        extras = {
            k: _result_rows(getattr(args, k), k)
            for k in ("sanity", "stability", "validation", "reviews")
            if getattr(args, k)
        }
        for _k, rows in extras.items():
            rp.table_rows(rows)  # shape check before the maps are computed
        if args.audit:
            from ..review.store import ReviewStore

            with ReviewStore() as review_store:
                extras["audit"] = review_store.verify().record()
            extras.setdefault("reviews", [])
        model = load_model(args.model, device=args.device)
    except ValueError as err:
        say(f"error: {err}")
        return 1
    if args.target is not None and args.target >= len(model.labels):
        say(f"error: --target must be a class index below {len(model.labels)}; got {args.target}")
        return 2
    if expanded:
        methods = runnable_methods(model, methods)
    params = given_params(args)

    def progress(done, total, label):
        say(f"[{done}/{total}] {label}")

    try:
        stems = [Path(p).name for p in args.images]
        names = stems if len(set(stems)) == len(stems) else list(args.images)  # file names when unique
        report = rp.build_report(
            model,
            list(zip(names, args.images)),
            methods,
            params=params,
            target=args.target,
            model_source=args.model if args.model == "demo" else str(Path(args.model).resolve()),
            title=args.title,
            progress=progress,
            outline_share=args.outline,
            **extras,
        )
        sizes = report.write(args.out, args.pdf)
    except ValueError as err:
        say(f"error: {err}")
        return 1
    except Exception as err:
        say_unexpected(err, "report", args)
        return 1
    failed = say_failures(report.skipped, report.images)
    written = ", ".join(
        f"{p} ({sizes[k] / 2**20:.1f} MiB)" for k, p in (("html", args.out), ("pdf", args.pdf)) if p
    )
    say(
        f"done in {time.perf_counter() - start:.1f} s: {len(report.images)} image(s) x {len(report.methods)} "
        f"method(s) -> {written}" + (f", {failed} failure(s)" if failed else "")
    )
    return 1 if failed else 0


def run_replay(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .. import report as rp

    try:
        record = rp.read_replay(Path(args.report))
        model = (
            load_model(args.model, device=args.device)
            if args.model
            else rp.find_replay_model(record, args.models, device=args.device)
        )
    except ValueError as err:
        say(f"error: {err}")
        return 1
    start = time.perf_counter()
    try:
        results = rp.replay(
            record, model, tolerance=args.tolerance, progress=lambda r: print(r.line(), flush=True)
        )
    except ValueError as err:
        say(f"error: {err}")
        return 1
    except Exception as err:
        say_unexpected(err, args.report, args)
        return 1
    matched = sum(r.ok for r in results)
    if not results:
        say("error: the report holds no maps to replay")
        return 1
    say(
        f"{matched} of {len(results)} map(s) match"
        + ("" if matched == len(results) else f"; {len(results) - matched} do not")
        + f" ({time.perf_counter() - start:.1f} s)"
    )
    return 0 if matched == len(results) else 1
