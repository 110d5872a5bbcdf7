"""Command line: ``python -m saliency_core explain IMAGE... --method NAME --out DIR``.

For each image and method it writes ``DIR/<stem>_<method>.png`` (the overlay with a colour
bar below it) and one ``DIR/<stem>.json`` with the prediction and everything needed to replay
each map. Progress and errors go to stderr, one line each; a bad image or a failing method
is reported and skipped, and the exit status is 1 if anything failed.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
import traceback
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import __version__
from .auth import add_users_command
from .explain import available_methods, explain
from .images import image_hash, load_image
from .methods import METHODS
from .devices import CHOICES as DEVICE_CHOICES
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
    ex.add_argument("images", nargs="+", metavar="IMAGE",
                    help="image files (PNG, JPEG, WebP, BMP, TIFF), or folders of them (searched recursively)")
    ex.add_argument("--method", action="append", required=True, metavar="NAME",
                    help=f"a method ({', '.join(METHODS)}) or 'all'; repeat for several")
    ex.add_argument("--samples", type=_whole(1), help="SmoothGrad noisy samples (default: the method's, 50)")
    ex.add_argument("--noise", type=_fraction,
                    help="SmoothGrad noise, a fraction of the image's value range (default 0.15)")
    ex.add_argument("--seed", type=_whole(0), help="random seed for noise (default 0)")
    ex.add_argument("--steps", type=_whole(1), help="Integrated Gradients path steps (default 50)")
    _forward_only_options(ex)
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
    _ray_options(ex, "explain")
    ex.set_defaults(run=run_explain)
    add_users_command(commands, _Parser)  # users add|remove|list: saliency_core/auth.py
    _add_check_commands(commands)         # stability, sanity: saliency_core/metrics/
    _add_validate_command(commands)       # validate: saliency_core/validate.py
    _add_report_commands(commands)        # report, replay: saliency_core/report.py
    for command in commands.choices.values():  # every command that loads a model
        if "--model" in command._option_string_actions:
            command.add_argument("--device", choices=DEVICE_CHOICES, default=None,
                                 help="where to compute: auto (a CUDA GPU when there is one), cpu or cuda "
                                      "(default: $SALIENCY_DEVICE, else auto)")
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


METHOD_FLAGS = ("samples", "noise", "seed", "steps", "window", "stride", "masks")


def _forward_only_options(command) -> None:
    """Occlusion's square and step and RISE's mask count."""
    command.add_argument("--window", type=_whole(1), help="occlusion: side of the hidden square in pixels (default 32)")
    command.add_argument("--stride", type=_whole(1), help="occlusion: step between squares in pixels (default 16)")
    command.add_argument("--masks", type=_whole(1), help="RISE: random masks averaged (default 1000)")


def _params_for(method: str, args: argparse.Namespace) -> dict:
    """Parameters given on the command line that this method takes (others would be rejected)."""
    given = {k: getattr(args, k) for k in METHOD_FLAGS if getattr(args, k, None) is not None}
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


def _ray_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--ray``, ``--workers`` and ``--resume`` (saliency_core/distributed.py)."""
    group = parser.add_argument_group("scaling out (optional extra: pip install -r requirements-ray.txt)")
    group.add_argument("--ray", metavar="ADDRESS",
                       help=f"{what} on a Ray cluster: 'auto' (the cluster 'ray start' started on this machine), "
                            "HOST:PORT of its head node, or 'local' (a private cluster on this "
                            "machine). Images and the model are read by the workers: paths must be the same on "
                            "every node. Without it everything runs here, in this process")
    group.add_argument("--workers", type=_whole(1), metavar="N",
                       help="model-holding Ray workers (default: one per GPU of the cluster, else one per CPU)")
    group.add_argument("--threads", type=_whole(1), default=1, metavar="T",
                       help="torch threads (and CPUs reserved) per Ray worker (default 1). Results equal a local "
                            "run's to the last bit when the thread counts match: OMP_NUM_THREADS=1 for the local run")
    group.add_argument("--resume", action="store_true",
                       help="keep what an earlier --ray run into the same --out folder finished (same model, data "
                            "and settings) and compute only the missing images")


