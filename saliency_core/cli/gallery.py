"""``gallery``: a labelled set's predictions and maps into the result store the Gallery page reads
(saliency_core/gallery/). A killed run keeps every finished image; the next run computes only
what is missing. Progress: a tqdm bar on stderr (rate and time left); then a summary."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..engine.methods import METHODS
from ..engine.models import load_model
from .common import (
    absolute_source,
    add_method_options,
    chosen_methods,
    given_params,
    ranged,
    say,
    say_unexpected,
    unit_fraction,
    whole_number,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_gallery_command(commands) -> None:
    """The ``gallery`` subcommand."""
    ga = commands.add_parser(
        "gallery",
        help="predict and explain a labelled set into the Gallery's result store (resumable)",
        description="Predict and explain every image of a labelled set and store each result as it "
        "finishes, in the same store the Gallery page reads (it then opens the results without "
        "recomputing). A run that is killed keeps what it finished; running the same command again "
        "computes only what is missing. Prints the resolved label -> class mapping first, a progress "
        "bar with rate and time left, then a summary. Exit status 1 when any image could not be read, "
        "a method failed on an image, or files or labels of the set were left out; 2 for a usage error.",
    )
    ga.add_argument(
        "--set",
        required=True,
        metavar="DIR|CSV|ZIP",
        help="the labelled set: 'demo' (the bundled demo set), a folder with one sub-folder per "
        "class (ImageFolder) or a labels.csv / labels.json at its root; a CSV file (columns "
        "file,label; paths relative to its folder); or a ZIP of either",
    )
    ga.add_argument(
        "--model",
        default="demo",
        metavar="PATH",
        help="'demo' (default), a model file or a model card, as for the other commands",
    )
    ga.add_argument(
        "--methods",
        "--method",
        dest="methods",
        action="append",
        required=True,
        metavar="NAME",
        help=f"methods, comma-separated or repeated ({', '.join(METHODS)}), or 'all'",
    )
    ga.add_argument(
        "--store",
        metavar="FILE",
        help="the result store, a SQLite file (default: $SALIENCY_GALLERY_DB, else gallery.sqlite "
        "next to the review database, where the page looks)",
    )
    ga.add_argument(
        "--labels-map",
        metavar="FILE",
        help="a mapping file that settles labels: CSV rows label,class (class: a model class name or "
        "index; a label on several rows stands for all of them), or classes.json",
    )
    ga.add_argument(
        "--show-mapping",
        action="store_true",
        help="print how each label resolves to the model's classes and stop (nothing is computed)",
    )
    _reason_and_scale_options(ga)
    ga.add_argument("--no-progress", action="store_true", help="no progress bar (one line per 10%% instead)")
    ga.add_argument("--traceback", action="store_true", help="print full tracebacks of unexpected errors")
    add_method_options(ga)
    ga.set_defaults(run=run_gallery)


def _reason_and_scale_options(ga) -> None:
    """--annotations, --threshold, --ray, --workers, --max-images."""
    from ..gallery.reasons import THRESHOLD

    ga.add_argument(
        "--annotations",
        metavar="PATH",
        help="regions of the objects (any format validate reads: CSV boxes, Pascal VOC XML, COCO "
        "JSON, mask PNGs, a folder or a ZIP), matched by file name: adds the share of each map "
        "inside the region and counts 'right answer, looked elsewhere' / 'wrong answer, looked at "
        "the part'",
    )
    ga.add_argument(
        "--threshold",
        type=unit_fraction,
        default=THRESHOLD,
        metavar="F",
        help=f"share of the map inside the region at or above which an image looked at the part "
        f"(default {THRESHOLD:g})",
    )
    ga.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="compute on a Ray cluster ('auto', HOST:PORT, or 'local' for a private one on this "
        "machine); images and the model must be at the same paths on every node. Results are "
        "stored here, as they arrive",
    )
    ga.add_argument(
        "--workers", type=whole_number(1), metavar="N", help="model-holding Ray workers (default one per CPU)"
    )
    ga.add_argument(
        "--max-images",
        type=ranged(1, 10**8, whole=True),
        metavar="N",
        help="images a set may hold (default $SALIENCY_GALLERY_MAX_IMAGES, else 20,000)",
    )


def open_set(source: str, labels: list[str], mapping: dict | None, limit: int | None):
    """The labelled set at ``source`` (folder, CSV, ZIP)."""
    from ..evaluation.labelled import demo_set, open_folder, open_zip

    if source == "demo":
        return demo_set(labels)
    path = Path(source)
    if path.is_dir():
        return open_folder(path, labels, mapping=mapping, limit=limit)
    if not path.is_file():
        raise ValueError(f"{source}: no such folder or file.")
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return open_zip(path.read_bytes(), path.name, labels, mapping=mapping, limit=limit)
    if suffix in (".csv", ".json"):
        return open_folder(path.parent, labels, mapping=mapping, limit=limit, table=path.name)
    raise ValueError(f"{source}: expected a folder, a CSV or JSON label table, or a ZIP.")


def read_mapping_file(path: str) -> dict:
    from ..evaluation.labelled import read_mapping
    from ..evaluation.labels import read_label_map

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{path}: no such mapping file.")
    data = p.read_bytes()
    return read_mapping(data, p.name) if p.suffix.lower() == ".json" else read_label_map(data, p.name)


def _print_mapping(labelled, model) -> None:
    from ..evaluation.labels import mapping_rows

    counts: dict[str, int] = {}
    for it in labelled.items:
        counts[it.label] = counts.get(it.label, 0) + 1
    rows = mapping_rows(labelled.classes, model.labels, counts)
    width = max([len(r["label"]) for r in rows] + [5])
    print(f"labels -> model classes ({len(rows)} label(s), {len(labelled):,} image(s)):", file=sys.stderr)
    for r in rows:
        print(
            f"  {r['label']:<{width}}  {r['images']:>6,} image(s)  -> {r['model classes']}  "
            f"[{r['matched by']}]",
            file=sys.stderr,
        )
    refused = [p for p in labelled.problems if p.item.startswith("label ")]
    for p in refused:
        print(f"  refused: {p.item}: {p.reason}", file=sys.stderr)
    sys.stderr.flush()


def run_gallery(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .. import gallery

    methods, _ = chosen_methods(args.methods, parser)
    if args.workers is not None and not args.ray:
        parser.error("--workers goes with --ray ADDRESS")
    started = time.perf_counter()
    try:
        mapping = read_mapping_file(args.labels_map) if args.labels_map else None
        model = load_model(args.model, device=args.device)
        labelled = open_set(args.set, model.labels, mapping, args.max_images)
        store = gallery.ResultStore(args.store) if args.store else gallery.ResultStore()
    except ValueError as err:
        say(f"error: {err}")
        return EXIT_FAILED
    say(f"model {model.name} · set {labelled.description} · store {store.path}")
    _print_mapping(labelled, model)
    if args.show_mapping:
        return EXIT_OK
    params = given_params(args)
    try:
        report = _run(gallery, args, model, labelled, methods, params, store)
    except ValueError as err:
        say(f"error: {err} (what was finished is kept; run the command again to go on)")
        return EXIT_FAILED
    except Exception as err:  # noqa: BLE001  one line, not a stack trace; finished images are kept
        say_unexpected(err, "gallery run", args)
        return EXIT_FAILED
    rows = gallery.table(store, model, labelled, methods, params)
    _summary(rows, report, labelled, time.perf_counter() - started)
    code = _reasons(args, store, model, labelled, rows, methods, params)
    store.close()
    failed = bool(report.failed or report.errors or labelled.problems)
    return EXIT_FAILED if failed or code else EXIT_OK


def _run(gallery, args, model, labelled, methods, params, store):
    """The run with a tqdm bar (or a line per 10 %) on stderr."""
    from tqdm import tqdm

    bar, last = None, [-1]

    def progress(p) -> None:
        nonlocal bar
        if args.no_progress:
            tenth = p.done * 10 // max(p.total, 1)
            if tenth != last[0]:
                last[0] = tenth
                say(f"progress: {p.words()}")
            return
        if bar is None:
            bar = tqdm(
                total=p.total,
                initial=p.done,
                unit="image",
                desc="gallery",
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.5,
            )
        else:
            bar.update(p.done - bar.n)
        if p.name:
            bar.set_postfix_str(p.name[-40:], refresh=False)

    try:
        return gallery.run(
            model,
            labelled,
            methods,
            params,
            store,
            progress=progress,
            ray_address=args.ray or None,
            model_source=absolute_source(args.model),
            ray_min_images=1,
            ray_workers=args.workers,
        )
    finally:
        if bar is not None:
            bar.close()


def _summary(rows, report, labelled, seconds: float) -> None:
    done = rows[rows["status"] == "done"]
    correct = int(done["correct"].astype(bool).sum())
    lines = [
        f"images: {len(labelled):,} in the set · {len(done):,} with a result "
        f"({report.computed:,} computed now, {report.stored:,} stored before)",
        f"accuracy: {correct / len(done):.1%} ({correct:,} of {len(done):,})"
        if len(done)
        else "accuracy: no result yet",
        f"mistakes: {len(done) - correct:,}",
        f"unreadable: {len(report.failed):,}"
        + "".join(f"\n  {f.item}: {f.reason}" for f in report.failed[:20]),
    ]
    if report.errors:
        lines.append(
            f"method errors: {len(report.errors):,}"
            + "".join(f"\n  {e.item}: {e.reason}" for e in report.errors[:20])
        )
    if labelled.problems:
        lines.append(
            f"left out of the set: {len(labelled.problems):,}"
            + "".join(f"\n  {p.item}: {p.reason}" for p in labelled.problems[:20])
        )
    rate = f" ({report.rate:.2f} images/s)" if report.rate else ""
    lines.append(f"time: {seconds:.1f} s{rate}")
    print("\n".join(lines), file=sys.stderr, flush=True)


def _reasons(args, store, model, labelled, rows, methods, params) -> int:
    """With --annotations: the two-by-two count per method; 1 when the annotations could not be used."""
    if not args.annotations:
        return 0
    from ..gallery.reasons import (
        REASONS,
        annotated,
        keep_reason,
        read_annotations,
        reason_counts,
        region_scores,
        with_reasons,
    )

    try:
        found, skipped = read_annotations(args.annotations)
    except ValueError as err:
        say(f"error: {err}")
        return 1
    by_name, unmatched = annotated(labelled, found)
    print(
        f"annotations: {len(by_name):,} image(s) matched"
        + (
            f", {len(skipped) + len(unmatched):,} annotation(s) or image(s) unmatched"
            if skipped or unmatched
            else ""
        ),
        file=sys.stderr,
    )
    if not by_name:
        return 1
    scores = region_scores(store, model, labelled, by_name, methods, params)
    for m in methods:
        scored = with_reasons(rows, scores, m)
        counts = reason_counts(scored, args.threshold)
        print(
            f"{METHODS[m].label}, looked at the part = share inside >= {args.threshold:.0%}:", file=sys.stderr
        )
        for verdict in counts.index:
            print(
                f"  {verdict:<8} "
                + "  ".join(f"{c}: {int(counts.loc[verdict, c]):,}" for c in counts.columns),
                file=sys.stderr,
            )
        for reason in REASONS[1:]:
            names = scored.loc[keep_reason(scored, reason, args.threshold), "name"]
            if len(names):
                more = " …" if len(names) > 10 else ""
                print(f"  {reason} ({len(names):,}): {', '.join(names.head(10))}{more}", file=sys.stderr)
    sys.stderr.flush()
    return 0
