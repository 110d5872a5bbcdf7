"""Review decisions and their audit log, in SQLite (default) or PostgreSQL, via SQLAlchemy Core.

Where the data lives:

- ``DATABASE_URL`` set (``postgresql://user:pass@host/db``): that PostgreSQL database.
- otherwise a SQLite file at ``SALIENCY_DB`` (default ``./data/reviews.sqlite``), in WAL mode
  with a busy timeout, ``synchronous=FULL``, and every write transaction started with
  ``BEGIN IMMEDIATE`` so writers queue instead of failing half-way.

Tables (created on first use):

- ``review_batches``: one row per batch: how its items were chosen, by whom, the model
  fingerprint and the methods with their parameters (fixed when the batch was opened).
- ``review_decisions``: one row per (batch, item image hash, reviewer), unique, so a double
  submit cannot create a second row. Holds the current decision, note, seconds spent,
  model fingerprint, methods + parameters, time and a ``version`` that counts its changes.
- ``review_audit``: append-only (database triggers refuse UPDATE and DELETE). Every create
  or change of a decision appends one row (who, which decision, from what to what, when) in
  the same transaction as the change itself, so the log and the decisions cannot disagree.
- ``review_events``: append-only as well: sign-in failures, successes, lockouts and unlocks
  (``auth.SignInThrottle``).

Tamper evidence: triggers stop the app's own connections, not someone with write access to the
database (SQLite's ``REPLACE INTO``, PostgreSQL with triggers disabled). So every audit and event
row carries ``row_hash`` = sha256 of its canonical JSON (all its fields, the previous row's hash
included) and each audit row records ``decision_hash``, the hash of the decision row as that
change left it. ``verify()`` (``python -m saliency_core audit verify``, the Review page's admin
view) walks both chains and compares every decision with its last audit row; it names the first
row that does not match. The hash of the last row (``head``) is printed and put in reports: a
copy kept elsewhere also exposes a rewrite of the whole chain.

Example:
    >>> store = ReviewStore("sqlite:////tmp/reviews.sqlite")
    >>> r = store.record("batch-1", item_hash, "cat.png", "alice", "accept", note="ears in focus",
    ...                  seconds=12.5, model_fingerprint=model.fingerprint, methods={"gradcam": {}})
    >>> r.action, r.decision.version
    ('created', 1)
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy import event, exc

from ..engine.safe_text import to_csv as _csv_text

DECISIONS = ("accept", "reject", "needs_expert")
DECISION_LABELS = {"accept": "Accept", "reject": "Reject", "needs_expert": "Needs expert"}
DEFAULT_SQLITE = os.path.join("data", "reviews.sqlite")
BUSY_TIMEOUT = 10.0   # seconds a SQLite writer waits for another writer before giving up
MAX_NOTE = 10_000     # characters
_PG_SCHEMA_LOCK = 724_531_001  # advisory lock id: one process creates the tables at a time
_PG_CHAIN_LOCK = 724_531_002   # advisory lock ids: one writer appends to a hash chain at a time
GENESIS = "0" * 64             # the "previous hash" of the first row of a chain
EVENT_KINDS = ("signin", "signin_failed", "account_locked", "client_locked", "account_unlocked",
               "client_unlocked", "chain_started")

metadata = sa.MetaData()

batches = sa.Table(
    "review_batches", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("source", sa.String(500), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_fingerprint", sa.String(128), nullable=False),
    sa.Column("methods", sa.JSON, nullable=False),
)

decisions = sa.Table(
    "review_decisions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch", sa.String(200), nullable=False),
    sa.Column("item_hash", sa.String(128), nullable=False),
    sa.Column("item_name", sa.String(500), nullable=False),
    sa.Column("reviewer", sa.String(200), nullable=False),
    sa.Column("decision", sa.String(20), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("model_fingerprint", sa.String(128), nullable=False),
    sa.Column("methods", sa.JSON, nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.UniqueConstraint("batch", "item_hash", "reviewer", name="uq_review_decision"),
    sa.CheckConstraint("decision IN ('accept', 'reject', 'needs_expert')", name="ck_review_decision"),
)

audit = sa.Table(
    "review_audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("decision_id", sa.Integer, sa.ForeignKey("review_decisions.id"), nullable=False),
    sa.Column("batch", sa.String(200), nullable=False),
    sa.Column("item_hash", sa.String(128), nullable=False),
    sa.Column("item_name", sa.String(500), nullable=False),
    sa.Column("reviewer", sa.String(200), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(10), nullable=False),      # "create" or "change"
    sa.Column("old_decision", sa.String(20)),
    sa.Column("new_decision", sa.String(20), nullable=False),
    sa.Column("old_note", sa.Text),
    sa.Column("new_note", sa.Text, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),        # the decision's version after this change
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    # tamper evidence (nullable only so that older databases can gain the columns; see _migrate)
    sa.Column("decision_hash", sa.String(64)),               # the decision row after this change
    sa.Column("prev_hash", sa.String(64)),                   # row_hash of the row before
    sa.Column("row_hash", sa.String(64)),                    # sha256 of this row's canonical JSON
    sa.Index("ix_review_audit_batch", "batch"),
    sa.Index("ix_review_audit_decision", "decision_id"),
)

events = sa.Table(
    "review_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),        # one of EVENT_KINDS
    sa.Column("account", sa.String(200), nullable=False),    # the user name typed / locked / unlocked
    sa.Column("client", sa.String(200), nullable=False),     # "ip:ADDRESS" or "session:ID"
    sa.Column("actor", sa.String(200), nullable=False),      # who unlocked; "" for sign-in events
    sa.Column("until", sa.DateTime(timezone=True)),          # end of a lockout
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("row_hash", sa.String(64), nullable=False),
    sa.Index("ix_review_events_account", "account", "at"),
    sa.Index("ix_review_events_client", "client", "at"),
)

# Append-only: the database itself refuses to edit or delete audit rows and decisions.
_SQLITE_AUDIT_NO_UPDATE = ("CREATE TRIGGER review_audit_no_update BEFORE UPDATE ON review_audit "
                           "BEGIN SELECT RAISE(ABORT, 'the review audit log is append-only'); END")
for _table, _sql in (
    (audit, _SQLITE_AUDIT_NO_UPDATE),
    (audit, "CREATE TRIGGER review_audit_no_delete BEFORE DELETE ON review_audit "
            "BEGIN SELECT RAISE(ABORT, 'the review audit log is append-only'); END"),
    (events, "CREATE TRIGGER review_events_no_update BEFORE UPDATE ON review_events "
             "BEGIN SELECT RAISE(ABORT, 'the review audit log is append-only'); END"),
    (events, "CREATE TRIGGER review_events_no_delete BEFORE DELETE ON review_events "
             "BEGIN SELECT RAISE(ABORT, 'the review audit log is append-only'); END"),
):
    event.listen(_table, "after_create", sa.DDL(_sql).execute_if(dialect="sqlite"))
event.listen(decisions, "after_create", sa.DDL(
    "CREATE TRIGGER review_decisions_no_delete BEFORE DELETE ON review_decisions "
    "BEGIN SELECT RAISE(ABORT, 'review decisions are never deleted'); END").execute_if(dialect="sqlite"))
event.listen(audit, "after_create", sa.DDL(
    "CREATE OR REPLACE FUNCTION review_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION 'the review audit log is append-only and decisions are never deleted'; END $$"
).execute_if(dialect="postgresql"))
for _sql in (
    "CREATE TRIGGER review_audit_no_change BEFORE UPDATE OR DELETE ON review_audit "
    "FOR EACH ROW EXECUTE FUNCTION review_refuse_change()",
    "CREATE TRIGGER review_decisions_no_delete BEFORE DELETE ON review_decisions "
    "FOR EACH ROW EXECUTE FUNCTION review_refuse_change()",
):
    event.listen(audit, "after_create", sa.DDL(_sql).execute_if(dialect="postgresql"))
event.listen(events, "after_create", sa.DDL(
    "CREATE OR REPLACE FUNCTION review_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION 'the review audit log is append-only and decisions are never deleted'; END $$"
).execute_if(dialect="postgresql"))
event.listen(events, "after_create", sa.DDL(
    "CREATE TRIGGER review_events_no_change BEFORE UPDATE OR DELETE ON review_events "
    "FOR EACH ROW EXECUTE FUNCTION review_refuse_change()").execute_if(dialect="postgresql"))


class StoreError(ValueError):
    """The review database cannot do what was asked; the message says why in plain words."""


class DecisionConflict(StoreError):
    """The decision changed (e.g. in another window) since the reviewer last saw it.

    ``current`` is the decision as it is now; nothing was written.
    """

    def __init__(self, message: str, current: "Decision"):
        super().__init__(message)
        self.current = current


@dataclass(frozen=True)
class Decision:
    """A reviewer's current decision on one item of a batch."""

    id: int
    batch: str
    item_hash: str
    item_name: str
    reviewer: str
    decision: str
    note: str
    seconds: float
    model_fingerprint: str
    methods: dict
    decided_at: datetime
    version: int

    @property
    def label(self) -> str:
        return DECISION_LABELS[self.decision]