def _check_ray_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if not args.ray and (args.workers is not None or args.resume or args.threads != 1):
        parser.error("--workers, --threads and --resume go with --ray ADDRESS")


def _absolute(source: str) -> str:
    """A model source the Ray workers can load: 'demo' or an absolute path."""
    return source if source == "demo" else str(Path(source).resolve())


def _image_files(given: list[str]) -> list[Path]:
    """The images given: files as they are, folders as the image files in them (recursively, in name order)."""
    from .annotations import IMAGE_SUFFIXES
    paths = []
    for item in map(Path, given):
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                            and not any(part.startswith(".") for part in p.relative_to(item).parts))
        else:
            paths.append(item)
    return paths


def _crash(err: BaseException) -> dict:
    """An unexpected error as plain data (it may have to travel from a Ray worker)."""
    return {"type": type(err).__name__, "message": str(err), "traceback": "".join(traceback.format_exception(err))}


def _explain_image(model, source, name: str, methods: list[str], usable: dict, args: argparse.Namespace):
    """Explain one image with each method, yielding what happened in order: ``("failed", message)``
    or ``("crashed", where, crash)`` if the image cannot be read; else ``("image", record)``, then
    per method ``("map", method, png bytes, explanation record, render record, seconds)``,
    ``("error", method, message, reason)`` or ``("crashed", where, crash, method)``.

    The local run and the Ray workers (saliency_core/distributed.py) both call this;
    ``_ExplainWriter`` turns the events into files and lines, on the machine that runs the command.
    """
    try:
        image = load_image(source, name=name)
        prediction = model.predict(image, k=5)
    except ValueError as err:
        yield ("failed", _message(err, name))
        return
    except Exception as err:  # noqa: BLE001  one bad image must not stop the batch
        yield ("crashed", name, _crash(err))
        return
    yield ("image", {
        "image": name, "image_hash": image_hash(image), "image_size": list(image.size),
        "model": model.describe(),
        "prediction": [{"index": i, "label": label, "probability": p} for i, label, p in prediction],
        "methods": {}, "errors": {},
    })
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
            png = io.BytesIO()
            Image.fromarray(with_colorbar(rendered)).save(png, format="PNG")
        except (ValueError, OSError) as err:
            yield ("error", method, _message(err, where), " ".join(str(err).split()))
            continue
        except Exception as err:  # noqa: BLE001
            yield ("crashed", where, _crash(err), method)
            continue
        yield ("map", method, png.getvalue(), exp.record(),
               {"sign": rendered.sign, "colormap": rendered.colormap, "scale": rendered.scale,
                "near_zero": rendered.near_zero, "legend": rendered.legend,
                "clip_percentile": CLIP_PERCENTILE, "alpha": ALPHA},
               time.perf_counter() - tick)


class _ExplainWriter:
    """Writes what ``_explain_image`` reports as it comes: one PNG per map, one JSON per image,
    one stderr line per map or error; counts maps written and failures."""

    def __init__(self, out: Path, args: argparse.Namespace):
        self.out, self.args = out, args
        self.stems: dict[str, int] = {}
        self.written = self.failed = 0

    def image(self, name: str, events) -> tuple[str | None, int, int]:
        """Returns (file stem or None if the image could not be read, maps written, failures)."""
        stem, record, written, failed = None, None, 0, 0
        for event in events:
            kind = event[0]
            if kind == "failed":
                _say(f"error: {event[1]}")
                failed += 1
            elif kind == "image":
                record, stem = event[1], _stem(Path(name), self.stems)
            elif kind == "error":
                _, method, message, reason = event
                _say(f"error: {message}")
                record["errors"][method] = reason
                failed += 1
            elif kind == "crashed":
                if record is not None:
                    record["errors"][event[3]] = f"{event[2]['type']}: {event[2]['message']}"
                _unexpected_report(event[1], event[2], self.args)
                failed += 1
            elif kind == "map":
                _, method, png_bytes, entry, rendered, seconds = event
                png = f"{stem}_{method}.png"
                try:
                    (self.out / png).write_bytes(png_bytes)
                except OSError as err:
                    _say(f"error: {_message(err, f'{name} [{method}]')}")
                    record["errors"][method] = " ".join(str(err).split())
                    failed += 1
                    continue
                written += 1
                record["methods"][method] = {**entry, "png": png, "render": rendered}
                _say(f"{name}: {method} {seconds:.1f} s -> {self.out / png}")
        if record is not None:
            try:
                (self.out / f"{stem}.json").write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
            except OSError as err:
                _say(f"error: {name}: cannot write {self.out / (stem + '.json')}: {err.strerror or err}")
                failed += 1
        self.written += written
        self.failed += failed
        return stem, written, failed


