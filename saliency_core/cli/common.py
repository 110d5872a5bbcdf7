"""What every command shares: the parser class, number checks, one-line messages, image lists,
and the method-parameter flags, derived from each method's ``defaults`` (so every parameter the
dashboard offers exists on every command that computes maps)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..engine.explain import available_methods
from ..engine.methods import METHODS
from ..pipeline import crash

PROG = "python -m saliency_core"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def whole_number(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def unit_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, got {text}")
    return value


def say(line: str) -> None:
    print(" ".join(str(line).split()), file=sys.stderr, flush=True)


def chosen_methods(requested: list[str], parser: argparse.ArgumentParser) -> tuple[list[str], bool]:
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


def unique_stem(path: Path, used: dict[str, int]) -> str:
    """File stem, made unique within this run (a/cat.png and b/cat.png -> cat, cat-2)."""
    stem = path.stem or "image"
    used[stem] = used.get(stem, 0) + 1
    return stem if used[stem] == 1 else f"{stem}-{used[stem]}"


def error_message(err: BaseException, name: str) -> str:
    text = " ".join(str(err).split())
    return text if text.startswith(name) else f"{name}: {text}"


def add_ray_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--ray``, ``--workers`` and ``--resume`` (saliency_core/distributed.py)."""
    group = parser.add_argument_group("scaling out (optional extra: pip install -r requirements-ray.txt)")
    group.add_argument(
        "--ray",
        metavar="ADDRESS",
        help=f"{what} on a Ray cluster: 'auto' (the cluster 'ray start' started on this machine), "
        "HOST:PORT of its head node, or 'local' (a private cluster on this "
        "machine). Images and the model are read by the workers: paths must be the same on "
        "every node. Without it everything runs here, in this process",
    )
    group.add_argument(
        "--workers",
        type=whole_number(1),
        metavar="N",
        help="model-holding Ray workers (default: one per GPU of the cluster, else one per CPU)",
    )
    group.add_argument(
        "--threads",
        type=whole_number(1),
        default=1,
        metavar="T",
        help="torch threads (and CPUs reserved) per Ray worker (default 1). Results equal a local "
        "run's to the last bit when the thread counts match: OMP_NUM_THREADS=1 for the local run",
    )
    group.add_argument(
        "--resume",
        action="store_true",
        help="keep what an earlier --ray run into the same --out folder finished (same model, data "
        "and settings) and compute only the missing images",
    )


def check_ray_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if not args.ray and (args.workers is not None or args.resume or args.threads != 1):
        parser.error("--workers, --threads and --resume go with --ray ADDRESS")


def absolute_source(source: str) -> str:
    """A model source the Ray workers can load: 'demo' (or a demo variant) or an absolute path."""
    from ..engine.demo_variants import VARIANTS

    return source if source == "demo" or source in VARIANTS else str(Path(source).resolve())


def image_files(given: list[str]) -> list[Path]:
    """The images given: files as they are, folders as the image files in them (recursively, in
    name order)."""
    from ..evaluation.annotations import IMAGE_SUFFIXES

    paths = []
    for item in map(Path, given):
        if item.is_dir():
            paths += sorted(
                p
                for p in item.rglob("*")
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(item).parts)
            )
        else:
            paths.append(item)
    return paths


def make_folder(out: Path) -> bool:
    try:
        out.mkdir(parents=True, exist_ok=True)
        return True
    except OSError as err:
        say(f"error: cannot create the output folder {out}: {err.strerror or err}")
        return False


def say_unexpected(err: BaseException, where: str, args: argparse.Namespace) -> None:
    say_unexpected_report(where, crash(err), args)


def say_unexpected_report(where: str, crash: dict, args: argparse.Namespace) -> None:
    if args.traceback:
        sys.stderr.write(crash["traceback"])
        sys.stderr.flush()
    say(
        f"error: {where}: unexpected {crash['type']}: {crash['message']}"
        + ("" if args.traceback else " (run with --traceback for details)")
    )


def ranged(low: float, high: float, whole: bool = False):
    def parse(text: str):
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a {'whole ' if whole else ''}number, got {text!r}"
            ) from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {text}")
        return value

    return parse


def _number(low: float):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and value >= low):
            raise argparse.ArgumentTypeError(f"must be a finite number of at least {low:g}, got {text}")
        return value

    return parse


FIXED_BY_NAME = {"variant"}  # chosen by the method's name (smoothgrad_squared, vargrad), not a flag


def _method_parameters() -> dict[str, list]:
    """Parameter name -> [(method, default), ...] over the registry."""
    found: dict[str, list] = {}
    for method in METHODS.values():
        for name, default in method.defaults.items():
            if name not in FIXED_BY_NAME:
                found.setdefault(name, []).append((method, default))
    return found


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """One flag per method parameter (``--samples``, ``--noise``, ``--steps``, ``--baseline``...),
    typed by its defaults; a command's own flag of the same name wins. Unset flags leave each
    method its own default."""
    group = parser.add_argument_group(
        "method parameters (each method takes the ones it knows; unset: the method's own default)"
    )
    for name, uses in sorted(_method_parameters().items()):
        flag = "--" + name.replace("_", "-")
        if flag in parser._option_string_actions:
            continue
        values = [d for _, d in uses]
        kinds = {type(v) for v in values if v is not None}
        labels = ", ".join(dict.fromkeys(m.label for m, _ in uses))
        shown = ", ".join(dict.fromkeys("the model's" if v is None else str(v) for v in values))
        text = f"{labels} (default {shown})"
        if kinds == {bool}:
            group.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        elif kinds == {int}:
            group.add_argument(
                flag, dest=name, type=whole_number(1 if min(values) >= 1 else 0), metavar="N", help=text
            )
        elif kinds <= {int, float} and kinds:
            fraction = all(0 <= v <= 1 for v in values)
            group.add_argument(
                flag, dest=name, type=unit_fraction if fraction else _number(0), metavar="X", help=text
            )
        else:
            group.add_argument(flag, dest=name, metavar="VALUE", help=text)


def given_params(args: argparse.Namespace) -> dict:
    """The method parameters given on the command line (each method later takes its own)."""
    return {
        name: getattr(args, name) for name in _method_parameters() if getattr(args, name, None) is not None
    }


def runnable_methods(model, methods: list[str]) -> list[str]:
    """``--method all``: leave out, with a line each, the methods ``model`` cannot run."""
    usable = available_methods(model)
    for name in [m for m in methods if usable.get(m)]:
        say(f"skipping {name}: {usable[name]}")
    return [m for m in methods if not usable.get(m)]


def say_failures(skipped, images) -> int:
    """One ``error:`` line per image left out (``(name, message)``) and per failed map (each item's
    ``errors``: method -> message); returns how many."""
    failed = 0
    for _, message in skipped:
        say(f"error: {message}")
        failed += 1
    for item in images:
        for method, message in item.errors.items():
            say(f"error: {item.name} [{method}]: {message}")
            failed += 1
    return failed
