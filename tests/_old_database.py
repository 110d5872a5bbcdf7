"""A review database as the version before the hash chain wrote it, for the migration tests."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from saliency_core.review import store as rs

H1 = "a" * 64


def write_pre_chain_database(url: str) -> None:
    """A review database as the version before the hash chain wrote it: no hash columns, one
    decision (alice rejects cat.png after accepting it) and its two audit rows."""
    old = sa.MetaData()
    hashes = {"decision_hash", "prev_hash", "row_hash"}
    for table in (rs.batches, rs.decisions, rs.audit):
        sa.Table(table.name, old, *[c._copy() for c in table.columns if c.name not in hashes])
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        old.create_all(conn)
        conn.execute(
            old.tables["review_decisions"]
            .insert()
            .values(
                id=1,
                batch="b",
                item_hash=H1,
                item_name="cat.png",
                reviewer="alice",
                decision="reject",
                note="n",
                seconds=2.0,
                model_fingerprint="",
                methods={},
                decided_at=now,
                version=2,
            )
        )
        for n, (before, after) in enumerate(((None, "accept"), ("accept", "reject")), 1):
            conn.execute(
                old.tables["review_audit"]
                .insert()
                .values(
                    id=n,
                    decision_id=1,
                    batch="b",
                    item_hash=H1,
                    item_name="cat.png",
                    reviewer="alice",
                    actor="alice",
                    action="create" if n == 1 else "change",
                    old_decision=before,
                    new_decision=after,
                    old_note=None,
                    new_note="n",
                    seconds=1.0,
                    version=n,
                    at=now,
                )
            )
    engine.dispose()