def _runnable(model, methods: list[str]) -> list[str]:
    """``--method all``: leave out, with a line each, the methods ``model`` cannot run."""
    usable = available_methods(model)
    for name in [m for m in methods if usable.get(m)]:
        _say(f"skipping {name}: {usable[name]}")
    return [m for m in methods if not usable.get(m)]


def _make_folder(out: Path) -> bool:
    try:
        out.mkdir(parents=True, exist_ok=True)
        return True
    except OSError as err:
        _say(f"error: cannot create the output folder {out}: {err.strerror or err}")
        return False


def run_explain(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    methods, expanded = _methods(args.method, parser)
    _check_ray_options(args, parser)
    if args.sign and args.colormap:
        if (args.sign == "signed") != (args.colormap in DIVERGING):
            kind = "a diverging" if args.sign == "signed" else "a sequential"
            choices = DIVERGING if args.sign == "signed" else SEQUENTIAL
            parser.error(f"--sign {args.sign} needs {kind} colormap ({', '.join(choices)}); "
                         f"got --colormap {args.colormap}")
    out = Path(args.out)
    if not _make_folder(out):
        return 2

    start = time.perf_counter()
    try:
        model = load_model(args.model, device=args.device)
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
        methods = _runnable(model, methods)

    writer = _ExplainWriter(out, args)
    paths = _image_files(args.images)
    if args.ray:
        code = _explain_on_ray(args, model, methods, paths, writer, out)
        if code is not None:
            return code
    else:
        for path in paths:
            name = str(path)
            writer.image(name, _explain_image(model, path, name, methods, usable, args))
    _say(f"done in {time.perf_counter() - start:.1f} s: {writer.written} map(s) written to {out}"
         + (f", {writer.failed} failure(s)" if writer.failed else ""))
    return 1 if writer.failed else 0


def _explain_on_ray(args, model, methods, paths, writer: _ExplainWriter, out: Path) -> int | None:
    """``explain --ray``: the workers compute, this process writes in input order. None when it ran."""
    from . import distributed
    options = argparse.Namespace(**{k: getattr(args, k) for k in (*METHOD_FLAGS, "target", "colormap", "sign",
                                                                   "traceback")})
    key = {"command": "explain", "model": model.fingerprint, "methods": methods,
           "options": {k: v for k, v in vars(options).items() if k != "traceback"}}
    images = [(str(p), str(p.resolve())) for p in paths]

    def replay(item):
        if item.stem is not None:
            _stem(Path(item.image), writer.stems)
        writer.written += item.written
        writer.failed += item.failed

    def write(index, name, events):
        stem, written, failed = writer.image(name, events)
        return distributed.ExplainedImage(index=index, image=name, stem=stem, written=written, failed=failed)

    try:
        done = distributed.run_explain_ray(
            _absolute(args.model), images, methods, options, out, write, replay, key=key, address=args.ray,
            workers=args.workers, threads=args.threads, resume=args.resume, log=_say)
    except ValueError as err:
        _say(f"error: {err}")
        return 1
    except Exception as err:  # noqa: BLE001
        _unexpected(err, "explain --ray", args)
        return 1
    if len(done) != len(images):
        _say(f"error: only {len(done)} of {len(images)} image(s) came back from the cluster")
        return 1
    return None


def _unexpected(err: BaseException, where: str, args: argparse.Namespace) -> None:
    _unexpected_report(where, _crash(err), args)


def _unexpected_report(where: str, crash: dict, args: argparse.Namespace) -> None:
    if args.traceback:
        sys.stderr.write(crash["traceback"])
        sys.stderr.flush()
    _say(f"error: {where}: unexpected {crash['type']}: {crash['message']}"
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
    model = load_model(args.model, device=args.device)
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
                   f"{v.final_similarity:>8.3f} {v.blocks:>3}/{v.total_blocks:<3} {curve}"
                   + ("  (map zero at the last step)" if v.final_map_zero else ""))

    header = f"{'image':<18} {'method':<22} {'verdict':<7} {'spearman':>8} blocks  curve (Spearman of |map| per step)"
    return _run_checks(args, parser, check, line, header)


# ---- report and replay: saliency_core/report.py ---------------------------------------------------

def _add_report_commands(commands) -> None:
    """The ``report`` and ``replay`` subcommands."""
    rp = commands.add_parser(
        "report", help="a self-contained HTML report (and PDF) of images x methods",
        description="Compute each method's map for each image and write one self-contained HTML file "
                    "(pictures embedded, no external addresses, prints on A4) with a plain-language summary, "
                    "the model card, each method's parameters and known limits, the predictions and maps, and "
                    "a JSON block from which 'replay' recomputes every map. --pdf also writes a PDF.")
    rp.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, WebP, BMP, TIFF)")
    rp.add_argument("--methods", "--method", dest="methods", action="append", required=True, metavar="NAME",
                    help=f"methods, comma-separated or repeated ({', '.join(METHODS)}), or 'all'")
    rp.add_argument("--out", required=True, metavar="FILE", help="the HTML file to write")
    rp.add_argument("--pdf", metavar="FILE", help="also write the report as a PDF")
    rp.add_argument("--model", default="demo", metavar="PATH", help="'demo' (default), a model file or a model card")
    rp.add_argument("--title", default=None, help="title on the first page (default 'Saliency report')")
    rp.add_argument("--samples", type=_whole(1), help="SmoothGrad noisy samples (default 50)")
    rp.add_argument("--noise", type=_fraction, help="SmoothGrad noise, a fraction of the value range (default 0.15)")
    rp.add_argument("--seed", type=_whole(0), help="random seed for noise (default 0)")
    rp.add_argument("--steps", type=_whole(1), help="Integrated Gradients path steps (default 50)")
    rp.add_argument("--target", type=_whole(0), metavar="IDX", help="class index to explain (default: the predicted class)")
    for name, what in (("sanity", "the JSON written by 'sanity --out'"), ("stability", "the JSON written by "
                       "'stability --out'"), ("validation", "validation metrics"), ("reviews", "review decisions")):
        rp.add_argument(f"--{name}", metavar="FILE", help=f"add a section from {what} (JSON or CSV rows)")
    rp.add_argument("--traceback", action="store_true", help="print full tracebacks of unexpected errors")
    rp.set_defaults(run=run_report)

    rr = commands.add_parser(
        "replay", help="recompute every map of a report and say whether it matches",
        description="Read the JSON block of a report made by 'report' (or the Report page), load the model it "
                    "names, recompute every map with the recorded image, method, parameters, seed and class, "
                    "and print one line per map: match or mismatch, with the largest difference. Exit status "
                    "0 only if every map matches.")
    rr.add_argument("report", metavar="REPORT", help="the report's HTML file")
    rr.add_argument("--model", metavar="PATH", help="load the model from here instead of the recorded source "
                                                    "(its fingerprint must still match)")
    rr.add_argument("--tolerance", type=_ranged(0, 1), default=0.0, metavar="R",
                    help="also accept maps whose largest difference is at most R x the map's largest value "
                         "(default 0: the float32 numbers must be identical)")
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
        raise ValueError(f"--{kind} {path}: cannot read it as JSON or CSV ({' '.join(str(err).split())}).") from None
    if isinstance(data, dict) and isinstance(data.get("images"), dict):
        rows = []
        for image, rec in data["images"].items():
            if kind == "sanity":
                rows += [{"image": Path(image).name, **v} for v in (rec.get("verdicts") or {}).values()]
            else:
                rows += [{"image": Path(image).name, "method": m, **s} for m, s in (rec.get("methods") or {}).items()]
        return rows
    return data