@dataclass(frozen=True)
class AuditEntry:
    """One appended audit row: ``actor`` changed ``reviewer``'s decision from ``old_*`` to ``new_*``."""

    id: int
    decision_id: int
    batch: str
    item_hash: str
    item_name: str
    reviewer: str
    actor: str
    action: str
    old_decision: str | None
    new_decision: str
    old_note: str | None
    new_note: str
    seconds: float
    version: int
    at: datetime
    decision_hash: str | None = None
    prev_hash: str | None = None
    row_hash: str | None = None


@dataclass(frozen=True)
class Event:
    """One sign-in event: ``kind`` (``EVENT_KINDS``) for ``account`` from ``client``; lockouts
    carry ``until``, unlocks the ``actor`` who cleared them."""

    id: int
    at: datetime
    kind: str
    account: str
    client: str
    actor: str
    until: datetime | None
    detail: str
    prev_hash: str
    row_hash: str


@dataclass(frozen=True)
class AuditCheck:
    """What ``ReviewStore.verify`` found. ``ok``: both chains intact and every decision equal to
    its last audit row. Otherwise ``problem`` says in words what is wrong and ``table`` / ``row``
    name the first broken row (``review_audit``, ``review_events`` or ``review_decisions``).
    ``head``: the hash of the last audit row (keep a copy to detect a rewrite of the chain)."""

    ok: bool
    audit_rows: int
    event_rows: int
    decisions: int
    head: str
    problem: str | None = None
    table: str | None = None
    row: int | None = None

    @property
    def message(self) -> str:
        if self.ok:
            return (f"The audit log verified: {self.audit_rows} audit row(s) and {self.event_rows} sign-in "
                    f"event(s) form unbroken hash chains, and each of the {self.decisions} decision(s) matches "
                    f"its last audit row. Last hash {self.head[:16]}….")
        return f"The audit log did NOT verify: {self.problem}"

    def record(self) -> dict:
        return {"verified": self.ok, "audit_rows": self.audit_rows, "event_rows": self.event_rows,
                "decisions": self.decisions, "head": self.head, "problem": self.problem,
                "table": self.table, "row": self.row, "message": self.message}


