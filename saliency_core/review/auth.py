"""Accounts: an operator-managed TOML file of salted bcrypt hashes, roles viewer/reviewer/admin.

The file (``SALIENCY_USERS``, default ``./data/users.toml``) looks like::

    # Saliency Lens reviewer accounts
    [users."alice"]
    role = "admin"
    hash = "$2b$12$..."

Operators manage it with ``python -m saliency_core users add NAME [--role viewer|reviewer|admin]``
(prompts for the password), ``users remove NAME`` and ``users list``. Passwords are never stored,
only bcrypt hashes with a per-password random salt. What each role may do, and the roles of
people who sign in through the organisation's identity provider: ``identity``.

Sign-in throttling (``SignInThrottle``): ``ACCOUNT_FAILURES`` wrong passwords for one user name
within ``WINDOW`` lock that name for ``LOCKOUT``, and ``CLIENT_FAILURES`` from one client (IP
address, else browser session) lock that client; while locked even the right password is
refused, before any password check. Failures, lockouts and unlocks are appended to the review
database's chained event log (``store.ReviewStore.append_event``); an admin clears a lock with
``python -m saliency_core users unlock NAME`` or on the Review page.

Example:
    >>> add_user("alice", "correct horse battery", role="admin", path="users.toml")
    Account(name='alice', role='admin', via='password')
    >>> authenticate("alice", "correct horse battery", path="users.toml").is_admin
    True
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
import threading
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import bcrypt

from .identity import ROLES, Account
from .schema import Event  # the store's event record; here unchained (no hashes)

DEFAULT_ACCOUNTS = os.path.join("data", "users.toml")
BCRYPT_ROUNDS = 12  # cost factor: 2**12 rounds, about a quarter second per check
MIN_PASSWORD = 8  # characters
MAX_PASSWORD_BYTES = 72  # bcrypt uses at most 72 bytes; longer ones are refused, not cut
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")
WRONG = "Wrong user name or password. Nothing was recorded; try again."
ACCOUNT_FAILURES = 5  # wrong passwords for one user name within WINDOW lock it
CLIENT_FAILURES = 10  # wrong passwords from one client within WINDOW lock the client
WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)


class AuthError(ValueError):
    """Sign-in failed or an account operation was refused (plain words)."""


class WrongPassword(AuthError):
    """The user name or password is wrong (the message never says which)."""


class SignInLocked(AuthError):
    """Sign-in refused without a password check: the user name or the client is locked."""


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
        raise ValueError(
            f'The accounts file {file} should have [users."NAME"] tables; got {type(users).__name__}.'
        )
    out = {}
    for name, entry in users.items():
        if not isinstance(entry, dict) or entry.get("role", "reviewer") not in ROLES:
            raise ValueError(
                f"The accounts file {file}: user {name!r} needs a role among {', '.join(ROLES)}."
            )
        out[name] = {"role": entry.get("role", "reviewer"), "hash": str(entry.get("hash", ""))}
    return out


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise AuthError(
            "Expected a user name of 1-100 letters, digits or . _ @ + - (starting with a letter "
            f"or digit); got {name!r}."
        )
    return name


def _check_password(password: str) -> bytes:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AuthError(
            f"Expected a password of at least {MIN_PASSWORD} characters; "
            f"got {len(password) if isinstance(password, str) else 0}."
        )
    data = password.encode("utf-8")
    if len(data) > MAX_PASSWORD_BYTES:
        raise AuthError(
            f"Expected a password of at most {MAX_PASSWORD_BYTES} bytes (bcrypt's limit); got {len(data)}."
        )
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
    lines = [
        "# Saliency Lens reviewer accounts: bcrypt hashes, never passwords.",
        "# Manage with: python -m saliency_core users add NAME [--admin] | remove NAME | list",
        "",
    ]
    for name in sorted(users):
        lines += [
            f"[users.{json.dumps(name)}]",
            f"role = {json.dumps(users[name]['role'])}",
            f"hash = {json.dumps(users[name]['hash'])}",
            "",
        ]
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=file.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, file)  # atomic: readers see the old or the new file, never half
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def add_user(
    name: str,
    password: str,
    *,
    role: str = "reviewer",
    path: str | os.PathLike | None = None,
    rounds: int = BCRYPT_ROUNDS,
    replace: bool = False,
) -> Account:
    """Add an account (or, with ``replace``, set a new password / role).

    Args:
        name: user name. password: at least 8 characters, at most 72 bytes.
        role: "viewer", "reviewer" or "admin". path: accounts file (see ``accounts_path``).
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
                raise AuthError(
                    f"User {name!r} already exists in {file}; use --replace to set a new password."
                )
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
        raise AuthError(
            f"No reviewer accounts are configured ({accounts_path(path)} is missing or empty). "
            "The operator adds them with: python -m saliency_core users add NAME"
        )
    data = (password or "").encode("utf-8")
    entry = users.get(name or "")
    if entry is None or len(data) > MAX_PASSWORD_BYTES or not entry["hash"]:
        bcrypt.checkpw(b"x", _dummy_hash())
        raise WrongPassword(WRONG)
    try:
        ok = bcrypt.checkpw(data, entry["hash"].encode("ascii"))
    except ValueError:  # a damaged hash in the file
        raise AuthError(
            f"The stored password hash of {name!r} is damaged; ask the operator to reset it."
        ) from None
    if not ok:
        raise WrongPassword(WRONG)
    return Account(name, entry["role"])