def run_report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from . import report as rp
    methods, expanded = _methods(args.methods, parser)
    start = time.perf_counter()
    try:
        extras = {k: _result_rows(getattr(args, k), k) for k in ("sanity", "stability", "validation", "reviews")
                  if getattr(args, k)}
        for k, rows in extras.items():
            rp.table_rows(rows)  # shape check before the maps are computed
        model = load_model(args.model, device=args.device)
    except ValueError as err:
        _say(f"error: {err}")
        return 1
    if args.target is not None and args.target >= len(model.labels):
        _say(f"error: --target must be a class index below {len(model.labels)}; got {args.target}")
        return 2
    if expanded:
        methods = _runnable(model, methods)
    params = {k: getattr(args, k) for k in ("samples", "noise", "seed", "steps") if getattr(args, k) is not None}

    def progress(done, total, label):
        _say(f"[{done}/{total}] {label}")

    try:
        stems = [Path(p).name for p in args.images]
        names = stems if len(set(stems)) == len(stems) else list(args.images)   # file names when unique
        report = rp.build_report(model, list(zip(names, args.images)), methods, params=params, target=args.target,
                                 model_source=args.model if args.model == "demo" else str(Path(args.model).resolve()),
                                 title=args.title, progress=progress, **extras)
        sizes = report.write(args.out, args.pdf)
    except ValueError as err:
        _say(f"error: {err}")
        return 1
    except Exception as err:  # noqa: BLE001
        _unexpected(err, "report", args)
        return 1
    failed = 0
    for name, message in report.skipped:
        _say(f"error: {message}")
        failed += 1
    for item in report.images:
        for method, message in item.errors.items():
            _say(f"error: {item.name} [{method}]: {message}")
            failed += 1
    written = ", ".join(f"{p} ({sizes[k] / 2**20:.1f} MiB)" for k, p in (("html", args.out), ("pdf", args.pdf)) if p)
    _say(f"done in {time.perf_counter() - start:.1f} s: {len(report.images)} image(s) x {len(report.methods)} "
         f"method(s) -> {written}" + (f", {failed} failure(s)" if failed else ""))
    return 1 if failed else 0


