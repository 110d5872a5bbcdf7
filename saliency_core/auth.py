"""Reviewer accounts: an operator-managed TOML file of salted bcrypt hashes, roles reviewer/admin.

The file (``SALIENCY_USERS``, default ``./data/users.toml``) looks like::

    # Saliency Lens reviewer accounts
    [users."alice"]
    role = "admin"
    hash = "$2b$12$..."

Operators manage it with ``python -m saliency_core users add NAME [--admin]`` (prompts for the
password), ``users remove NAME`` and ``users list``. Passwords are never stored, only bcrypt
hashes with a per-password random salt. When the operator configures an identity provider for
Streamlit (``[auth]`` in ``.streamlit/secrets.toml``), reviewers may sign in with it instead;
``role_for`` then gives the role the accounts file lists for that e-mail (reviewer otherwise).

Example:
    >>> add_user("alice", "correct horse battery", role="admin", path="users.toml")
    Account(name='alice', role='admin', via='password')
    >>> authenticate("alice", "correct horse battery", path="users.toml").is_admin
    True
"""
from __future__ import annotations

import argparse
import fcntl
import getpass
import json
import os
import re
import sys
import tempfile
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import bcrypt

ROLES = ("reviewer", "admin")
DEFAULT_ACCOUNTS = os.path.join("data", "users.toml")
BCRYPT_ROUNDS = 12            # cost factor: 2**12 rounds, about a quarter second per check
MIN_PASSWORD = 8              # characters
MAX_PASSWORD_BYTES = 72       # bcrypt uses at most 72 bytes; longer ones are refused, not cut
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")
WRONG = "Wrong user name or password. Nothing was recorded; try again."


class AuthError(ValueError):
    """Sign-in failed or an account operation was refused (plain words)."""


@dataclass(frozen=True)
class Account:
    """A signed-in person: ``name`` (user name or e-mail), ``role`` and how they signed in."""

    name: str
    role: str
    via: str = "password"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def accounts_path(path: str | os.PathLike | None = None) -> Path:
    """The accounts file: ``path``, else ``SALIENCY_USERS``, else ``./data/users.toml``."""
    return Path(path or os.environ.get("SALIENCY_USERS") or DEFAULT_ACCOUNTS)


