"""``users``: reviewer accounts for the Review page (add, remove, list, unlock)."""

from __future__ import annotations

import argparse
import getpass
import sys

from ..review.auth import BCRYPT_ROUNDS, SignInThrottle, accounts_path, add_user, list_users, remove_user
from ..review.identity import ROLES


def add_users_command(commands, parser_class) -> None:
    """Add the ``users`` subcommand (add / remove / list) to the CLI's subparsers."""
    users = commands.add_parser(
        "users",
        help="manage reviewer accounts for the Review page",
        description="Manage the accounts file (SALIENCY_USERS, default ./data/users.toml) of bcrypt "
        "password hashes used to sign in to the Review page.",
    )
    actions = users.add_subparsers(dest="users_action", metavar="ACTION", parser_class=parser_class)
    add = actions.add_parser("add", help="add an account (prompts for the password)")
    add.add_argument("name", help="user name: letters, digits, . _ @ + -")
    add.add_argument(
        "--role",
        choices=ROLES,
        default="reviewer",
        help="viewer: looks, records nothing; reviewer: records decisions; admin: also every reviewer's "
        "notes and exports, unlocks, qualification sign-off (default: reviewer)",
    )
    add.add_argument("--admin", action="store_true", help="the same as --role admin")
    add.add_argument("--replace", action="store_true", help="set a new password / role for an existing user")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.add_argument("--rounds", type=int, default=BCRYPT_ROUNDS, help=argparse.SUPPRESS)
    remove = actions.add_parser("remove", help="remove an account")
    remove.add_argument("name")
    actions.add_parser("list", help="list accounts and roles")
    for p in (add, remove, actions.choices["list"]):
        p.add_argument("--file", help="accounts file (default: $SALIENCY_USERS or ./data/users.toml)")
    unlock = actions.add_parser(
        "unlock",
        help="clear a sign-in lockout (of a user name, or of a client with --client)",
        description="Clear the lockout that failed sign-ins put on a user name or a client, and its failure "
        "count; recorded in the review database's event log. Without NAME or --client: list the "
        "lockouts in force.",
    )
    unlock.add_argument("name", nargs="?", help="the user name to unlock")
    unlock.add_argument("--client", help="the client to unlock, as listed (ip:ADDRESS or session:ID)")
    unlock.add_argument(
        "--database",
        metavar="URL",
        help="review database (default: $DATABASE_URL, else the SQLite file $SALIENCY_DB)",
    )
    users.set_defaults(run=run_users)


def run_users(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Carry out ``users add|remove|list``; one-line messages on stderr, exit status 1 on failure."""

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        if args.users_action == "add":
            if args.password_stdin:
                password = sys.stdin.readline().rstrip("\r\n")
            else:
                password = getpass.getpass(f"Password for {args.name}: ")
                if getpass.getpass("Repeat it: ") != password:
                    say("error: the two passwords differ; nothing was changed")
                    return 1
            account = add_user(
                args.name,
                password,
                role="admin" if args.admin else args.role,
                path=args.file,
                rounds=args.rounds,
                replace=args.replace,
            )
            done = "updated" if args.replace else "added"
            say(f"{done} {account.name} ({account.role}) in {accounts_path(args.file)}")
        elif args.users_action == "remove":
            remove_user(args.name, path=args.file)
            say(f"removed {args.name} from {accounts_path(args.file)}")
        elif args.users_action == "list":
            for account in list_users(args.file):
                print(f"{account.name}\t{account.role}")
        elif args.users_action == "unlock":
            return _run_unlock(args, say)
        else:
            parser.error("users needs an action: add, remove, list or unlock")
    except (ValueError, EOFError) as err:
        say(f"error: {' '.join(str(err).split()) or 'no password given'}")
        return 1
    return 0


def _run_unlock(args: argparse.Namespace, say) -> int:
    from ..review.store import ReviewStore  # the event log lives in the review database

    if args.name is not None and args.client is not None:
        say("error: give a user name or --client, not both")
        return 1
    with ReviewStore(args.database) as store:
        throttle = SignInThrottle(store)
        if args.name is None and args.client is None:
            locks = throttle.locks()
            for lock in locks:
                print(f"{lock.scope}\t{lock.key}\tuntil {lock.until:%Y-%m-%d %H:%M} UTC\t{lock.detail}")
            if not locks:
                say("no sign-in lockout is in force")
            return 0
        try:
            actor = f"{getpass.getuser()} (command line)"
        except (OSError, KeyError):  # no user name in the environment or passwd
            actor = "operator (command line)"
        was = throttle.unlock(actor=actor, account=args.name, client=args.client)
    what = f"user name {args.name}" if args.name is not None else f"client {args.client}"
    say(f"unlocked {what}" if was else f"{what} was not locked; its failure count is cleared")
    return 0