def run_replay(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from . import report as rp
    try:
        record = rp.read_replay(Path(args.report))
        source = args.model or record.get("model", {}).get("source", "demo")
        try:
            model = load_model(source, device=args.device)
        except ValueError as err:
            raise ValueError(f"{err} (the report names the model {source!r}; give --model PATH if it moved)") from None
    except ValueError as err:
        _say(f"error: {err}")
        return 1
    start = time.perf_counter()
    try:
        results = rp.replay(record, model, tolerance=args.tolerance, progress=lambda r: print(r.line(), flush=True))
    except Exception as err:  # noqa: BLE001
        _unexpected(err, args.report, args)
        return 1
    matched = sum(r.ok for r in results)
    if not results:
        _say("error: the report holds no maps to replay")
        return 1
    _say(f"{matched} of {len(results)} map(s) match"
         + ("" if matched == len(results) else f"; {len(results) - matched} do not")
         + f" ({time.perf_counter() - start:.1f} s)")
    return 0 if matched == len(results) else 1


# ---- validate: maps against annotations over a data set (saliency_core/validate.py) ------------

def _add_validate_command(commands) -> None:
    """The ``validate`` subcommand."""
    from .metrics import faithfulness as fa
    from .metrics import localisation as lo

    va = commands.add_parser(
        "validate", help="score maps against annotated regions over a data set (50+ images)",
        description="For each annotated image: predict, compute each method's map for the predicted class, "
                    "score it against the annotated region (pointing game, relevance mass, relevance rank "
                    "accuracy, top-k IoU) and with deletion/insertion curves, beside a centre-bias Gaussian "
                    "and a random map. Writes DIR/per_image.csv, DIR/summary.csv (method x metric: mean, CI, "
                    "gain over the centre baseline), DIR/summary_table.csv, DIR/skipped.csv and "
                    "DIR/validation.json. Exit status 1 if any item was skipped.")
    source = va.add_argument_group("data set (one of)")
    source.add_argument("--images", metavar="DIR", help="folder of images (searched recursively) or a ZIP")
    source.add_argument("--annotations", metavar="FILE",
                        help="CSV boxes (image,x_min,y_min,x_max,y_max[,label]), Pascal VOC XML, COCO JSON, "
                             "a folder of these or of mask PNGs (matched by file stem), or a ZIP")
    source.add_argument("--demo", action="store_true",
                        help="the bundled demo: 5 scikit-image photos with hand-drawn boxes (a demonstration, "
                             "not a validation)")
    source.add_argument("--pasted", type=_whole(1), metavar="N",
                        help="the synthetic benchmark: N scikit-image object photos pasted at random places on "
                             "real textures, exact boxes by construction")
    source.add_argument("--pasted-seed", type=_whole(0), default=0, metavar="S", help="its seed (default 0)")
    va.add_argument("--methods", "--method", dest="methods", action="append", required=True, metavar="NAME",
                    help=f"methods, comma-separated or repeated ({', '.join(METHODS)}), or 'all'")
    va.add_argument("--samples", type=_whole(1), help="SmoothGrad noisy samples (default 50)")
    va.add_argument("--noise", type=_fraction, help="SmoothGrad noise, a fraction of the value range (default 0.15)")
    va.add_argument("--seed", type=_whole(0), default=0,
                    help="seed of the methods' noise, the random baseline, tie breaks and the bootstrap (default 0)")
    va.add_argument("--steps", type=_whole(1), help="Integrated Gradients path steps (default 50)")
    _forward_only_options(va)
    va.add_argument("--tolerance", type=_ranged(0, 224), default=lo.POINTING_TOLERANCE, metavar="PX",
                    help=f"pointing game tolerance in pixels of the model input (default {lo.POINTING_TOLERANCE:g})")
    va.add_argument("--top-k", type=_ranged(0.001, 1), default=lo.TOP_K, metavar="F",
                    help=f"share of most relevant pixels for the top-k IoU (default {lo.TOP_K:g})")
    va.add_argument("--no-faithfulness", action="store_true",
                    help="skip the deletion/insertion curves (the slow part)")
    va.add_argument("--step", type=_ranged(0.0001, 0.5), default=0.05, metavar="F",
                    help="deletion/insertion: share of pixels changed per step (default 0.05; Petsiuk et al. "
                         "used 224 px of 224x224 = 0.0045)")
    va.add_argument("--deletion-replacement", choices=fa.REPLACEMENTS, default=fa.DELETION_REPLACEMENT,
                    help=f"what deleted pixels become (default {fa.DELETION_REPLACEMENT}: the image's mean colour)")
    va.add_argument("--insertion-replacement", choices=fa.REPLACEMENTS, default=fa.INSERTION_REPLACEMENT,
                    help=f"what insertion starts from (default {fa.INSERTION_REPLACEMENT})")
    va.add_argument("--interval", choices=("bootstrap", "t"), default="bootstrap",
                    help="95%% CI: percentile bootstrap over images (default) or Student t")
    va.add_argument("--model", default="demo", metavar="PATH", help="'demo' (default), a model file or a model card")
    va.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    va.add_argument("--traceback", action="store_true", help="print full tracebacks of unexpected errors")
    _ray_options(va, "score the images")
    va.set_defaults(run=run_validate)


def run_validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from . import annotations as an
    from .data import demo_dataset, pasted_objects
    from .validate import ValidationSettings, run_validation

    chosen = [bool(args.images or args.annotations), args.demo, args.pasted is not None]
    if sum(chosen) != 1:
        parser.error("give one data set: --images DIR --annotations FILE, --demo, or --pasted N")
    if args.images and not args.annotations and not str(args.images).lower().endswith(".zip"):
        parser.error("--images DIR needs --annotations FILE (only a ZIP can hold both)")
    if args.annotations and not args.images:
        parser.error("--annotations needs --images DIR")
    methods, expanded = _methods(args.methods, parser)
    _check_ray_options(args, parser)
    out = Path(args.out)
    if not _make_folder(out):
        return 2
    start = time.perf_counter()
    if args.demo:
        make_dataset = demo_dataset
    elif args.pasted is not None:
        make_dataset = partial(pasted_objects, args.pasted, seed=args.pasted_seed)
    elif args.ray:  # the workers list the folder themselves: absolute paths
        make_dataset = partial(an.dataset_from_folder, str(Path(args.images).resolve()),
                               str(Path(args.annotations).resolve()) if args.annotations else None)
    else:
        make_dataset = partial(an.dataset_from_folder, args.images, args.annotations)
    try:
        model = load_model(args.model, device=args.device)
        dataset = make_dataset()
    except ValueError as err:
        _say(f"error: {err}")
        return 1
    if expanded:
        methods = _runnable(model, methods)
    params = {k: getattr(args, k) for k in METHOD_FLAGS if getattr(args, k, None) is not None}
    settings = ValidationSettings(
        methods=methods, params=params, tolerance=args.tolerance, top_k=args.top_k,
        faithfulness=not args.no_faithfulness, step_fraction=args.step,
        deletion_replacement=args.deletion_replacement, insertion_replacement=args.insertion_replacement,
        seed=args.seed, interval=args.interval, worst=0)
    _say(f"{dataset.description} ({len(dataset)} annotated image(s), {len(dataset.skipped)} item(s) skipped "
         f"so far); model {model.name}")

    shown = [0]

    def progress(done, total, eta):  # every 5 % (a Ray run reports whole blocks at a time)
        step = max(1, total // 20)
        if done and (done == total or done // step > shown[0]):
            shown[0] = done // step
            _say(f"{done}/{total} images" + (f", about {eta:.0f} s left" if eta else ""))

    try:
        if args.ray:
            from .distributed import run_validation_ray
            result = run_validation_ray(_absolute(args.model), make_dataset, settings, out, address=args.ray,
                                        workers=args.workers, threads=args.threads, resume=args.resume,
                                        progress=progress, log=_say, model=model, listing=dataset)
        else:
            result = run_validation(model, dataset, settings, progress=progress)
    except ValueError as err:
        _say(f"error: {err}")
        return 1
    except Exception as err:  # noqa: BLE001
        _unexpected(err, "validate", args)
        return 1
    for s in result.skipped:
        _say(f"skipped: {s.item}: {s.reason}")
    for w in result.warnings:
        _say(f"warning: {w}")
    try:
        result.per_image().to_csv(out / "per_image.csv", index=False)
        result.summary().to_csv(out / "summary.csv", index=False)
        table = result.summary_table()
        table.to_csv(out / "summary_table.csv", index=False)
        result.skipped_table().to_csv(out / "skipped.csv", index=False)
        record = {**result.record(), "command": sys.argv[1:]}
        (out / "validation.json").write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
    except OSError as err:
        _say(f"error: cannot write to {out}: {err.strerror or err}")
        return 1
    if not table.empty:
        print(table.to_string(index=False), flush=True)
    print(result.summary()["interval"].iloc[0] if not table.empty else "no image could be scored", flush=True)
    _say(f"done in {time.perf_counter() - start:.1f} s ({result.seconds / max(result.images, 1):.2f} s per image): "
         f"{result.images} of {result.total} image(s) scored, tables in {out}")
    return 1 if result.skipped or not result.images else 0