def load_accounts(path: str | os.PathLike | None = None) -> dict[str, dict]:
    """{name: {"role": ..., "hash": ...}} from the accounts file; {} if it does not exist.

    Raises:
        ValueError: the file cannot be read or is not valid TOML of the expected shape.
    """
    file = accounts_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise ValueError(f"Cannot read the accounts file {file}: {err.strerror or err}.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"The accounts file {file} is not valid TOML ({err}).") from None
    users = data.get("users", {})
    if not isinstance(users, dict):
        raise ValueError(f"The accounts file {file} should have [users.\"NAME\"] tables; got {type(users).__name__}.")
    out = {}
    for name, entry in users.items():
        if not isinstance(entry, dict) or entry.get("role", "reviewer") not in ROLES:
            raise ValueError(f"The accounts file {file}: user {name!r} needs role = \"reviewer\" or \"admin\".")
        out[name] = {"role": entry.get("role", "reviewer"), "hash": str(entry.get("hash", ""))}
    return out


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise AuthError("Expected a user name of 1-100 letters, digits or . _ @ + - (starting with a letter "
                        f"or digit); got {name!r}.")
    return name


def _check_password(password: str) -> bytes:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AuthError(f"Expected a password of at least {MIN_PASSWORD} characters; "
                        f"got {len(password) if isinstance(password, str) else 0}.")
    data = password.encode("utf-8")
    if len(data) > MAX_PASSWORD_BYTES:
        raise AuthError(f"Expected a password of at most {MAX_PASSWORD_BYTES} bytes (bcrypt's limit); "
                        f"got {len(data)}.")
    return data


def hash_password(password: str, rounds: int = BCRYPT_ROUNDS) -> str:
    """Salted bcrypt hash (``$2b$...``) of ``password``; a new random salt every call."""
    return bcrypt.hashpw(_check_password(password), bcrypt.gensalt(rounds)).decode("ascii")


@contextmanager
def _locked(file: Path):
    """Exclusive lock on a side file, so two operators' edits do not overwrite each other."""
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file.with_name(file.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _save(file: Path, users: dict[str, dict]) -> None:
    lines = ["# Saliency Lens reviewer accounts: bcrypt hashes, never passwords.",
             "# Manage with: python -m saliency_core users add NAME [--admin] | remove NAME | list", ""]
    for name in sorted(users):
        lines += [f"[users.{json.dumps(name)}]", f"role = {json.dumps(users[name]['role'])}",
                  f"hash = {json.dumps(users[name]['hash'])}", ""]
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=file.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, file)   # atomic: readers see the old or the new file, never half
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def add_user(name: str, password: str, *, role: str = "reviewer", path: str | os.PathLike | None = None,
             rounds: int = BCRYPT_ROUNDS, replace: bool = False) -> Account:
    """Add an account (or, with ``replace``, set a new password / role).

    Args:
        name: user name. password: at least 8 characters, at most 72 bytes.
        role: "reviewer" or "admin". path: accounts file (see ``accounts_path``).
        rounds: bcrypt cost (4-31). replace: overwrite an existing account.
    Returns:
        the Account.
    Raises:
        AuthError: bad name, password or role, or the user exists and ``replace`` is False.
    """
    _check_name(name)
    if role not in ROLES:
        raise AuthError(f"Expected a role among {', '.join(ROLES)}; got {role!r}.")
    hashed = hash_password(password, rounds)
    file = accounts_path(path)
    try:
        with _locked(file):
            users = load_accounts(file)
            if name in users and not replace:
                raise AuthError(f"User {name!r} already exists in {file}; use --replace to set a new password.")
            users[name] = {"role": role, "hash": hashed}
            _save(file, users)
    except OSError as err:
        raise AuthError(f"Cannot write the accounts file {file}: {err.strerror or err}.") from None
    return Account(name, role)


def remove_user(name: str, path: str | os.PathLike | None = None) -> None:
    """Remove an account. Raises AuthError if there is no such user."""
    file = accounts_path(path)
    try:
        with _locked(file):
            users = load_accounts(file)
            if name not in users:
                raise AuthError(f"No user {name!r} in {file}.")
            del users[name]
            _save(file, users)
    except OSError as err:
        raise AuthError(f"Cannot write the accounts file {file}: {err.strerror or err}.") from None


def list_users(path: str | os.PathLike | None = None) -> list[Account]:
    """All accounts in the file, sorted by name."""
    return [Account(n, u["role"]) for n, u in sorted(load_accounts(path).items())]


@lru_cache(maxsize=1)
def _dummy_hash() -> bytes:
    return bcrypt.hashpw(b"no such user", bcrypt.gensalt(BCRYPT_ROUNDS))


def authenticate(name: str, password: str, path: str | os.PathLike | None = None) -> Account:
    """Check a user name and password against the accounts file.

    Returns:
        the Account.
    Raises:
        AuthError: ``WRONG`` for an unknown user and a wrong password alike (a bcrypt check runs
            either way, so the answer time does not reveal which names exist); a different
            message when no accounts are configured.

    Example:
        >>> authenticate("alice", "wrong password")
        Traceback (most recent call last):
        AuthError: Wrong user name or password. Nothing was recorded; try again.
    """
    users = load_accounts(path)
    if not users:
        raise AuthError(f"No reviewer accounts are configured ({accounts_path(path)} is missing or empty). "
                        "The operator adds them with: python -m saliency_core users add NAME")
    data = (password or "").encode("utf-8")
    entry = users.get(name or "")
    if entry is None or len(data) > MAX_PASSWORD_BYTES or not entry["hash"]:
        bcrypt.checkpw(b"x", _dummy_hash())
        raise AuthError(WRONG)
    try:
        ok = bcrypt.checkpw(data, entry["hash"].encode("ascii"))
    except ValueError:   # a damaged hash in the file
        raise AuthError(f"The stored password hash of {name!r} is damaged; ask the operator to reset it.") from None
    if not ok:
        raise AuthError(WRONG)
    return Account(name, entry["role"])


def role_for(identity: str, path: str | os.PathLike | None = None) -> str:
    """Role of someone signed in through the identity provider: the role the accounts file lists
    for that name or e-mail, else "reviewer"."""
    try:
        entry = load_accounts(path).get(identity)
    except ValueError:
        return "reviewer"
    return entry["role"] if entry else "reviewer"


# ---- command line: python -m saliency_core users ... ----------------------------------------------
def add_users_command(commands, parser_class) -> None:
    """Add the ``users`` subcommand (add / remove / list) to the CLI's subparsers."""
    users = commands.add_parser(
        "users", help="manage reviewer accounts for the Review page",
        description="Manage the accounts file (SALIENCY_USERS, default ./data/users.toml) of bcrypt "
                    "password hashes used to sign in to the Review page.")
    actions = users.add_subparsers(dest="users_action", metavar="ACTION", parser_class=parser_class)
    add = actions.add_parser("add", help="add an account (prompts for the password)")
    add.add_argument("name", help="user name: letters, digits, . _ @ + -")
    add.add_argument("--admin", action="store_true", help="may see every reviewer's notes and export everything")
    add.add_argument("--replace", action="store_true", help="set a new password / role for an existing user")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.add_argument("--rounds", type=int, default=BCRYPT_ROUNDS, help=argparse.SUPPRESS)
    remove = actions.add_parser("remove", help="remove an account")
    remove.add_argument("name")
    actions.add_parser("list", help="list accounts and roles")
    for p in (add, remove, actions.choices["list"]):
        p.add_argument("--file", help="accounts file (default: $SALIENCY_USERS or ./data/users.toml)")
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
            account = add_user(args.name, password, role="admin" if args.admin else "reviewer",
                               path=args.file, rounds=args.rounds, replace=args.replace)
            done = "updated" if args.replace else "added"
            say(f"{done} {account.name} ({account.role}) in {accounts_path(args.file)}")
        elif args.users_action == "remove":
            remove_user(args.name, path=args.file)
            say(f"removed {args.name} from {accounts_path(args.file)}")
        elif args.users_action == "list":
            for account in list_users(args.file):
                print(f"{account.name}\t{account.role}")
        else:
            parser.error("users needs an action: add, remove or list")
    except (ValueError, EOFError) as err:
        say(f"error: {' '.join(str(err).split()) or 'no password given'}")
        return 1
    return 0