@dataclass(frozen=True)
class Recorded:
    """What ``record`` did: ``action`` is "created", "changed" or "unchanged" (a repeat of the
    current decision and note, e.g. a double click: nothing written). ``audit_id`` is the
    audit row written, None when unchanged."""

    decision: Decision
    action: str
    audit_id: int | None


@dataclass(frozen=True)
class Batch:
    """A review batch: where its items came from and the methods (with parameters) shown."""

    name: str
    source: str
    created_by: str
    created_at: datetime
    model_fingerprint: str
    methods: dict


def database_url(url: str | None = None) -> str:
    """The database to use: ``url``, else ``DATABASE_URL``, else the SQLite file ``SALIENCY_DB``.

    Args:
        url: an SQLAlchemy URL (``sqlite:////abs/path.sqlite``, ``postgresql://...``) or None.
    Returns:
        SQLAlchemy URL string; ``postgres://`` and ``postgresql://`` use the psycopg driver.

    Example:
        >>> database_url("postgres://u@db/reviews")
        'postgresql+psycopg://u@db/reviews'
    """
    url = url or os.environ.get("DATABASE_URL") or ""
    if not url.strip():
        return sqlite_url(os.environ.get("SALIENCY_DB") or DEFAULT_SQLITE)
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def sqlite_url(path: str | os.PathLike) -> str:
    """SQLAlchemy URL of a SQLite file (made absolute, so a later ``chdir`` does not move it)."""
    return "sqlite:///" + str(Path(path).expanduser().absolute())


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _decision(row) -> Decision:
    m = row._mapping
    return Decision(id=m["id"], batch=m["batch"], item_hash=m["item_hash"], item_name=m["item_name"],
                    reviewer=m["reviewer"], decision=m["decision"], note=m["note"],
                    seconds=float(m["seconds"]), model_fingerprint=m["model_fingerprint"],
                    methods=dict(m["methods"] or {}), decided_at=_utc(m["decided_at"]), version=m["version"])


def _audit_entry(row) -> AuditEntry:
    m = dict(row._mapping)
    m["at"] = _utc(m["at"])
    m["seconds"] = float(m["seconds"])
    return AuditEntry(**m)


def _event(row) -> Event:
    m = dict(row._mapping)
    m["at"] = _utc(m["at"])
    m["until"] = _utc(m["until"]) if m["until"] is not None else None
    return Event(**m)


# ---- hash chain ------------------------------------------------------------------------------------
def _canonical(value):
    if isinstance(value, datetime):
        return _utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value
    return str(value)


