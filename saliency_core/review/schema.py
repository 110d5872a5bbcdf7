"""The review database's tables (with the triggers that keep the logs append-only), the records read
from them, and the checks of what is written."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import event

DECISIONS = ("accept", "reject", "needs_expert")
DECISION_LABELS = {"accept": "Accept", "reject": "Reject", "needs_expert": "Needs expert"}
DEFAULT_SQLITE = os.path.join("data", "reviews.sqlite")
BUSY_TIMEOUT = 10.0  # seconds a SQLite writer waits for another writer before giving up
MAX_NOTE = 10_000  # characters
PG_SCHEMA_LOCK = 724_531_001  # advisory lock id: one process creates the tables at a time
PG_CHAIN_LOCK = 724_531_002  # advisory lock ids: one writer appends to a hash chain at a time
GENESIS = "0" * 64  # the "previous hash" of the first row of a chain
EVENT_KINDS = (
    "signin",
    "signin_failed",
    "account_locked",
    "client_locked",
    "account_unlocked",
    "client_unlocked",
    "chain_started",
)

metadata = sa.MetaData()

batches = sa.Table(
    "review_batches",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("source", sa.String(500), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_fingerprint", sa.String(128), nullable=False),
    sa.Column("methods", sa.JSON, nullable=False),
)

decisions = sa.Table(
    "review_decisions",
    metadata,
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
    "review_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("decision_id", sa.Integer, sa.ForeignKey("review_decisions.id"), nullable=False),
    sa.Column("batch", sa.String(200), nullable=False),
    sa.Column("item_hash", sa.String(128), nullable=False),
    sa.Column("item_name", sa.String(500), nullable=False),
    sa.Column("reviewer", sa.String(200), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(10), nullable=False),  # "create" or "change"
    sa.Column("old_decision", sa.String(20)),
    sa.Column("new_decision", sa.String(20), nullable=False),
    sa.Column("old_note", sa.Text),
    sa.Column("new_note", sa.Text, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),  # the decision's version after this change
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    # tamper evidence (nullable only so that older databases can gain the columns; see _migrate)
    sa.Column("decision_hash", sa.String(64)),  # the decision row after this change
    sa.Column("prev_hash", sa.String(64)),  # row_hash of the row before
    sa.Column("row_hash", sa.String(64)),  # sha256 of this row's canonical JSON
    sa.Index("ix_review_audit_batch", "batch"),
    sa.Index("ix_review_audit_decision", "decision_id"),
)

events = sa.Table(
    "review_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # one of EVENT_KINDS
    sa.Column("account", sa.String(200), nullable=False),  # the user name typed / locked / unlocked
    sa.Column("client", sa.String(200), nullable=False),  # "ip:ADDRESS" or "session:ID"
    sa.Column("actor", sa.String(200), nullable=False),  # who unlocked; "" for sign-in events
    sa.Column("until", sa.DateTime(timezone=True)),  # end of a lockout
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("row_hash", sa.String(64), nullable=False),
    sa.Index("ix_review_events_account", "account", "at"),
    sa.Index("ix_review_events_client", "client", "at"),
)

# Append-only: the database itself refuses to edit or delete audit rows and decisions.
SQLITE_AUDIT_NO_UPDATE = (
    "CREATE TRIGGER review_audit_no_update BEFORE UPDATE ON review_audit "
    "BEGIN SELECT RAISE(ABORT, 'the review audit log is append-only'); END"
)
for _table, _sql in (
    (audit, SQLITE_AUDIT_NO_UPDATE),
    (
        audit,
        "CREATE TRIGGER review_audit_no_delete BEFORE DELETE ON review_audit "
        "BEGIN SELECT RAISE(ABORT, 'the review audit log is append-only'); END",
    ),
    (
        events,
        "CREATE TRIGGER review_events_no_update BEFORE UPDATE ON review_events "
        "BEGIN SELECT RAISE(ABORT, 'the review audit log is append-only'); END",
    ),
    (
        events,
        "CREATE TRIGGER review_events_no_delete BEFORE DELETE ON review_events "
        "BEGIN SELECT RAISE(ABORT, 'the review audit log is append-only'); END",
    ),
):
    event.listen(_table, "after_create", sa.DDL(_sql).execute_if(dialect="sqlite"))
event.listen(
    decisions,
    "after_create",
    sa.DDL(
        "CREATE TRIGGER review_decisions_no_delete BEFORE DELETE ON review_decisions "
        "BEGIN SELECT RAISE(ABORT, 'review decisions are never deleted'); END"
    ).execute_if(dialect="sqlite"),
)
event.listen(
    audit,
    "after_create",
    sa.DDL(
        "CREATE OR REPLACE FUNCTION review_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'the review audit log is append-only and decisions are never deleted'; END $$"
    ).execute_if(dialect="postgresql"),
)
for _sql in (
    "CREATE TRIGGER review_audit_no_change BEFORE UPDATE OR DELETE ON review_audit "
    "FOR EACH ROW EXECUTE FUNCTION review_refuse_change()",
    "CREATE TRIGGER review_decisions_no_delete BEFORE DELETE ON review_decisions "
    "FOR EACH ROW EXECUTE FUNCTION review_refuse_change()",
):
    event.listen(audit, "after_create", sa.DDL(_sql).execute_if(dialect="postgresql"))
event.listen(
    events,
    "after_create",
    sa.DDL(
        "CREATE OR REPLACE FUNCTION review_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'the review audit log is append-only and decisions are never deleted'; END $$"
    ).execute_if(dialect="postgresql"),
)
event.listen(
    events,
    "after_create",
    sa.DDL(
        "CREATE TRIGGER review_events_no_change BEFORE UPDATE OR DELETE ON review_events "
        "FOR EACH ROW EXECUTE FUNCTION review_refuse_change()"
    ).execute_if(dialect="postgresql"),
)


class StoreError(ValueError):
    """The review database cannot do what was asked; the message says why in plain words."""


class DecisionConflict(StoreError):
    """The decision changed (e.g. in another window) since the reviewer last saw it.

    ``current`` is the decision as it is now; nothing was written.
    """

    def __init__(self, message: str, current: Decision):
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
            return (
                f"The audit log verified: {self.audit_rows} audit row(s) and {self.event_rows} sign-in "
                f"event(s) form unbroken hash chains, and each of the {self.decisions} decision(s) matches "
                f"its last audit row. Last hash {self.head[:16]}…."
            )
        return f"The audit log did NOT verify: {self.problem}"

    def record(self) -> dict:
        return {
            "verified": self.ok,
            "audit_rows": self.audit_rows,
            "event_rows": self.event_rows,
            "decisions": self.decisions,
            "head": self.head,
            "problem": self.problem,
            "table": self.table,
            "row": self.row,
            "message": self.message,
        }


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


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


def decision_from_row(row) -> Decision:
    m = row._mapping
    return Decision(
        id=m["id"],
        batch=m["batch"],
        item_hash=m["item_hash"],
        item_name=m["item_name"],
        reviewer=m["reviewer"],
        decision=m["decision"],
        note=m["note"],
        seconds=float(m["seconds"]),
        model_fingerprint=m["model_fingerprint"],
        methods=dict(m["methods"] or {}),
        decided_at=as_utc(m["decided_at"]),
        version=m["version"],
    )


def audit_entry_from_row(row) -> AuditEntry:
    m = dict(row._mapping)
    m["at"] = as_utc(m["at"])
    m["seconds"] = float(m["seconds"])
    return AuditEntry(**m)


def event_from_row(row) -> Event:
    m = dict(row._mapping)
    m["at"] = as_utc(m["at"])
    m["until"] = as_utc(m["until"]) if m["until"] is not None else None
    return Event(**m)


def batch_from_row(row) -> Batch:
    m = row._mapping
    return Batch(
        name=m["name"],
        source=m["source"],
        created_by=m["created_by"],
        created_at=as_utc(m["created_at"]),
        model_fingerprint=m["model_fingerprint"],
        methods=dict(m["methods"] or {}),
    )


def checked_text(value, what: str, limit: int = 200) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"The {what} must be a non-empty text; got {value!r}.")
    if len(value) > limit:
        raise ValueError(f"The {what} must be at most {limit} characters; got {len(value)}.")
    return value
