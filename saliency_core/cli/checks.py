"""``stability`` and ``sanity``: map checks per image and method (saliency_core/evaluation/)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..engine.explain import available_methods
from ..engine.images import load_image
from ..engine.methods import METHODS
from ..engine.models import load_model
from ..pipeline import dumps
from .common import (
    Parser,
    add_method_options,
    chosen_methods,
    error_message,
    given_params,
    ranged,
    say,
    say_unexpected,
)


def add_check_commands(commands) -> None:
    """The ``stability`` and ``sanity`` subcommands (engine: saliency_core/evaluation/)."""
    common = _common_options()
    _add_stability_parser(commands, common)
    _add_sanity_parser(commands, common)


def _common_options() -> Parser:
    """The options ``stability`` and ``sanity`` share, as a parent parser."""
    common = Parser(add_help=False)
    common.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    common.add_argument(
        "--method",
        action="append",
        required=True,
        metavar="NAME",
        help=f"a method ({', '.join(METHODS)}) or 'all'; repeat for several",
    )
    common.add_argument("--model", default="demo", metavar="PATH", help="model to check (default: demo)")
    common.add_argument("--out", metavar="FILE", help="also write the full results as JSON")
    common.add_argument("--traceback", action="store_true", help="print full tracebacks of unexpected errors")
    return common


def _add_stability_parser(commands, common: Parser) -> None:
    """The ``stability`` subcommand and its perturbation and verdict options."""
    from ..evaluation import stability as stab

    st = commands.add_parser(
        "stability",
        parents=[common],
        help="how much maps change under small changes of the image",
        description="For each image: K slightly changed copies (noise, brightness, contrast, shift, "
        "rotation, "
        "JPEG); per method the mean Spearman rank correlation of |map|, top-k overlap and SSIM "
        "with the original's map (shifts and rotations undone), and a verdict: stable, "
        "unstable explanation or fragile prediction. One line per image and method on stdout.",
    )
    d, t = stab.Perturbation(), stab.StabilityThresholds()
    st.add_argument(
        "--variants",
        type=ranged(1, stab.MAX_VARIANTS, whole=True),
        default=8,
        metavar="K",
        help=f"number of changed copies, 1-{stab.MAX_VARIANTS} (default 8)",
    )
    st.add_argument(
        "--pixel-noise",
        type=ranged(0, 0.5),
        default=d.pixel_noise,
        metavar="F",
        help=f"Gaussian pixel noise, fraction of the pixel range (default {d.pixel_noise})",
    )
    st.add_argument(
        "--shift",
        type=ranged(1, 64, whole=True),
        default=d.shift,
        metavar="PX",
        help=f"shift in pixels (default {d.shift})",
    )
    st.add_argument(
        "--rotation",
        type=ranged(0.1, 45),
        default=d.rotation,
        metavar="DEG",
        help=f"rotation in degrees (default {d.rotation})",
    )
    st.add_argument(
        "--min-spearman",
        type=ranged(0, 1),
        default=t.min_spearman,
        metavar="R",
        help=f"stable if the mean rank correlation is at least this (default {t.min_spearman})",
    )
    st.add_argument(
        "--min-overlap",
        type=ranged(0, 1),
        default=t.min_top_k_overlap,
        metavar="R",
        help=f"... and the mean top-10%% overlap at least this (default {t.min_top_k_overlap})",
    )
    st.add_argument(
        "--max-drop",
        type=ranged(0, 1),
        default=t.max_confidence_drop,
        metavar="P",
        help="fragile if the class changes or its probability drops by more than this "
        f"(default {t.max_confidence_drop})",
    )
    add_method_options(st)
    st.set_defaults(run=run_stability)


def _add_sanity_parser(commands, common: Parser) -> None:
    """The ``sanity`` subcommand and its randomisation options."""
    from ..evaluation import sanity as rz

    sa = commands.add_parser(
        "sanity",
        parents=[common],
        help="model parameter randomisation sanity check (Adebayo et al. 2018)",
        description="Re-initialise the model's layer blocks from the logits down (on a copy) and compare "
        "each method's map with the trained model's; a method passes when its map decorrelates "
        "(Spearman of |map| at the last step below the threshold). One line per image and "
        "method on stdout.",
    )
    sa.add_argument("--mode", choices=rz.MODES, default="cascading", help="default: cascading")
    sa.add_argument(
        "--depth", metavar="N", help="blocks to re-initialise from the top, or 'all' (default: the top half)"
    )
    sa.add_argument(
        "--threshold",
        type=ranged(0.01, 1),
        default=rz.DEFAULT_THRESHOLD,
        metavar="R",
        help=f"pass if the final rank correlation is below this (default {rz.DEFAULT_THRESHOLD})",
    )
    add_method_options(sa)
    sa.set_defaults(run=run_sanity)


def _check_setup(args, parser):
    """Model, usable methods and method parameters shared by ``stability`` and ``sanity``."""
    methods, expanded = chosen_methods(args.method, parser)
    model = load_model(args.model, device=args.device)
    usable = available_methods(model)
    for name in [m for m in methods if usable.get(m)]:
        if not expanded:
            parser.error(f"{name} cannot run on this model: {usable[name]}")
        say(f"skipping {name}: {usable[name]}")
    methods = [m for m in methods if not usable.get(m)]
    params = given_params(args)
    return model, methods, params


def _run_checks(args, parser, check, line, header) -> int:
    """Load, run ``check(model, path, methods, params)`` per image, print ``line(...)`` rows."""
    try:
        model, methods, params = _check_setup(args, parser)
    except ValueError as err:  # the model cannot be loaded
        say(f"error: {err}")
        return 1
    failed, records = 0, {}
    print(header, flush=True)
    for path in args.images:
        tick = time.perf_counter()
        try:
            result = check(model, path, methods, params)
        except ValueError as err:
            say(f"error: {error_message(err, path)}")
            failed += 1
            continue
        except Exception as err:  # one bad image must not stop the batch
            say_unexpected(err, path, args)
            failed += 1
            continue
        for method, message in result.errors.items():
            say(f"error: {path} [{method}]: {' '.join(message.split())}")
            failed += 1
        for row in line(path, result):
            print(row, flush=True)
        records[path] = result.record()
        say(f"{path}: {len(methods)} method(s) in {time.perf_counter() - tick:.1f} s")
    if args.out:
        try:
            Path(args.out).write_text(
                dumps({"model": model.describe(), "command": sys.argv[1:], "images": records})
            )
        except OSError as err:
            say(f"error: cannot write {args.out}: {err.strerror or err}")
            failed += 1
    return 1 if failed else 0


def run_stability(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..evaluation import stability as stab

    perturbation = stab.Perturbation(pixel_noise=args.pixel_noise, shift=args.shift, rotation=args.rotation)
    thresholds = stab.StabilityThresholds(
        min_spearman=args.min_spearman, min_top_k_overlap=args.min_overlap, max_confidence_drop=args.max_drop
    )

    def check(model, path, methods, params):
        return stab.stability_check(
            model,
            load_image(path, name=path),
            methods,
            count=args.variants,
            perturbation=perturbation,
            thresholds=thresholds,
            params=params,
        )

    def line(path, result):
        steady = sum(v.steady for v in result.variants)
        for method, s in result.summary.items():
            yield (
                f"{Path(path).name:<18} {result.target_label[:16]:<16} {method:<22} {s.verdict:<21} "
                f"{s.mean['spearman_abs']:>8.3f} {s.mean['top_k_overlap']:>8.3f} {s.mean['ssim']:>6.3f} "
                f"{s.worst['spearman_abs']:>8.3f} {steady:>3}/{len(result.variants)}"
            )

    header = (
        f"{'image':<18} {'explained class':<16} {'method':<22} {'verdict':<21} {'spearman':>8} "
        f"{'top10%':>8} {'ssim':>6} {'worst':>8} steady"
    )
    return _run_checks(args, parser, check, line, header)


def run_sanity(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..evaluation import sanity as rz

    def check(model, path, methods, params):
        blocks = rz.layer_blocks(model)
        depth = None
        if args.depth == "all":
            depth = len(blocks)
        elif args.depth is not None:
            try:
                depth = int(args.depth)
            except ValueError:
                raise ValueError(f"--depth must be a whole number or 'all'; got {args.depth!r}") from None
        return rz.sanity_check(
            model,
            load_image(path, name=path),
            methods,
            mode=args.mode,
            depth=depth,
            params=params,
            threshold=args.threshold,
            image_name=Path(path).name,
        )

    def line(path, result):
        for method, v in result.verdicts().items():
            curve = " ".join(f"{x:.2f}" for x in result.curve(method))
            yield (
                f"{Path(path).name:<18} {method:<22} {'passes' if v.passed else 'fails':<7} "
                f"{v.final_similarity:>8.3f} {v.blocks:>3}/{v.total_blocks:<3} {curve}"
                + ("  (map zero at the last step)" if v.final_map_zero else "")
            )

    header = (
        f"{'image':<18} {'method':<22} {'verdict':<7} {'spearman':>8} blocks  "
        "curve (Spearman of |map| per step)"
    )
    return _run_checks(args, parser, check, line, header)