def content_hash(fields: dict) -> str:
    """sha256 hex of ``fields`` as canonical JSON (sorted keys, no spaces, UTF-8, times as UTC
    ISO 8601 with microseconds)."""
    text = json.dumps(_canonical(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_DECISION_FIELDS = ("id", "batch", "item_hash", "item_name", "reviewer", "decision", "note", "seconds",
                    "model_fingerprint", "methods", "decided_at", "version")


def decision_hash(d: "Decision") -> str:
    """The content hash of a decision row (every column), as audit rows record it."""
    return content_hash({k: getattr(d, k) for k in _DECISION_FIELDS})


def _row_hash(table: sa.Table, row: dict) -> str:
    return content_hash({c.name: row.get(c.name) for c in table.columns if c.name != "row_hash"})


def _append_chained(conn: sa.Connection, table: sa.Table, row: dict) -> int:
    """Insert ``row`` as the next link of ``table``'s chain: the next id, the previous row's hash,
    this row's hash. Callers hold a write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: the
    advisory lock taken here), so no other writer appends in between."""
    if conn.dialect.name == "postgresql":
        key = _PG_CHAIN_LOCK if table is audit else _PG_CHAIN_LOCK + 1
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
    last = conn.execute(sa.select(table.c.id, table.c.row_hash).order_by(table.c.id.desc()).limit(1)).first()
    row = dict(row, id=(last.id + 1) if last else 1, prev_hash=(last.row_hash or GENESIS) if last else GENESIS)
    row["row_hash"] = _row_hash(table, row)
    conn.execute(table.insert().values(**row))
    return row["id"]


def _batch(row) -> Batch:
    m = row._mapping
    return Batch(name=m["name"], source=m["source"], created_by=m["created_by"],
                 created_at=_utc(m["created_at"]), model_fingerprint=m["model_fingerprint"],
                 methods=dict(m["methods"] or {}))


def _text(value, what: str, limit: int = 200) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"The {what} must be a non-empty text; got {value!r}.")
    if len(value) > limit:
        raise ValueError(f"The {what} must be at most {limit} characters; got {len(value)}.")
    return value


class ReviewStore:
    """Decisions and audit log in one database. Thread-safe; each process opens its own.

    Args:
        url: SQLAlchemy URL; None picks ``DATABASE_URL`` or the ``SALIENCY_DB`` SQLite file
            (see ``database_url``).
        busy_timeout: SQLite only: seconds to wait for another writer's lock.
    Raises:
        StoreError: the database cannot be opened or created (message names the cause:
            missing or read-only folder/file, not a database, server unreachable, ...).

    Example:
        >>> with ReviewStore() as store:
        ...     store.decisions(batch="batch-1", reviewer="alice")
    """

    def __init__(self, url: str | None = None, *, busy_timeout: float = BUSY_TIMEOUT):
        try:
            self.url = sa.engine.make_url(database_url(url))
        except exc.ArgumentError:
            raise StoreError(f"Expected a database URL such as sqlite:////path/reviews.sqlite or "
                             f"postgresql://user@host/db; got {url!r}.") from None
        self.backend = self.url.get_backend_name()
        self.busy_timeout = float(busy_timeout)
        if self.backend == "sqlite":
            self._engine = self._sqlite_engine()
        elif self.backend == "postgresql":
            if self.url.drivername == "postgresql":
                self.url = self.url.set(drivername="postgresql+psycopg")
            try:
                self._engine = sa.create_engine(self.url, pool_pre_ping=True,
                                                connect_args={"connect_timeout": 10})
            except ImportError as err:
                raise StoreError(f"PostgreSQL needs the psycopg package ({err}); install requirements.txt.") from None
        else:
            raise StoreError(f"Expected a SQLite or PostgreSQL database URL; got one for {self.backend!r}.")
        self._create_schema()

    # ---- connection plumbing ---------------------------------------------------------------------
    @property
    def where(self) -> str:
        """Where the data lives, for messages: the SQLite path or the URL without password."""
        if self.backend == "sqlite":
            return self.url.database
        return self.url.render_as_string(hide_password=True)

    def _sqlite_engine(self) -> sa.Engine:
        path = self.url.database
        if not path or path == ":memory:" or self.url.query.get("mode") == "memory":
            raise StoreError("Expected a SQLite database file path; got an in-memory database, "
                             "which would lose every decision when the app stops.")
        folder = Path(path).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"Cannot create the folder {folder} for the review database: "
                             f"{err.strerror or err}. Set SALIENCY_DB to a writable path.") from None
        engine = sa.create_engine(self.url, connect_args={"timeout": self.busy_timeout})
        busy_ms = int(self.busy_timeout * 1000)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):
            dbapi_connection.isolation_level = None   # SQLAlchemy's "begin" event issues BEGIN
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = FULL")
                cursor.execute("PRAGMA foreign_keys = ON")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            # IMMEDIATE takes the write lock up front: writers queue (busy timeout) instead of
            # failing when a read turns into a write after another writer committed.
            write = conn.get_execution_options().get("saliency_write")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    @contextmanager
    def _transaction(self, write: bool, doing: str | None = None) -> Iterator[sa.Connection]:
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(saliency_write=True)
                with conn.begin():
                    yield conn
        except StoreError:
            raise
        except exc.DBAPIError as err:
            doing = doing or ("record the decision" if write else "read the review database")
            raise self._explain(err, doing) from None

    def _explain(self, err: exc.DBAPIError, doing: str) -> StoreError:
        """The driver's error in words a reviewer and an operator understand."""
        lines = str(getattr(err, "orig", None) or err).strip().splitlines()
        text = lines[0] if lines else type(err).__name__
        low = text.lower()
        if self.backend == "sqlite":
            path, folder = self.url.database, str(Path(self.url.database).parent)
            if "locked" in low or "busy" in low:
                return StoreError(
                    f"The review database {path} is locked by another program and stayed locked for "
                    f"{self.busy_timeout:g} s, so the app could not {doing}; nothing was written. "
                    "Try again in a moment; if it persists, close the program holding the file.")
            if "readonly" in low or "read-only" in low or (
                    "unable to open" in low and os.path.exists(path) and not _writable(path, folder)):
                return StoreError(
                    f"The review database {path} is read-only (the file or its folder {folder} cannot be "
                    f"written), so the app could not {doing}; nothing was written. Ask the operator to make "
                    "both writable, or set SALIENCY_DB to a writable path.")
            if "unable to open" in low:
                return StoreError(f"Cannot open the review database {path}: the folder {folder} is missing "
                                  "or not accessible. Set SALIENCY_DB to a writable path.")
            if "not a database" in low or "malformed" in low:
                return StoreError(f"{path} is not a usable SQLite database ({text}). Point SALIENCY_DB to "
                                  "the review database, or move this file away to start a new one.")
            if "disk is full" in low or "disk i/o" in low:
                return StoreError(f"The disk holding {path} failed or is full ({text}), so the app could not "
                                  f"{doing}; nothing was written.")
        elif isinstance(err, exc.OperationalError):
            return StoreError(f"The PostgreSQL database {self.where} cannot be reached or refused the request "
                              f"({text}), so the app could not {doing}; nothing was written. Check DATABASE_URL "
                              "and that the server is running.")
        return StoreError(f"The review database {self.where} reported an error, so the app could not {doing} "
                          f"({type(getattr(err, 'orig', err)).__name__}: {text}); nothing was written.")

    def _create_schema(self) -> None:
        with self._transaction(write=True, doing="open the review database") as conn:
            if self.backend == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_SCHEMA_LOCK})
            metadata.create_all(conn)
            self._migrate(conn)

    def _migrate(self, conn: sa.Connection) -> None:
        """A database made before the hash chain: add its columns and seal the existing audit rows
        (hashed as they are now, each decision against its current row) in one transaction; a
        ``chain_started`` event says how many rows were sealed."""
        present = {c["name"] for c in sa.inspect(conn).get_columns("review_audit")}
        missing = [c for c in ("decision_hash", "prev_hash", "row_hash") if c not in present]
        for name in missing:
            conn.execute(sa.text(f"ALTER TABLE review_audit ADD COLUMN {name} VARCHAR(64)"))
        unsealed = conn.execute(sa.select(sa.func.count()).select_from(audit)
                                .where(audit.c.row_hash.is_(None))).scalar()
        if not unsealed:
            return
        rows = [dict(r._mapping) for r in conn.execute(sa.select(audit).order_by(audit.c.id))]
        last_of = {r["decision_id"]: r["id"] for r in rows}
        current = {d.id: d for d in map(_decision, conn.execute(sa.select(decisions)))}
        if self.backend == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS review_audit_no_update")
        else:
            conn.exec_driver_sql("ALTER TABLE review_audit DISABLE TRIGGER USER")
        prev = GENESIS
        for r in rows:
            r["at"], r["seconds"] = _utc(r["at"]), float(r["seconds"])
            if r["row_hash"] is None:
                d = current.get(r["decision_id"])
                r["decision_hash"] = decision_hash(d) if d is not None and last_of[r["decision_id"]] == r["id"] \
                    else r["decision_hash"]
                r["prev_hash"] = prev
                r["row_hash"] = _row_hash(audit, r)
                conn.execute(audit.update().where(audit.c.id == r["id"]).values(
                    decision_hash=r["decision_hash"], prev_hash=r["prev_hash"], row_hash=r["row_hash"]))
            prev = r["row_hash"]
        if self.backend == "sqlite":
            conn.exec_driver_sql(_SQLITE_AUDIT_NO_UPDATE)
        else:
            conn.exec_driver_sql("ALTER TABLE review_audit ENABLE TRIGGER USER")
        _append_chained(conn, events, {"at": _now(), "kind": "chain_started", "account": "", "client": "",
                                       "actor": "", "until": None,
                                       "detail": f"{unsealed} audit row(s) written before the hash chain existed "
                                                 "were sealed as found"})

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> "ReviewStore":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # ---- batches ---------------------------------------------------------------------------------
    def open_batch(self, name: str, *, source: str, created_by: str, model_fingerprint: str,
                   methods: dict) -> Batch:
        """Register a batch, or return it unchanged if it exists (the first opener fixes its methods).

        Args:
            name: batch name, unique. source: how items are found ("samples", "folder:sub", "upload").
            created_by: reviewer who opened it. methods: {method name: parameters}.
        Returns:
            the stored Batch (its ``methods`` may differ from the ones passed if it already existed).
        """
        _text(name, "batch name")
        _text(created_by, "reviewer name")
        row = {"name": name, "source": str(source)[:500], "created_by": created_by, "created_at": _now(),
               "model_fingerprint": str(model_fingerprint), "methods": dict(methods)}
        with self._transaction(write=True, doing="open the batch") as conn:
            conn.execute(self._insert(batches).values(**row).on_conflict_do_nothing(index_elements=["name"]))
            return _batch(conn.execute(sa.select(batches).where(batches.c.name == name)).one())

    def batch(self, name: str) -> Batch | None:
        """The batch called ``name``, or None."""
        with self._transaction(write=False) as conn:
            row = conn.execute(sa.select(batches).where(batches.c.name == name)).first()
        return _batch(row) if row else None

    def batches(self) -> list[Batch]:
        """All batches, newest first."""
        with self._transaction(write=False) as conn:
            rows = conn.execute(sa.select(batches).order_by(batches.c.created_at.desc(), batches.c.name)).all()
        return [_batch(r) for r in rows]

    def last_batch(self, reviewer: str) -> str | None:
        """The batch ``reviewer`` last recorded a decision in (else last opened), or None."""
        with self._transaction(write=False) as conn:
            name = conn.execute(sa.select(decisions.c.batch).where(decisions.c.reviewer == reviewer)
                                .order_by(decisions.c.decided_at.desc(), decisions.c.id.desc()).limit(1)).scalar()
            if name is None:
                name = conn.execute(sa.select(batches.c.name).where(batches.c.created_by == reviewer)
                                    .order_by(batches.c.created_at.desc()).limit(1)).scalar()
        return name

    # ---- decisions -------------------------------------------------------------------------------
    def _insert(self, table: sa.Table):
        if self.backend == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    def record(self, batch: str, item_hash: str, item_name: str, reviewer: str, decision: str, *,
               note: str = "", seconds: float = 0.0, model_fingerprint: str = "",
               methods: dict | None = None, actor: str | None = None,
               expected_version: int | None = None) -> Recorded:
        """Record ``reviewer``'s decision on one item, appending an audit row in the same transaction.

        A repeat of the current decision and note writes nothing ("unchanged"), so a double submit
        never duplicates. A different decision or note updates the one row, adds ``seconds`` to
        its time spent, bumps its ``version`` and appends the old and new values to the audit log.

        Args:
            batch, item_hash, item_name: which item (image sha256 and display name) in which batch.
            reviewer: whose decision. decision: one of ``DECISIONS``. note: free text.
            seconds: time the reviewer spent on the item for this decision (>= 0).
            model_fingerprint, methods: what the reviewer saw: model sha256, {method: parameters}.
            actor: who makes the change (default: the reviewer).
            expected_version: the ``version`` the reviewer saw (0: no decision yet). If the stored
                decision has moved on since (another window), nothing is written and
                ``DecisionConflict`` says what it is now. None: no check.
        Returns:
            Recorded(decision, action, audit_id).
        Raises:
            ValueError: bad arguments. DecisionConflict: see ``expected_version``.
            StoreError: the database is locked, read-only or unreachable; nothing was written.

        Example:
            >>> store.record("b1", h, "cat.png", "alice", "reject", note="looked at the floor").action
            'created'
        """
        _text(batch, "batch name")
        _text(item_hash, "item hash", 128)
        _text(item_name, "item name", 500)
        _text(reviewer, "reviewer name")
        actor = _text(actor or reviewer, "actor name")
        if decision not in DECISIONS:
            raise ValueError(f"Expected a decision among {', '.join(DECISIONS)}; got {decision!r}.")
        note = "" if note is None else str(note)
        if len(note) > MAX_NOTE:
            raise ValueError(f"The note must be at most {MAX_NOTE} characters; got {len(note)}.")
        try:
            seconds = float(seconds)
        except (TypeError, ValueError):
            raise ValueError(f"Expected the seconds spent as a number; got {seconds!r}.") from None
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"Expected the seconds spent to be a finite number >= 0; got {seconds}.")
        methods = dict(methods or {})
        key = ((decisions.c.batch == batch) & (decisions.c.item_hash == item_hash)
               & (decisions.c.reviewer == reviewer))
        with self._transaction(write=True) as conn:
            current = conn.execute(sa.select(decisions).where(key).with_for_update()).first()
            now = _now()
            if current is None:
                if expected_version not in (None, 0):
                    raise StoreError(f"Expected to change version {expected_version} of {reviewer}'s decision "
                                     f"on {item_name}, but there is no decision to change.")
                new_id = conn.execute(
                    self._insert(decisions).values(
                        batch=batch, item_hash=item_hash, item_name=item_name, reviewer=reviewer,
                        decision=decision, note=note, seconds=seconds, model_fingerprint=model_fingerprint,
                        methods=methods, decided_at=now, version=1)
                    .on_conflict_do_nothing(index_elements=["batch", "item_hash", "reviewer"])
                    .returning(decisions.c.id)).scalar()
                if new_id is not None:
                    made = _decision(conn.execute(sa.select(decisions).where(decisions.c.id == new_id)).one())
                    audit_id = _append_audit(conn, decision_id=new_id, batch=batch, item_hash=item_hash,
                                             item_name=item_name, reviewer=reviewer, actor=actor, action="create",
                                             old_decision=None, new_decision=decision, old_note=None,
                                             new_note=note, seconds=seconds, version=1, at=now,
                                             decision_hash=decision_hash(made))
                    return Recorded(made, "created", audit_id)
                # Another writer created it between our read and insert (PostgreSQL): use theirs.
                current = conn.execute(sa.select(decisions).where(key).with_for_update()).one()
            old = _decision(current)
            if old.decision == decision and old.note == note:
                return Recorded(old, "unchanged", None)
            if expected_version is not None and expected_version != old.version:
                raise DecisionConflict(
                    f"{reviewer}'s decision on {item_name} was changed elsewhere (another window or tab) to "
                    f"{old.label} at {old.decided_at:%Y-%m-%d %H:%M:%S} UTC since this page showed it; "
                    "nothing was written. Check the item and decide again.", old)
            version = old.version + 1
            done = conn.execute(
                decisions.update().where((decisions.c.id == old.id) & (decisions.c.version == old.version))
                .values(decision=decision, note=note, seconds=old.seconds + seconds, item_name=item_name,
                        model_fingerprint=model_fingerprint, methods=methods, decided_at=now, version=version))
            if done.rowcount != 1:  # cannot happen under the row lock; refuse rather than guess
                raise StoreError(f"{reviewer}'s decision on {item_name} changed during the update; "
                                 "nothing was written. Try again.")
            changed = _decision(conn.execute(sa.select(decisions).where(decisions.c.id == old.id)).one())
            audit_id = _append_audit(conn, decision_id=old.id, batch=batch, item_hash=item_hash,
                                     item_name=item_name, reviewer=reviewer, actor=actor, action="change",
                                     old_decision=old.decision, new_decision=decision, old_note=old.note,
                                     new_note=note, seconds=seconds, version=version, at=now,
                                     decision_hash=decision_hash(changed))
            return Recorded(changed, "changed", audit_id)

    def decision(self, batch: str, item_hash: str, reviewer: str) -> Decision | None:
        """``reviewer``'s current decision on one item, or None."""
        with self._transaction(write=False) as conn:
            row = conn.execute(sa.select(decisions).where(
                (decisions.c.batch == batch) & (decisions.c.item_hash == item_hash)
                & (decisions.c.reviewer == reviewer))).first()
        return _decision(row) if row else None

    def decisions(self, batch: str | None = None, reviewer: str | None = None) -> list[Decision]:
        """Current decisions, optionally of one batch and/or reviewer, oldest first."""
        query = sa.select(decisions).order_by(decisions.c.batch, decisions.c.decided_at, decisions.c.id)
        if batch is not None:
            query = query.where(decisions.c.batch == batch)
        if reviewer is not None:
            query = query.where(decisions.c.reviewer == reviewer)
        with self._transaction(write=False) as conn:
            return [_decision(r) for r in conn.execute(query)]

    # ---- sign-in events (auth.SignInThrottle) ----------------------------------------------------------
    def append_event(self, kind: str, *, account: str = "", client: str = "", actor: str = "",
                     until: datetime | None = None, detail: str = "", at: datetime | None = None) -> Event:
        """Append one sign-in event (``EVENT_KINDS``) to the chained event log.

        Text is cut to the column sizes (user names typed at the sign-in form are untrusted).
        ``at``: the event's time (default now; the sign-in throttle passes its clock's).
        """
        if kind not in EVENT_KINDS:
            raise ValueError(f"Expected an event kind among {', '.join(EVENT_KINDS)}; got {kind!r}.")
        row = {"at": _utc(at) if at is not None else _now(), "kind": kind, "account": str(account or "")[:200], "client": str(client or "")[:200],
               "actor": str(actor or "")[:200], "until": until, "detail": str(detail or "")[:2000]}
        with self._transaction(write=True, doing="record the sign-in event") as conn:
            new_id = _append_chained(conn, events, row)
            return _event(conn.execute(sa.select(events).where(events.c.id == new_id)).one())

    def events(self, kinds: Sequence[str] | None = None, account: str | None = None, client: str | None = None,
               since: datetime | None = None) -> list[Event]:
        """Sign-in events in the order written, optionally of some kinds / one account / one client /
        at or after ``since``."""
        query = sa.select(events).order_by(events.c.id)
        if kinds is not None:
            query = query.where(events.c.kind.in_(list(kinds)))
        if account is not None:
            query = query.where(events.c.account == str(account)[:200])
        if client is not None:
            query = query.where(events.c.client == str(client)[:200])
        if since is not None:
            query = query.where(events.c.at >= since)
        with self._transaction(write=False) as conn:
            return [_event(r) for r in conn.execute(query)]

    # ---- tamper evidence ---------------------------------------------------------------------------
    def verify(self) -> AuditCheck:
        """Walk the audit and event chains and compare every decision with its last audit row.

        Returns:
            AuditCheck; ``problem`` names the first row that breaks (a row whose content no longer
            matches its hash, a row that does not follow the one before, a decision changed
            outside the app or without an audit row).

        Example:
            >>> store.verify().ok
            True
        """
        with self._engine.connect() as conn:
            if self.backend == "postgresql":   # one snapshot for all three tables
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            try:
                with conn.begin():
                    return _verify(conn)
            except exc.DBAPIError as err:
                raise self._explain(err, "verify the audit log") from None

    def audit_log(self, batch: str | None = None, decision_id: int | None = None) -> list[AuditEntry]:
        """Audit rows in the order they were written, optionally of one batch or decision."""
        query = sa.select(audit).order_by(audit.c.id)
        if batch is not None:
            query = query.where(audit.c.batch == batch)
        if decision_id is not None:
            query = query.where(audit.c.decision_id == decision_id)
        with self._transaction(write=False) as conn:
            return [_audit_entry(r) for r in conn.execute(query)]


