"""Command line: ``python -m saliency_core explain IMAGE... --method NAME --out DIR``.

For each image and method it writes ``DIR/<stem>_<method>.png`` (the overlay with a colour
bar below it) and one ``DIR/<stem>.json`` with the prediction and everything needed to replay
each map. Progress and errors go to stderr, one line each; a bad image or a failing method
is reported and skipped, and the exit status is 1 if anything failed.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import __version__
from .auth import add_users_command
from .explain import available_methods, explain
from .images import image_hash, load_image
from .methods import METHODS
from .models import load_model
from .render import DIVERGING, SEQUENTIAL, SIGN_MODES, Rendered, colorbar_image, render

PROG = "python -m saliency_core"
ALPHA = 0.5             # overlay: weight of the colours
CLIP_PERCENTILE = 99.0  # full colour at this percentile of |values| (PAIR saliency)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _whole(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Saliency Lens engine: saliency maps for image classifiers.")
    parser.add_argument("--version", action="version", version=f"saliency_core {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    ex = commands.add_parser(
        "explain", help="overlay PNGs and a JSON record per image",
        description="Write DIR/<image stem>_<method>.png per image and method, and DIR/<image stem>.json "
                    "with the prediction and every parameter needed to replay each map.")
    ex.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, WebP, BMP, TIFF)")
    ex.add_argument("--method", action="append", required=True, metavar="NAME",
                    help=f"a method ({', '.join(METHODS)}) or 'all'; repeat for several")
    ex.add_argument("--samples", type=_whole(1), help="SmoothGrad noisy samples (default: the method's, 50)")
    ex.add_argument("--noise", type=_fraction,
                    help="SmoothGrad noise, a fraction of the image's value range (default 0.15)")
    ex.add_argument("--seed", type=_whole(0), help="random seed for noise (default 0)")
    ex.add_argument("--steps", type=_whole(1), help="Integrated Gradients path steps (default 50)")
    ex.add_argument("--target", type=_whole(0), metavar="IDX",
                    help="class index to explain (default: the predicted class)")
    ex.add_argument("--colormap", choices=SEQUENTIAL + DIVERGING,
                    help="colours (default inferno, or balance for signed maps)")
    ex.add_argument("--sign", choices=SIGN_MODES,
                    help="which values to draw (default: signed for signed methods, else absolute)")
    ex.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    ex.add_argument("--model", default="demo", metavar="PATH",
                    help="'demo' (default), a model file (TorchScript .pt, torch.export .pt2, or a "
                         "state dict with a card of the same name) or a model card (.json, .yaml); "
                         "see README 'Bring your own model'")
    ex.add_argument("--traceback", action="store_true", help="print full tracebacks of unexpected errors")
    ex.set_defaults(run=run_explain)
    add_users_command(commands, _Parser)  # users add|remove|list: saliency_core/auth.py
    _add_check_commands(commands)         # stability, sanity: saliency_core/metrics/
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args, parser)
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


def _say(line: str) -> None:
    print(" ".join(str(line).split()), file=sys.stderr, flush=True)


def _methods(requested: list[str], parser: argparse.ArgumentParser) -> tuple[list[str], bool]:
    """Requested names in order, 'all' expanded; unknown names are a usage error."""
    names, expanded = [], False
    for item in requested:
        for name in (n.strip() for n in item.split(",")):
            if name == "all":
                names.extend(METHODS)
                expanded = True
            elif name in METHODS:
                names.append(name)
            else:
                parser.error(f"unknown method {name!r}; available: {', '.join(METHODS)}, or 'all'")
    return list(dict.fromkeys(names)), expanded


def _sign_for(method: str, args: argparse.Namespace) -> str:
    if args.sign:
        return args.sign
    if args.colormap in DIVERGING or (args.colormap is None and METHODS[method].signed):
        return "signed"
    return "absolute"


def _params_for(method: str, args: argparse.Namespace) -> dict:
    """Parameters given on the command line that this method takes (others would be rejected)."""
    given = {k: getattr(args, k) for k in ("samples", "noise", "seed", "steps") if getattr(args, k) is not None}
    return {k: v for k, v in given.items() if k in METHODS[method].defaults}


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def with_colorbar(rendered: Rendered) -> np.ndarray:
    """The overlay with a colour bar and its tick labels below it, uint8 (H', W, 3)."""
    overlay = rendered.overlay
    width = overlay.shape[1]
    margin, bar_h, gap, text_h = max(2, width // 40), 10, 4, 14
    strip = Image.new("RGB", (width, gap + bar_h + text_h), "white")
    bar = colorbar_image(rendered, height=bar_h, width=max(1, width - 2 * margin))
    strip.paste(Image.fromarray(bar), (margin, gap))
    draw, font = ImageDraw.Draw(strip), _font(10)
    for pos, label in rendered.colorbar_ticks:
        x = margin + pos * (bar.shape[1] - 1)
        draw.line([(x, gap + bar_h), (x, gap + bar_h + 2)], fill="black")
        w = draw.textlength(label, font=font)
        left = min(max(x - w / 2, 0), width - w)
        draw.text((left, gap + bar_h + 2), label, fill="black", font=font)
    return np.vstack([overlay, np.asarray(strip)])


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # torch tensors
        return value.tolist()
    return str(value)


def _stem(path: Path, used: dict[str, int]) -> str:
    """File stem, made unique within this run (a/cat.png and b/cat.png -> cat, cat-2)."""
    stem = path.stem or "image"
    used[stem] = used.get(stem, 0) + 1
    return stem if used[stem] == 1 else f"{stem}-{used[stem]}"


def _message(err: BaseException, name: str) -> str:
    text = " ".join(str(err).split())
    return text if text.startswith(name) else f"{name}: {text}"


def run_explain(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    methods, expanded = _methods(args.method, parser)
    if args.sign and args.colormap:
        if (args.sign == "signed") != (args.colormap in DIVERGING):
            kind = "a diverging" if args.sign == "signed" else "a sequential"
            choices = DIVERGING if args.sign == "signed" else SEQUENTIAL
            parser.error(f"--sign {args.sign} needs {kind} colormap ({', '.join(choices)}); "
                         f"got --colormap {args.colormap}")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _say(f"error: cannot create the output folder {out}: {err.strerror or err}")
        return 2

    start = time.perf_counter()
    try:
        model = load_model(args.model)
    except ValueError as err:
        _say(f"error: {err}")
        return 1
    _say(f"model {model.name} loaded in {time.perf_counter() - start:.1f} s"
         + (f" ({model.card['format_label']}, weights sha256 {model.fingerprint[:12]}…)"
            if model.card.get("format_label") else ""))
    if args.target is not None and args.target >= len(model.labels):
        _say(f"error: --target must be a class index below {len(model.labels)}; got {args.target}")
        return 2
    usable = available_methods(model)
    if expanded:
        for name in [m for m in methods if usable.get(m)]:
            _say(f"skipping {name}: {usable[name]}")
        methods = [m for m in methods if not usable.get(m)]

    failed = 0
    written = 0
    stems: dict[str, int] = {}
    for path in map(Path, args.images):
        name = str(path)
        try:
            image = load_image(path, name=name)
            prediction = model.predict(image, k=5)
        except ValueError as err:
            _say(f"error: {_message(err, name)}")
            failed += 1
            continue
        except Exception as err:  # noqa: BLE001  one bad image must not stop the batch
            _unexpected(err, name, args)
            failed += 1
            continue
        stem = _stem(path, stems)
        record = {
            "image": name, "image_hash": image_hash(image), "image_size": list(image.size),
            "model": model.describe(),
            "prediction": [{"index": i, "label": label, "probability": p} for i, label, p in prediction],
            "methods": {}, "errors": {},
        }
        for method in methods:
            where = f"{name} [{method}]"
            tick = time.perf_counter()
            try:
                if usable.get(method):
                    raise ValueError(f"{method} cannot run on this model: {usable[method]}.")
                exp = explain(model, image, method=method, target=args.target, **_params_for(method, args))
                sign = _sign_for(method, args)
                rendered = render(exp.saliency, exp.image, sign=sign, colormap=args.colormap, alpha=ALPHA,
                                  clip_percentile=CLIP_PERCENTILE, target_label=exp.target_label)
                png = f"{stem}_{method}.png"
                Image.fromarray(with_colorbar(rendered)).save(out / png, format="PNG")
            except (ValueError, OSError) as err:
                _say(f"error: {_message(err, where)}")
                record["errors"][method] = " ".join(str(err).split())
                failed += 1
                continue
            except Exception as err:  # noqa: BLE001
                record["errors"][method] = f"{type(err).__name__}: {err}"
                _unexpected(err, where, args)
                failed += 1
                continue
            written += 1
            record["methods"][method] = {
                **exp.record(), "png": png,
                "render": {"sign": rendered.sign, "colormap": rendered.colormap, "scale": rendered.scale,
                           "near_zero": rendered.near_zero, "legend": rendered.legend,
                           "clip_percentile": CLIP_PERCENTILE, "alpha": ALPHA},
            }
            _say(f"{name}: {method} {time.perf_counter() - tick:.1f} s -> {out / png}")
        try:
            (out / f"{stem}.json").write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
        except OSError as err:
            _say(f"error: {name}: cannot write {out / (stem + '.json')}: {err.strerror or err}")
            failed += 1
    _say(f"done in {time.perf_counter() - start:.1f} s: {written} map(s) written to {out}"
         + (f", {failed} failure(s)" if failed else ""))
    return 1 if failed else 0


def _unexpected(err: BaseException, where: str, args: argparse.Namespace) -> None:
    if args.traceback:
        traceback.print_exception(err, file=sys.stderr)
    _say(f"error: {where}: unexpected {type(err).__name__}: {err}"
         + ("" if args.traceback else " (run with --traceback for details)"))


# ---- stability and sanity: map checks per image and method ------------------------------------

def _ranged(low: float, high: float, whole: bool = False):
    def parse(text: str):
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {'whole ' if whole else ''}number, got {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {text}")
        return value
    return parse


def _add_check_commands(commands) -> None:
    """The ``stability`` and ``sanity`` subcommands (engine: saliency_core/metrics/)."""
    from .metrics import randomisation as rz
    from .metrics import stability as stab

    common = _Parser(add_help=False)
    common.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    common.add_argument("--method", action="append", required=True, metavar="NAME",
                        help=f"a method ({', '.join(METHODS)}) or 'all'; repeat for several")
    common.add_argument("--samples", type=_whole(1), help="SmoothGrad noisy samples (default 50)")
    common.add_argument("--steps", type=_whole(1), help="Integrated Gradients path steps (default 50)")
    common.add_argument("--seed", type=_whole(0), help="random seed of the methods' noise (default 0)")
    common.add_argument("--model", default="demo", metavar="PATH", help="model to check (default: demo)")
    common.add_argument("--out", metavar="FILE", help="also write the full results as JSON")
    common.add_argument("--traceback", action="store_true", help="print full tracebacks of unexpected errors")

    st = commands.add_parser(
        "stability", parents=[common], help="how much maps change under small changes of the image",
        description="For each image: K slightly changed copies (noise, brightness, contrast, shift, rotation, "
                    "JPEG); per method the mean Spearman rank correlation of |map|, top-k overlap and SSIM "
                    "with the original's map (shifts and rotations undone), and a verdict: stable, "
                    "unstable explanation or fragile prediction. One line per image and method on stdout.")
    d, t = stab.Perturbation(), stab.StabilityThresholds()
    st.add_argument("--variants", type=_ranged(1, stab.MAX_VARIANTS, whole=True), default=8, metavar="K",
                    help=f"number of changed copies, 1-{stab.MAX_VARIANTS} (default 8)")
    st.add_argument("--pixel-noise", type=_ranged(0, 0.5), default=d.pixel_noise, metavar="F",
                    help=f"Gaussian pixel noise, fraction of the pixel range (default {d.pixel_noise})")
    st.add_argument("--shift", type=_ranged(1, 64, whole=True), default=d.shift, metavar="PX",
                    help=f"shift in pixels (default {d.shift})")
    st.add_argument("--rotation", type=_ranged(0.1, 45), default=d.rotation, metavar="DEG",
                    help=f"rotation in degrees (default {d.rotation})")
    st.add_argument("--min-spearman", type=_ranged(0, 1), default=t.min_spearman, metavar="R",
                    help=f"stable if the mean rank correlation is at least this (default {t.min_spearman})")
    st.add_argument("--min-overlap", type=_ranged(0, 1), default=t.min_top_k_overlap, metavar="R",
                    help=f"... and the mean top-10%% overlap at least this (default {t.min_top_k_overlap})")
    st.add_argument("--max-drop", type=_ranged(0, 1), default=t.max_confidence_drop, metavar="P",
                    help="fragile if the class changes or its probability drops by more than this "
                         f"(default {t.max_confidence_drop})")
    st.set_defaults(run=run_stability)

    sa = commands.add_parser(
        "sanity", parents=[common], help="model parameter randomisation sanity check (Adebayo et al. 2018)",
        description="Re-initialise the model's layer blocks from the logits down (on a copy) and compare "
                    "each method's map with the trained model's; a method passes when its map decorrelates "
                    "(Spearman of |map| at the last step below the threshold). One line per image and "
                    "method on stdout.")
    sa.add_argument("--mode", choices=rz.MODES, default="cascading", help="default: cascading")
    sa.add_argument("--depth", metavar="N", help="blocks to re-initialise from the top, or 'all' "
                                                 "(default: the top half)")
    sa.add_argument("--threshold", type=_ranged(0.01, 1), default=rz.DEFAULT_THRESHOLD, metavar="R",
                    help=f"pass if the final rank correlation is below this (default {rz.DEFAULT_THRESHOLD})")
    sa.set_defaults(run=run_sanity)


def _check_setup(args, parser):
    """Model, usable methods and method parameters shared by ``stability`` and ``sanity``."""
    methods, expanded = _methods(args.method, parser)
    model = load_model(args.model)
    usable = available_methods(model)
    for name in [m for m in methods if usable.get(m)]:
        if not expanded:
            parser.error(f"{name} cannot run on this model: {usable[name]}")
        _say(f"skipping {name}: {usable[name]}")
    methods = [m for m in methods if not usable.get(m)]
    params = {k: getattr(args, k) for k in ("samples", "steps", "seed") if getattr(args, k) is not None}
    return model, methods, params


def _run_checks(args, parser, check, line, header) -> int:
    """Load, run ``check(model, path, methods, params)`` per image, print ``line(...)`` rows."""
    try:
        model, methods, params = _check_setup(args, parser)
    except ValueError as err:  # the model cannot be loaded
        _say(f"error: {err}")
        return 1
    failed, records = 0, {}
    print(header, flush=True)
    for path in args.images:
        tick = time.perf_counter()
        try:
            result = check(model, path, methods, params)
        except ValueError as err:
            _say(f"error: {_message(err, path)}")
            failed += 1
            continue
        except Exception as err:  # noqa: BLE001  one bad image must not stop the batch
            _unexpected(err, path, args)
            failed += 1
            continue
        for method, message in result.errors.items():
            _say(f"error: {path} [{method}]: {' '.join(message.split())}")
            failed += 1
        for row in line(path, result):
            print(row, flush=True)
        records[path] = result.record()
        _say(f"{path}: {len(methods)} method(s) in {time.perf_counter() - tick:.1f} s")
    if args.out:
        try:
            Path(args.out).write_text(json.dumps({"model": model.describe(), "command": sys.argv[1:],
                                                  "images": records}, indent=2, default=_json_default) + "\n")
        except OSError as err:
            _say(f"error: cannot write {args.out}: {err.strerror or err}")
            failed += 1
    return 1 if failed else 0


def run_stability(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .metrics import stability as stab
    perturbation = stab.Perturbation(pixel_noise=args.pixel_noise, shift=args.shift, rotation=args.rotation)
    thresholds = stab.StabilityThresholds(min_spearman=args.min_spearman, min_top_k_overlap=args.min_overlap,
                                          max_confidence_drop=args.max_drop)

    def check(model, path, methods, params):
        return stab.stability_check(model, load_image(path, name=path), methods, count=args.variants,
                                    perturbation=perturbation, thresholds=thresholds, params=params)

    def line(path, result):
        steady = sum(v.steady for v in result.variants)
        for method, s in result.summary.items():
            yield (f"{Path(path).name:<18} {result.target_label[:16]:<16} {method:<22} {s.verdict:<21} "
                   f"{s.mean['spearman_abs']:>8.3f} {s.mean['top_k_overlap']:>8.3f} {s.mean['ssim']:>6.3f} "
                   f"{s.worst['spearman_abs']:>8.3f} {steady:>3}/{len(result.variants)}")

    header = (f"{'image':<18} {'explained class':<16} {'method':<22} {'verdict':<21} {'spearman':>8} "
              f"{'top10%':>8} {'ssim':>6} {'worst':>8} steady")
    return _run_checks(args, parser, check, line, header)


def run_sanity(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .metrics import randomisation as rz

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
        return rz.sanity_check(model, load_image(path, name=path), methods, mode=args.mode, depth=depth,
                               params=params, threshold=args.threshold, image_name=Path(path).name)

    def line(path, result):
        for method, v in result.verdicts().items():
            curve = " ".join(f"{x:.2f}" for x in result.curve(method))
            yield (f"{Path(path).name:<18} {method:<22} {'passes' if v.passed else 'fails':<7} "
                   f"{v.final_similarity:>8.3f} {v.blocks:>3}/{v.total_blocks:<3} {curve}")

    header = f"{'image':<18} {'method':<22} {'verdict':<7} {'spearman':>8} blocks  curve (Spearman of |map| per step)"
    return _run_checks(args, parser, check, line, header)
