"""Command line: ``python -m saliency_core COMMAND`` (or ``saliency-lens COMMAND``).

One module per command; each is a thin caller of the engine, the pipeline and the evaluation
runs, and nothing below this package imports it. Progress and errors go to stderr, one line each;
a bad image or a failing method is reported and skipped, and the exit status is 1 if anything failed.
"""

from __future__ import annotations

import argparse
import sys

from .._version import __version__
from ..engine.devices import CHOICES as DEVICE_CHOICES
from .audit import add_audit_command
from .checks import add_check_commands
from .common import PROG, Parser, say
from .compare import add_compare_command
from .explain import add_explain_command
from .gallery import add_gallery_command
from .qualify import add_qualify_command
from .report import add_report_commands
from .users import add_users_command
from .validate import add_validate_command


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Saliency Lens engine: saliency maps for image classifiers.")
    parser.add_argument("--version", action="version", version=f"saliency_core {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    add_explain_command(commands)
    add_users_command(commands, Parser)  # users add|remove|list|unlock: saliency_core/review/auth.py
    add_audit_command(commands, Parser)  # audit verify: saliency_core/review/store.py
    add_check_commands(commands)  # stability, sanity: saliency_core/evaluation/
    add_validate_command(commands)  # validate: saliency_core/evaluation/validate.py
    add_report_commands(commands)  # report, replay: saliency_core/report.py
    add_qualify_command(commands)  # qualify: saliency_core/evaluation/qualification.py
    add_compare_command(commands)  # compare: saliency_core/cli/compare.py (adds its own --device)
    add_gallery_command(commands)  # gallery: saliency_core/gallery/ (the page's result store)
    for command in commands.choices.values():  # every command that loads a model
        if "--model" in command._option_string_actions:
            command.add_argument(
                "--device",
                choices=DEVICE_CHOICES,
                default=None,
                help="where to compute: auto (a CUDA GPU when there is one), cpu or cuda "
                "(default: $SALIENCY_DEVICE, else auto)",
            )
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
        say("interrupted")
        return 130