def _append_audit(conn: sa.Connection, **row) -> int:
    return _append_chained(conn, audit, row)


def _walk_chain(conn: sa.Connection, table: sa.Table, what: str):
    """Yield each row of ``table`` in id order; raise _Broken at the first that does not chain."""
    prev, prev_id = GENESIS, None
    for r in conn.execute(sa.select(table).order_by(table.c.id)):
        row = dict(r._mapping)
        if table is audit:
            row["seconds"] = float(row["seconds"])
        where = f"{what} row {row['id']}"
        if row["prev_hash"] != prev:
            before = f"row {prev_id}" if prev_id is not None else "the start of the log"
            raise _Broken(table.name, row["id"],
                          f"{where} does not follow {before} (its previous-row hash differs): a row was removed, "
                          "inserted or replaced there.")
        if not row["row_hash"] or _row_hash(table, row) != row["row_hash"]:
            raise _Broken(table.name, row["id"],
                          f"{where} was changed after it was written (its content no longer matches its hash).")
        prev, prev_id = row["row_hash"], row["id"]
        yield row


class _Broken(Exception):
    def __init__(self, table: str, row: int, problem: str):
        super().__init__(problem)
        self.table, self.row, self.problem = table, row, problem


def _verify(conn: sa.Connection) -> AuditCheck:
    counts = {"audit_rows": 0, "event_rows": 0, "decisions": 0}
    head = GENESIS
    try:
        last: dict[int, dict] = {}
        for row in _walk_chain(conn, audit, "audit log"):
            counts["audit_rows"] += 1
            last[row["decision_id"]] = row
            head = row["row_hash"]
        for r in conn.execute(sa.select(decisions).order_by(decisions.c.id)):
            d = _decision(r)
            counts["decisions"] += 1
            entry = last.get(d.id)
            name = f"decision {d.id} ({d.reviewer} on {d.item_name} in batch {d.batch})"
            if entry is None:
                raise _Broken("review_decisions", d.id, f"{name} has no audit row: it was written outside the app.")
            if entry["decision_hash"] != decision_hash(d):
                raise _Broken("review_decisions", d.id,
                              f"{name} differs from what its last audit row (row {entry['id']}) recorded: it was "
                              "changed outside the app.")
        for _ in _walk_chain(conn, events, "sign-in event log"):
            counts["event_rows"] += 1
    except _Broken as broken:
        return AuditCheck(False, head=head, problem=broken.problem, table=broken.table, row=broken.row, **counts)
    return AuditCheck(True, head=head, **counts)


