"""``audit verify``: check the review database's tamper-evident audit chain."""

from __future__ import annotations

import argparse
import sys

from ..engine.safe_text import json_text
from ..review.store import ReviewStore


def add_audit_command(commands, parser_class) -> None:
    """Add the ``audit`` subcommand (``verify``) to the CLI's subparsers."""
    cmd = commands.add_parser(
        "audit",
        help="check the review audit log for tampering",
        description="Walk the hash chains of the review audit log and sign-in events and compare every "
        "decision with its last audit row. Exit status 0 if everything verifies, 1 otherwise "
        "(the first broken row is named).",
    )
    actions = cmd.add_subparsers(dest="audit_action", metavar="ACTION", parser_class=parser_class)
    verify = actions.add_parser("verify", help="verify the chain and the decisions")
    verify.add_argument(
        "--database",
        metavar="URL",
        help="database URL (default: $DATABASE_URL, else the SQLite file $SALIENCY_DB)",
    )
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    cmd.set_defaults(run=run_audit)


def run_audit(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if getattr(args, "audit_action", None) != "verify":
        parser.error("audit needs an action: verify")
    try:
        with ReviewStore(args.database) as store:
            check = store.verify()
            where = store.where
    except ValueError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr, flush=True)
        return 1
    if args.json:
        print(json_text({**check.record(), "database": where}, indent=2))
    else:
        print(
            f"{where}: {check.message}"
            + ("" if check.ok else f" (first broken: {check.table} row {check.row})")
        )
        if check.ok:
            print(f"last audit hash {check.head}")
    return 0 if check.ok else 1