# ---- throttling --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lock:
    """An active lockout: ``scope`` "account" (``key`` = user name) or "client" (``key`` = client)."""

    scope: str
    key: str
    until: datetime
    detail: str = ""


class MemoryEvents:
    """The event-log interface of ``store.ReviewStore`` (``append_event``, ``events``) in this
    process only, for when no review database can be opened. Lost when the app restarts."""

    def __init__(self):
        self._items: list[Event] = []
        self._lock = threading.Lock()

    def append_event(
        self,
        kind: str,
        *,
        account: str = "",
        client: str = "",
        actor: str = "",
        until: datetime | None = None,
        detail: str = "",
        at: datetime | None = None,
    ):
        with self._lock:
            item = Event(
                len(self._items) + 1,
                at or datetime.now(UTC),
                kind,
                str(account)[:200],
                str(client)[:200],
                str(actor)[:200],
                until,
                str(detail)[:2000],
                prev_hash="",
                row_hash="",
            )
            self._items.append(item)
            return item

    def events(self, kinds=None, account=None, client=None, since=None):
        with self._lock:
            items = list(self._items)
        return [
            e
            for e in items
            if (kinds is None or e.kind in kinds)
            and (account is None or e.account == str(account)[:200])
            and (client is None or e.client == str(client)[:200])
            and (since is None or e.at >= since)
        ]


def _until_words(until: datetime, now: datetime) -> str:
    minutes = max(1, round((until - now).total_seconds() / 60))
    return f"{until:%H:%M} UTC (in {minutes} minute{'s' if minutes != 1 else ''})"