def _writable(path: str, folder: str) -> bool:
    # effective ids: what the process can do now (a root process that dropped privileges included)
    return (os.access(path, os.W_OK, effective_ids=True)
            and os.access(folder, os.W_OK | os.X_OK, effective_ids=True))


# ---- summary ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Agreement:
    """Cohen's kappa between two reviewers over the ``items`` both decided (None: undefined,
    both gave one and the same decision to every shared item)."""

    reviewer_a: str
    reviewer_b: str
    items: int
    agreed: int
    kappa: float | None


@dataclass(frozen=True)
class Summary:
    """Per-batch figures: counts by decision, by reviewer and decision, pairwise agreement,
    median seconds per decision (over the decisions with that value)."""

    items: int
    decisions: int
    by_decision: dict
    by_reviewer: dict
    agreement: list
    median_seconds: dict


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items: (p_o - p_e) / (1 - p_e).

    Args:
        a, b: labels, same length, item i rated a[i] by one rater and b[i] by the other.
    Returns:
        kappa in [-1, 1]; None when p_e == 1 (both used the same single label throughout).

    Example:
        >>> cohen_kappa(["accept"] * 20 + ["accept"] * 5 + ["reject"] * 10 + ["reject"] * 15,
        ...             ["accept"] * 20 + ["reject"] * 5 + ["accept"] * 10 + ["reject"] * 15)
        0.4
    """
    if len(a) != len(b):
        raise ValueError(f"Expected two label lists of the same length; got {len(a)} and {len(b)}.")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n                     # Cohen 1960, p_o
    labels = set(a) | set(b)
    expected = sum((list(a).count(k) / n) * (list(b).count(k) / n) for k in labels)  # p_e
    if math.isclose(expected, 1.0):
        return None
    return round((observed - expected) / (1.0 - expected), 12)


def summarize(items: Iterable[Decision]) -> Summary:
    """Counts, agreement (Cohen's kappa per pair of reviewers with shared items) and median time.

    Args:
        items: decisions, normally of one batch (``store.decisions(batch=...)``).
    Returns:
        Summary. ``by_reviewer`` is {reviewer: {decision: count}}; ``median_seconds`` is
        {decision: median seconds}; ``agreement`` lists pairs with at least one shared item.
    """
    items = list(items)
    by_decision = {d: sum(x.decision == d for x in items) for d in DECISIONS}
    by_reviewer: dict[str, dict[str, int]] = {}
    for x in items:
        by_reviewer.setdefault(x.reviewer, {d: 0 for d in DECISIONS})[x.decision] += 1
    per_reviewer: dict[str, dict[str, str]] = {}
    for x in items:
        per_reviewer.setdefault(x.reviewer, {})[x.item_hash] = x.decision
    agreement = []
    for ra, rb in combinations(sorted(per_reviewer), 2):
        shared = sorted(set(per_reviewer[ra]) & set(per_reviewer[rb]))
        if not shared:
            continue
        a = [per_reviewer[ra][h] for h in shared]
        b = [per_reviewer[rb][h] for h in shared]
        agreement.append(Agreement(ra, rb, len(shared), sum(x == y for x, y in zip(a, b)), cohen_kappa(a, b)))
    median_seconds = {d: statistics.median([x.seconds for x in items if x.decision == d])
                      for d in DECISIONS if by_decision[d]}
    return Summary(items=len({x.item_hash for x in items}), decisions=len(items), by_decision=by_decision,
                   by_reviewer=by_reviewer, agreement=agreement, median_seconds=median_seconds)


CSV_COLUMNS = ("batch", "item_name", "item_hash", "reviewer", "decision", "note", "seconds", "decided_at",
               "version", "model_fingerprint", "methods")


def to_csv(items: Iterable[Decision], include_notes: bool = True) -> str:
    """Decisions as CSV text (one row each; ``methods`` as JSON; notes blank unless included).
    Text that a spreadsheet would run as a formula gets a leading ``'`` (``safe_text.csv_cell``)."""
    return _csv_text(([x.batch, x.item_name, x.item_hash, x.reviewer, x.decision,
                       x.note if include_notes else "", round(x.seconds, 3), x.decided_at.isoformat(),
                       x.version, x.model_fingerprint, json.dumps(x.methods, sort_keys=True)] for x in items),
                     columns=CSV_COLUMNS)



# ---- command line: python -m saliency_core audit verify ---------------------------------------------
