"""``explain``: overlay PNGs with their colour bar and a JSON record (schema 2) per image, through
the pipeline; locally or on a Ray cluster."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..engine.methods import METHODS
from ..engine.models import load_model
from ..engine.render import DIVERGING, SEQUENTIAL, SIGN_MODES
from ..pipeline import ImageResult, RenderOptions, dumps, explain_images
from .common import (
    absolute_source,
    add_method_options,
    add_ray_options,
    check_ray_options,
    chosen_methods,
    error_message,
    given_params,
    image_files,
    make_folder,
    runnable_methods,
    say,
    say_unexpected,
    say_unexpected_report,
    unique_stem,
    whole_number,
)


def add_explain_command(commands) -> None:
    ex = commands.add_parser(
        "explain",
        help="overlay PNGs and a JSON record per image",
        description="Write DIR/<image stem>_<method>.png per image and method, and DIR/<image stem>.json "
        "with the prediction and every parameter needed to replay each map.",
    )
    ex.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files (PNG, JPEG, WebP, BMP, TIFF), or folders of them (searched recursively)",
    )
    ex.add_argument(
        "--method",
        action="append",
        required=True,
        metavar="NAME",
        help=f"a method ({', '.join(METHODS)}) or 'all'; repeat for several",
    )
    ex.add_argument(
        "--target",
        type=whole_number(0),
        metavar="IDX",
        help="class index to explain (default: the predicted class)",
    )
    ex.add_argument(
        "--colormap",
        choices=SEQUENTIAL + DIVERGING,
        help="colours (default inferno, or balance for signed maps)",
    )
    ex.add_argument(
        "--sign",
        choices=SIGN_MODES,
        help="which values to draw (default: signed for signed methods, else absolute)",
    )
    ex.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    ex.add_argument(
        "--model",
        default="demo",
        metavar="PATH",
        help="'demo' (default), a model file (TorchScript .pt, torch.export .pt2, or a "
        "state dict with a card of the same name) or a model card (.json, .yaml); "
        "see docs/models.md",
    )
    ex.add_argument("--traceback", action="store_true", help="print full tracebacks of unexpected errors")
    add_method_options(ex)
    add_ray_options(ex, "explain")
    ex.set_defaults(run=run_explain)


def _options(args: argparse.Namespace) -> tuple[dict, RenderOptions]:
    """Method parameters and overlay options of an ``explain`` run, as plain data (they travel
    to Ray workers)."""
    params = given_params(args)
    return params, RenderOptions(sign=args.sign, colormap=args.colormap)


class _ExplainWriter:
    """Writes each ``ImageResult`` as it comes: one PNG per map, one JSON record per image (the
    pipeline's schema), one stderr line per map or error; counts maps written and failures."""

    def __init__(self, out: Path, args: argparse.Namespace):
        self.out, self.args = out, args
        self.stems: dict[str, int] = {}
        self.written = self.failed = 0

    def image(
        self, result: ImageResult, seconds: dict[str, float] | None = None
    ) -> tuple[str | None, int, int]:
        """Returns (file stem or None if the image could not be read, maps written, failures)."""
        name = result.name
        if result.failed is not None:
            say(f"error: {result.failed}")
            self.failed += 1
            return None, 0, 1
        if result.crashed is not None:
            say_unexpected_report(name, result.crashed, self.args)
            self.failed += 1
            return None, 0, 1
        stem, written, failed, files = unique_stem(Path(name), self.stems), 0, 0, {}
        for method, message in result.errors.items():
            say(f"error: {error_message(ValueError(message), f'{name} [{method}]')}")
            failed += 1
        for method, crashed in result.crashes.items():
            say_unexpected_report(f"{name} [{method}]", crashed, self.args)
            failed += 1
        for method, png_bytes in result.pngs.items():
            png = f"{stem}_{method}.png"
            try:
                (self.out / png).write_bytes(png_bytes)
            except OSError as err:
                say(f"error: {error_message(err, f'{name} [{method}]')}")
                result.errors[method] = " ".join(str(err).split())
                result.maps.pop(method, None)
                failed += 1
                continue
            written += 1
            files[method] = {"png": png}
            say(f"{name}: {method} {result.maps[method].seconds:.1f} s -> {self.out / png}")
        try:
            (self.out / f"{stem}.json").write_text(dumps(result.record(files)))
        except OSError as err:
            say(f"error: {name}: cannot write {self.out / (stem + '.json')}: {err.strerror or err}")
            failed += 1
        self.written += written
        self.failed += failed
        return stem, written, failed


def run_explain(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    methods, expanded = chosen_methods(args.method, parser)
    check_ray_options(args, parser)
    if args.sign and args.colormap:
        if (args.sign == "signed") != (args.colormap in DIVERGING):
            kind = "a diverging" if args.sign == "signed" else "a sequential"
            choices = DIVERGING if args.sign == "signed" else SEQUENTIAL
            parser.error(
                f"--sign {args.sign} needs {kind} colormap ({', '.join(choices)}); "
                f"got --colormap {args.colormap}"
            )
    out = Path(args.out)
    if not make_folder(out):
        return 2

    start = time.perf_counter()
    try:
        model = load_model(args.model, device=args.device)
    except ValueError as err:
        say(f"error: {err}")
        return 1
    say(
        f"model {model.name} loaded in {time.perf_counter() - start:.1f} s"
        + (
            f" ({model.card['format_label']}, weights sha256 {model.fingerprint[:12]}…)"
            if model.card.get("format_label")
            else ""
        )
    )
    if args.target is not None and args.target >= len(model.labels):
        say(f"error: --target must be a class index below {len(model.labels)}; got {args.target}")
        return 2
    if expanded:
        methods = runnable_methods(model, methods)

    writer = _ExplainWriter(out, args)
    paths = image_files(args.images)
    if args.ray:
        code = _explain_on_ray(args, model, methods, paths, writer, out)
        if code is not None:
            return code
    else:
        params, render_options = _options(args)
        for result in explain_images(
            model, [(str(p), p) for p in paths], methods, params, args.target, render=render_options
        ):
            writer.image(result)
    say(
        f"done in {time.perf_counter() - start:.1f} s: {writer.written} map(s) written to {out}"
        + (f", {writer.failed} failure(s)" if writer.failed else "")
    )
    return 1 if writer.failed else 0


def _explain_on_ray(args, model, methods, paths, writer: _ExplainWriter, out: Path) -> int | None:
    """``explain --ray``: the workers compute, this process writes in input order. None when it ran."""
    from .. import distributed

    params, render_options = _options(args)
    options = {"params": params, "target": args.target, "render": render_options}
    key = {
        "command": "explain",
        "model": model.fingerprint,
        "methods": methods,
        "options": {"params": params, "target": args.target, "sign": args.sign, "colormap": args.colormap},
    }
    images = [(str(p), str(p.resolve())) for p in paths]

    def replay(item):
        if item.stem is not None:
            unique_stem(Path(item.image), writer.stems)
        writer.written += item.written
        writer.failed += item.failed

    def write(index, name, result):
        stem, written, failed = writer.image(result)
        return distributed.ExplainedImage(index=index, image=name, stem=stem, written=written, failed=failed)

    try:
        done = distributed.run_explain_ray(
            absolute_source(args.model),
            images,
            methods,
            options,
            out,
            write,
            replay,
            key=key,
            address=args.ray,
            workers=args.workers,
            threads=args.threads,
            resume=args.resume,
            log=say,
        )
    except ValueError as err:
        say(f"error: {err}")
        return 1
    except Exception as err:
        say_unexpected(err, "explain --ray", args)
        return 1
    if len(done) != len(images):
        say(f"error: only {len(done)} of {len(images)} image(s) came back from the cluster")
        return 1
    return None