class SignInThrottle:
    """Password sign-in with per-account and per-client lockouts, recorded in an event log.

    Args:
        log: where events go and are counted from: a ``store.ReviewStore`` (shared by every
            process using the database) or a ``MemoryEvents``.
        account_failures, client_failures: wrong passwords within ``window`` that lock the user
            name / the client for ``lockout``.
        clock: returns the current UTC time (tests pass their own).

    A user name is counted whether or not it exists, so a lockout says nothing about which names
    are real. A successful sign-in clears the user name's count, not the client's.

    Example:
        >>> throttle = SignInThrottle(store)
        >>> throttle.sign_in("alice", "wrong", client="ip:203.0.113.7")
        Traceback (most recent call last):
        WrongPassword: Wrong user name or password. Nothing was recorded; try again.
    """

    def __init__(
        self,
        log,
        *,
        account_failures: int = ACCOUNT_FAILURES,
        client_failures: int = CLIENT_FAILURES,
        window: timedelta = WINDOW,
        lockout: timedelta = LOCKOUT,
        clock=None,
    ):
        self.log = log
        self.account_failures, self.client_failures = int(account_failures), int(client_failures)
        self.window, self.lockout = window, lockout
        self.clock = clock or (lambda: datetime.now(UTC))

    def _append(self, kind: str, now: datetime, **fields):
        return self.log.append_event(kind, at=now, **fields)

    def _lock(self, scope: str, key: str, now: datetime) -> Lock | None:
        field = {scope: key}
        found = self.log.events(
            kinds=(f"{scope}_locked", f"{scope}_unlocked"), since=now - self.lockout, **field
        )
        if found and found[-1].kind == f"{scope}_locked" and found[-1].until and found[-1].until > now:
            return Lock(scope, key, found[-1].until, found[-1].detail)
        return None

    def lock_of(self, account: str, client: str) -> Lock | None:
        """The lock that stops ``account`` signing in from ``client`` now, or None."""
        now = self.clock()
        return self._lock("account", str(account)[:200], now) or self._lock("client", str(client)[:200], now)

    def _failures(self, scope: str, key: str, now: datetime) -> int:
        field = {scope: key}
        resets = (f"{scope}_locked", f"{scope}_unlocked") + (("signin",) if scope == "account" else ())
        since = now - self.window
        for e in self.log.events(kinds=resets, since=since, **field):
            since = max(since, e.at)
        # strictly after a reset: the failure that caused a lockout is written with the lockout's time
        return sum(e.at > since for e in self.log.events(kinds=("signin_failed",), since=since, **field))

    def sign_in(
        self, name: str, password: str, client: str, path: str | os.PathLike | None = None
    ) -> Account:
        """``authenticate`` unless a lock applies; failures and lockouts go to the event log.

        Args:
            name, password: what was typed. client: who typed it ("ip:ADDRESS" or "session:ID").
            path: the accounts file.
        Returns:
            the Account.
        Raises:
            SignInLocked: the user name or the client is locked (no password check was made).
            WrongPassword: wrong name or password (the message adds when this locked the name).
            AuthError: no accounts configured, or a damaged hash.
        """
        name, client = str(name or "")[:200], str(client or "")[:200]
        now = self.clock()
        lock = self._lock("account", name, now) or self._lock("client", client, now)
        if lock is not None:
            raise SignInLocked(self.message(lock, now))
        try:
            account = authenticate(name, password, path)
        except WrongPassword:
            self._append("signin_failed", now, account=name, client=client)
            locked = []
            for scope, key, limit in (
                ("account", name, self.account_failures),
                ("client", client, self.client_failures),
            ):
                failures = self._failures(scope, key, now)
                if failures >= limit:
                    until = now + self.lockout
                    self._append(
                        f"{scope}_locked",
                        now,
                        account=name if scope == "account" else "",
                        client=client if scope == "client" else "",
                        until=until,
                        detail=f"{failures} failed sign-ins within {self.window.total_seconds() / 60:g} "
                        "minutes",
                    )
                    locked.append(self.message(Lock(scope, key, until), now, just_locked=True))
            raise WrongPassword(" ".join([WRONG, *locked])) from None
        self._append("signin", now, account=name, client=client)
        return account

    def message(self, lock: Lock, now: datetime | None = None, just_locked: bool = False) -> str:
        """What a person trying to sign in is told about ``lock`` (``just_locked``: this failure
        caused it)."""
        when = _until_words(lock.until, now or self.clock())
        if just_locked:
            whom = "this user name" if lock.scope == "account" else "signing in from this device or network"
            return (
                f"After {self.account_failures if lock.scope == 'account' else self.client_failures} failed "
                f"sign-ins, {whom} is locked until {when}. An admin can unlock it sooner."
            )
        if lock.scope == "account":
            return (
                f"Too many failed sign-ins for this user name: it is locked until {when}. No password was "
                "checked. Try again then, or ask an admin to unlock it."
            )
        return (
            f"Too many failed sign-ins from this device or network: signing in from here is paused until "
            f"{when}. No password was checked. Try again then, or ask an admin to unlock it."
        )

    def locks(self) -> list[Lock]:
        """Every lock in force now (for the admin view), accounts first."""
        now = self.clock()
        latest: dict[tuple[str, str], object] = {}
        kinds = ("account_locked", "account_unlocked", "client_locked", "client_unlocked")
        for e in self.log.events(kinds=kinds, since=now - self.lockout):
            scope = e.kind.split("_")[0]
            latest[scope, e.account if scope == "account" else e.client] = e
        return sorted(
            (
                Lock(scope, key, e.until, e.detail)
                for (scope, key), e in latest.items()
                if e.kind.endswith("_locked") and e.until and e.until > now
            ),
            key=lambda lock: (lock.scope != "account", lock.key),
        )

    def unlock(self, *, actor: str, account: str | None = None, client: str | None = None) -> bool:
        """Clear the lock of ``account`` or ``client`` (and its failure count), recorded with ``actor``.

        Returns:
            True if a lock was in force.
        """
        if (account is None) == (client is None):
            raise ValueError("Expected exactly one of a user name or a client to unlock.")
        now = self.clock()
        scope, key = ("account", str(account)[:200]) if account is not None else ("client", str(client)[:200])
        was = self._lock(scope, key, now) is not None
        self._append(
            f"{scope}_unlocked",
            now,
            account=key if scope == "account" else "",
            client=key if scope == "client" else "",
            actor=actor,
            detail="lock cleared" if was else "no lock was in force; failure count cleared",
        )
        return was


def current_role(name: str, path: str | os.PathLike | None = None) -> str | None:
    """The role the accounts file gives ``name`` now, or None when it lists no such account (or
    cannot be read): a signed-in session asks again at every request, so a removed account or a
    changed role applies at once."""
    try:
        entry = load_accounts(path).get(name)
    except ValueError:
        return None
    return entry["role"] if entry else None


# ---- command line: python -m saliency_core users ... ----------------------------------------------
