"""Tamper evidence: every audit and event row carries the sha256 of its canonical JSON and the hash of the
row before it; ``verify`` walks both chains and compares every decision with its last audit row."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

import sqlalchemy as sa

from .schema import (
    GENESIS,
    PG_CHAIN_LOCK,
    AuditCheck,
    Decision,
    as_utc,
    audit,
    decision_from_row,
    decisions,
    events,
)


# ---- hash chain ------------------------------------------------------------------------------------
def _canonical(value):
    if isinstance(value, datetime):
        return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
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
    text = json.dumps(
        _canonical(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_DECISION_FIELDS = (
    "id",
    "batch",
    "item_hash",
    "item_name",
    "reviewer",
    "decision",
    "note",
    "seconds",
    "model_fingerprint",
    "methods",
    "decided_at",
    "version",
)


def decision_hash(d: Decision) -> str:
    """The content hash of a decision row (every column), as audit rows record it."""
    return content_hash({k: getattr(d, k) for k in _DECISION_FIELDS})


def chain_row_hash(table: sa.Table, row: dict) -> str:
    return content_hash({c.name: row.get(c.name) for c in table.columns if c.name != "row_hash"})


def append_chained(conn: sa.Connection, table: sa.Table, row: dict) -> int:
    """Insert ``row`` as the next link of ``table``'s chain: the next id, the previous row's hash,
    this row's hash. Callers hold a write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: the
    advisory lock taken here), so no other writer appends in between."""
    if conn.dialect.name == "postgresql":
        key = PG_CHAIN_LOCK if table is audit else PG_CHAIN_LOCK + 1
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
    last = conn.execute(sa.select(table.c.id, table.c.row_hash).order_by(table.c.id.desc()).limit(1)).first()
    row = dict(
        row, id=(last.id + 1) if last else 1, prev_hash=(last.row_hash or GENESIS) if last else GENESIS
    )
    row["row_hash"] = chain_row_hash(table, row)
    conn.execute(table.insert().values(**row))
    return row["id"]


def append_audit(conn: sa.Connection, **row) -> int:
    return append_chained(conn, audit, row)


def walk_chain(conn: sa.Connection, table: sa.Table, what: str):
    """Yield each row of ``table`` in id order; raise ChainBroken at the first that does not chain."""
    prev, prev_id = GENESIS, None
    for r in conn.execute(sa.select(table).order_by(table.c.id)):
        row = dict(r._mapping)
        if table is audit:
            row["seconds"] = float(row["seconds"])
        where = f"{what} row {row['id']}"
        if not row["row_hash"] or not row["prev_hash"]:
            raise ChainBroken(
                table.name,
                row["id"],
                f"{where} has no hash. A hash is written once, with its row, and this database already "
                "has hash columns, so the row was written, or its hash cleared, outside the app; it is "
                "not repaired.",
            )
        if row["prev_hash"] != prev:
            before = f"row {prev_id}" if prev_id is not None else "the start of the log"
            raise ChainBroken(
                table.name,
                row["id"],
                f"{where} does not follow {before} (its previous-row hash differs): a row was removed, "
                "inserted or replaced there.",
            )
        if not row["row_hash"] or chain_row_hash(table, row) != row["row_hash"]:
            raise ChainBroken(
                table.name,
                row["id"],
                f"{where} was changed after it was written (its content no longer matches its hash).",
            )
        prev, prev_id = row["row_hash"], row["id"]
        yield row


class ChainBroken(Exception):
    def __init__(self, table: str, row: int, problem: str):
        super().__init__(problem)
        self.table, self.row, self.problem = table, row, problem


def verify_chain(conn: sa.Connection) -> AuditCheck:
    counts = {"audit_rows": 0, "event_rows": 0, "decisions": 0}
    head = GENESIS
    try:
        last: dict[int, dict] = {}
        for row in walk_chain(conn, audit, "audit log"):
            counts["audit_rows"] += 1
            last[row["decision_id"]] = row
            head = row["row_hash"]
        for r in conn.execute(sa.select(decisions).order_by(decisions.c.id)):
            d = decision_from_row(r)
            counts["decisions"] += 1
            entry = last.get(d.id)
            name = f"decision {d.id} ({d.reviewer} on {d.item_name} in batch {d.batch})"
            if entry is None:
                raise ChainBroken(
                    "review_decisions", d.id, f"{name} has no audit row: it was written outside the app."
                )
            if entry["decision_hash"] != decision_hash(d):
                raise ChainBroken(
                    "review_decisions",
                    d.id,
                    f"{name} differs from what its last audit row (row {entry['id']}) recorded: it was "
                    "changed outside the app.",
                )
        for _ in walk_chain(conn, events, "sign-in event log"):
            counts["event_rows"] += 1
    except ChainBroken as broken:
        return AuditCheck(
            False, head=head, problem=broken.problem, table=broken.table, row=broken.row, **counts
        )
    return AuditCheck(True, head=head, **counts)
