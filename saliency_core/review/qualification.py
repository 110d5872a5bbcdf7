"""Qualification records and their sign-offs, in the review database, chained like decisions.

Tables (created on first use of ``QualificationStore``, append-only: database triggers refuse
UPDATE and DELETE, as for the review audit log):

- ``qualification_records``: one row per qualification run: model and data set fingerprints,
  settings, the rules judged by, software versions, each method's verdict, who ran it, when.
- ``qualification_scores``: the scorecard, one row per (record, method, criterion): figure,
  interval, rule, verdict and the words behind it.
- ``qualification_signoffs``: an admin's approval (or rejection) of a record, with a note.
- ``qualification_audit``: one hash-chained row per record written and per sign-off, holding
  the content hash of what it wrote (the record with every scorecard row, or the sign-off).
  ``ReviewStore.verify`` walks this chain too and recomputes each content hash, so a scorecard
  row changed in the database (past the triggers) breaks verification and is named.

A model may hold several records; the one **in force** is the newest whose last sign-off is an
approval and whose model fingerprint is the model's own (a record made on other weights never is).

Example:
    >>> qs = QualificationStore(ReviewStore(url))
    >>> rec = qs.add(qualification, run_by="alice", via="command line")
    >>> qs.sign_off(rec.id, Account("lead", "admin"), "approve", note="scorecard checked")
    >>> qs.in_force(model.fingerprint).id == rec.id
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import event

from .chain import ChainBroken, append_chained, content_hash, walk_chain
from .identity import Account, can
from .schema import AuditCheck, StoreError

SIGNOFFS = ("approve", "reject")
MAX_NOTE = 10_000
_PG_LOCK = 724_531_010  # advisory lock id: one process creates these tables at a time

metadata = sa.MetaData()

records = sa.Table(
    "qualification_records",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_fingerprint", sa.String(128), nullable=False),
    sa.Column("model_name", sa.String(500), nullable=False),
    sa.Column("dataset_fingerprint", sa.String(128), nullable=False),
    sa.Column("dataset_description", sa.Text, nullable=False),
    sa.Column("images", sa.Integer, nullable=False),
    sa.Column("complete", sa.Boolean, nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("rules", sa.JSON, nullable=False),
    sa.Column("versions", sa.JSON, nullable=False),
    sa.Column("verdicts", sa.JSON, nullable=False),
    sa.Column("run_by", sa.String(200), nullable=False),
    sa.Column("run_via", sa.String(200), nullable=False),
    sa.Index("ix_qualification_model", "model_fingerprint"),
)

scores = sa.Table(
    "qualification_scores",
    metadata,
    sa.Column("record_id", sa.Integer, sa.ForeignKey("qualification_records.id"), primary_key=True),
    sa.Column("method", sa.String(100), primary_key=True),
    sa.Column("criterion", sa.String(50), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("figure", sa.Float),
    sa.Column("low", sa.Float),
    sa.Column("high", sa.Float),
    sa.Column("rule", sa.Text, nullable=False),
    sa.Column("verdict", sa.String(20), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

signoffs = sa.Table(
    "qualification_signoffs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("record_id", sa.Integer, sa.ForeignKey("qualification_records.id"), nullable=False),
    sa.Column("admin", sa.String(200), nullable=False),
    sa.Column("via", sa.String(200), nullable=False),
    sa.Column("decision", sa.String(10), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("decision IN ('approve', 'reject')", name="ck_qualification_signoff"),
)

audit = sa.Table(
    "qualification_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("action", sa.String(10), nullable=False),  # "recorded", "approve" or "reject"
    sa.Column("record_id", sa.Integer, nullable=False),
    sa.Column("signoff_id", sa.Integer),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("row_hash", sa.String(64), nullable=False),
)

# Append-only: the database itself refuses to edit or delete any of them.
for _table in (records, scores, signoffs, audit):
    for _op in ("UPDATE", "DELETE"):
        event.listen(
            _table,
            "after_create",
            sa.DDL(
                f"CREATE TRIGGER {_table.name}_no_{_op.lower()} BEFORE {_op} ON {_table.name} "
                "BEGIN SELECT RAISE(ABORT, 'qualification records are append-only'); END"
            ).execute_if(dialect="sqlite"),
        )
    event.listen(
        _table,
        "after_create",
        sa.DDL(
            "CREATE OR REPLACE FUNCTION qualification_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'qualification records are append-only'; END $$; "
            f"CREATE TRIGGER {_table.name}_no_change BEFORE UPDATE OR DELETE ON {_table.name} "
            "FOR EACH ROW EXECUTE FUNCTION qualification_refuse_change()"
        ).execute_if(dialect="postgresql"),
    )


class SignOffRefused(StoreError):
    """Only an admin (the QA lead) may sign a qualification off; nothing was written."""


@dataclass(frozen=True)
class SignOff:
    id: int
    record_id: int
    admin: str
    via: str
    decision: str
    note: str
    at: datetime


@dataclass(frozen=True)
class QualificationRecord:
    """One stored qualification with its scorecard and sign-offs (oldest first)."""

    id: int
    created_at: datetime
    model_fingerprint: str
    model_name: str
    dataset_fingerprint: str
    dataset_description: str
    images: int
    complete: bool
    settings: dict
    rules: dict
    versions: dict
    verdicts: dict
    run_by: str
    run_via: str
    scorecard: list = field(default_factory=list)
    signoffs: list = field(default_factory=list)

    @property
    def approval(self) -> SignOff | None:
        """The last sign-off when it is an approval, else None."""
        return self.signoffs[-1] if self.signoffs and self.signoffs[-1].decision == "approve" else None

    @property
    def qualified(self) -> list[str]:
        return [m for m, v in self.verdicts.items() if v.get("verdict") == "qualified"]

    def matches(self, model_fingerprint: str) -> bool:
        return bool(model_fingerprint) and self.model_fingerprint == model_fingerprint

    def record(self) -> dict:
        """JSON-ready, for reports and the command line."""
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "model_fingerprint": self.model_fingerprint,
            "model_name": self.model_name,
            "dataset_fingerprint": self.dataset_fingerprint,
            "dataset_description": self.dataset_description,
            "images": self.images,
            "complete": self.complete,
            "settings": self.settings,
            "rules": self.rules,
            "versions": self.versions,
            "verdicts": self.verdicts,
            "run_by": self.run_by,
            "run_via": self.run_via,
            "scorecard": self.scorecard,
            "signoffs": [
                {
                    "admin": s.admin,
                    "via": s.via,
                    "decision": s.decision,
                    "note": s.note,
                    "at": s.at.isoformat(),
                }
                for s in self.signoffs
            ],
        }


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _next_id(conn: sa.Connection, table: sa.Table) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))).scalar()) + 1


def _score_rows(conn: sa.Connection, record_id: int) -> list[dict]:
    query = sa.select(scores).where(scores.c.record_id == record_id).order_by(scores.c.position)
    return [dict(r._mapping) for r in conn.execute(query)]


def _record_row(conn: sa.Connection, record_id: int) -> dict | None:
    row = conn.execute(sa.select(records).where(records.c.id == record_id)).first()
    if row is None:
        return None
    out = dict(row._mapping)
    out["created_at"] = _as_utc(out["created_at"])
    out["complete"] = bool(out["complete"])
    return out


def _now() -> datetime:
    return datetime.now(UTC)


def _writer_lock(conn: sa.Connection) -> None:
    """PostgreSQL: one writer of these tables at a time (SQLite's BEGIN IMMEDIATE already is)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK + 1})


def record_hash(record: dict, rows: list[dict]) -> str:
    """The content hash of a record row with every scorecard row, as its audit row keeps it."""
    return content_hash({**record, "scorecard": [{k: r[k] for k in sorted(r)} for r in rows]})


def signoff_hash(row: dict) -> str:
    return content_hash({**row, "at": _as_utc(row["at"])})


class QualificationStore:
    """Qualification records in a ``ReviewStore``'s database (SQLite or PostgreSQL).

    Args:
        store: an open ``ReviewStore``; the tables are created in its database on first use.
    """

    def __init__(self, store):
        self.store = store
        with store.transaction(write=True, doing="create the qualification tables") as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
            metadata.create_all(conn)

    def add(self, qualification, run_by: str, via: str = "") -> QualificationRecord:
        """Store ``qualification`` (an ``evaluation.qualification.Qualification``) with its scorecard
        and chain it into the audit log, in one transaction.

        Args:
            run_by: who ran it (a user name); via: how (``"command line"``, ``"Qualify page"``...).
        """
        if not isinstance(run_by, str) or not run_by.strip() or len(run_by) > 200:
            raise ValueError(f"Who ran the qualification must be a name of 1-200 characters; got {run_by!r}.")
        q = qualification
        with self.store.transaction(write=True, doing="store the qualification") as conn:
            _writer_lock(conn)
            record_id = _next_id(conn, records)
            row = {
                "id": record_id,
                "created_at": _now(),
                "model_fingerprint": q.model_fingerprint,
                "model_name": str(q.model.get("name", ""))[:500],
                "dataset_fingerprint": str(q.dataset.get("fingerprint", "")),
                "dataset_description": str(q.dataset.get("description", "")),
                "images": int(q.images),
                "complete": bool(q.complete),
                "settings": q.settings,
                "rules": q.rules,
                "versions": q.versions,
                "verdicts": q.verdicts,
                "run_by": run_by,
                "run_via": str(via)[:200],
            }
            conn.execute(records.insert().values(**row))
            rows = [
                {
                    "record_id": record_id,
                    "position": i,
                    **{
                        k: r[k]
                        for k in ("method", "criterion", "figure", "low", "high", "rule", "verdict", "detail")
                    },
                }
                for i, r in enumerate(q.rows)
            ]
            if rows:
                conn.execute(scores.insert(), rows)
            stored = _record_row(conn, record_id)
            append_chained(
                conn,
                audit,
                {
                    "at": row["created_at"],
                    "action": "recorded",
                    "record_id": record_id,
                    "signoff_id": None,
                    "actor": run_by,
                    "content_hash": record_hash(stored, _score_rows(conn, record_id)),
                },
            )
        return self.record(record_id)

    def sign_off(self, record_id: int, account, decision: str = "approve", note: str = "") -> SignOff:
        """An admin approves (or rejects) record ``record_id``; chained into the audit log.

        Args:
            account: the signed-in ``auth.Account``; its ``name`` and ``via`` are recorded.
        Raises:
            SignOffRefused: ``account`` is not an admin (nothing written).
            ValueError: unknown decision, note too long, no such record.
        """
        if not isinstance(account, Account) or not can(account, "sign_off"):
            who = getattr(account, "name", account)
            raise SignOffRefused(
                f"Only an admin (the QA lead) may sign a qualification off; {who!r} is not an admin. "
                "Nothing was written."
            )
        if decision not in SIGNOFFS:
            raise ValueError(f"A sign-off is 'approve' or 'reject'; got {decision!r}.")
        if not isinstance(note, str) or len(note) > MAX_NOTE:
            raise ValueError(f"The note must be a text of at most {MAX_NOTE} characters.")
        with self.store.transaction(write=True, doing="record the sign-off") as conn:
            _writer_lock(conn)
            if _record_row(conn, int(record_id)) is None:
                raise ValueError(f"There is no qualification record {record_id}.")
            row = {
                "id": _next_id(conn, signoffs),
                "record_id": int(record_id),
                "admin": account.name,
                "via": str(getattr(account, "via", "") or "")[:200],
                "decision": decision,
                "note": note,
                "at": _now(),
            }
            conn.execute(signoffs.insert().values(**row))
            append_chained(
                conn,
                audit,
                {
                    "at": row["at"],
                    "action": decision,
                    "record_id": row["record_id"],
                    "signoff_id": row["id"],
                    "actor": account.actor,
                    "content_hash": signoff_hash(row),
                },
            )
        return SignOff(**row)

    def _read(self, conn: sa.Connection, ids: list[int]) -> list[QualificationRecord]:
        out = []
        for record_id in ids:
            row = _record_row(conn, record_id)
            query = sa.select(signoffs).where(signoffs.c.record_id == record_id).order_by(signoffs.c.id)
            signed = [
                SignOff(**{**dict(s._mapping), "at": _as_utc(s._mapping["at"])}) for s in conn.execute(query)
            ]
            card = [
                {k: v for k, v in r.items() if k not in ("record_id", "position")}
                for r in _score_rows(conn, record_id)
            ]
            out.append(QualificationRecord(**row, scorecard=card, signoffs=signed))
        return out

    def record(self, record_id: int) -> QualificationRecord | None:
        with self.store.transaction(write=False) as conn:
            found = self._read(conn, [int(record_id)]) if _record_row(conn, int(record_id)) else []
        return found[0] if found else None

    def records(self, model_fingerprint: str | None = None) -> list[QualificationRecord]:
        """Every record (of one model), newest first."""
        query = sa.select(records.c.id).order_by(records.c.id.desc())
        if model_fingerprint is not None:
            query = query.where(records.c.model_fingerprint == model_fingerprint)
        with self.store.transaction(write=False) as conn:
            return self._read(conn, [r.id for r in conn.execute(query)])

    def in_force(self, model_fingerprint: str) -> QualificationRecord | None:
        """The newest approved record of exactly this model's weights, or None."""
        for rec in self.records(model_fingerprint):
            if rec.approval is not None and rec.matches(model_fingerprint):
                return rec
        return None


def verify_qualifications(conn: sa.Connection, check: AuditCheck) -> AuditCheck:
    """``check`` (the review chains' verification) extended to the qualification chain: every
    audit row chains, every record with its scorecard and every sign-off match the content hash
    their audit row recorded, and none was written without one."""
    from dataclasses import replace

    if not check.ok or not sa.inspect(conn).has_table(audit.name):
        return check
    try:
        logged: dict[tuple[str, int], str] = {}
        for row in walk_chain(conn, audit, "qualification log"):
            key = (
                ("record", row["record_id"])
                if row["action"] == "recorded"
                else ("signoff", row["signoff_id"])
            )
            logged[key] = row["content_hash"]
        for (record_id,) in conn.execute(sa.select(records.c.id).order_by(records.c.id)):
            expected = logged.get(("record", record_id))
            name = f"qualification record {record_id}"
            if expected is None:
                raise ChainBroken(
                    records.name, record_id, f"{name} has no audit row: it was written outside the app."
                )
            if record_hash(_record_row(conn, record_id), _score_rows(conn, record_id)) != expected:
                raise ChainBroken(
                    records.name,
                    record_id,
                    f"{name} or one of its scorecard rows differs from what its audit row recorded: it was "
                    "changed outside the app.",
                )
        for s in conn.execute(sa.select(signoffs).order_by(signoffs.c.id)):
            row = dict(s._mapping)
            if logged.get(("signoff", row["id"])) != signoff_hash(row):
                raise ChainBroken(
                    signoffs.name,
                    row["id"],
                    f"sign-off {row['id']} of qualification record {row['record_id']} differs from its audit "
                    "row or has none: it was changed or written outside the app.",
                )
    except ChainBroken as broken:
        return replace(check, ok=False, problem=broken.problem, table=broken.table, row=broken.row)
    return check


DEMO_SIGNER = "demo set-up"
DEMO_VIA = "automatic: the bundled demo model only, not reviewed by a person"


def record_demo(qs: QualificationStore, qualification, demo_fingerprint: str) -> QualificationRecord:
    """The bundled demo model's scorecard, recorded once and approved automatically so that a live demo
    shows a qualification in force without waiting. Refused for any other model: another model's
    record needs an admin's sign-off. The approval names itself (``DEMO_SIGNER``, ``DEMO_VIA``).

    Returns:
        The demo's record (the existing one when this scorecard is already recorded).
    """
    from .auth import Account

    if not demo_fingerprint or qualification.model_fingerprint != demo_fingerprint:
        raise SignOffRefused("Only the bundled demo model's qualification is approved automatically.")
    for rec in qs.records(demo_fingerprint):
        same = rec.dataset_fingerprint == qualification.dataset["fingerprint"]
        if same and rec.settings == qualification.settings and rec.run_via == DEMO_VIA:
            if rec.approval is None and not rec.signoffs:
                qs.sign_off(rec.id, Account(DEMO_SIGNER, "admin", via=DEMO_VIA), "approve")
                return qs.record(rec.id)
            return rec
    rec = qs.add(qualification, run_by=DEMO_SIGNER, via=DEMO_VIA)
    qs.sign_off(rec.id, Account(DEMO_SIGNER, "admin", via=DEMO_VIA), "approve", note="computed at set-up")
    return qs.record(rec.id)


def qualify_demo(folder, store, progress=None, cancel=None, model=None):
    """Qualify the bundled demo model on the pasted-object set (``evaluation.qualification.DEMO_*``),
    kept in ``folder`` (computed again only when the model, the set or the software change), and
    record it in ``store`` (a ``ReviewStore``), approved as the demo's (``record_demo``).

    Args:
        model: the demo model when the caller has its own copy (never one shared with pages: the
            methods hook it while they run); None loads one.
    Returns:
        (Qualification, QualificationRecord or None when ``cancel`` stopped the run).
    """
    from ..engine.models import load_model
    from ..evaluation import qualification as ql
    from ..evaluation.data import pasted_objects

    demo = model if model is not None else load_model("demo")
    if demo.fingerprint != load_model("demo").fingerprint:
        raise ValueError("qualify_demo qualifies the bundled demo model only.")
    dataset = pasted_objects(ql.DEMO_IMAGES)
    result = ql.cached_qualification(
        demo, dataset, ql.demo_settings(), folder, progress=progress, cancel=cancel
    )
    if not result.complete:
        return result, None
    return result, record_demo(QualificationStore(store), result, demo.fingerprint)
