"""Tamper evidence that no code path can launder: someone with write access to the database clears
a row's hashes and edits the decision; the next start of the app must not seal the edited row.
A row without a hash in a database that already has hash columns is a verification failure named
in words; only a database from before the chain (no hash columns at all) is sealed, once, and the
sealing is recorded in the chain. Real SQLite file and PostgreSQL server (``url`` fixture)."""

from __future__ import annotations

import sqlalchemy as sa

from saliency_core.review import store as rs
from tests._old_database import write_pre_chain_database

H1, H2 = "a" * 64, "b" * 64
NO_HASH = "has no hash. A hash is written once, with its row"


def _tamper(url: str, *sql: str) -> None:
    """Run ``sql`` as the database's owner with the append-only triggers out of the way."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            else:
                conn.exec_driver_sql("DROP TRIGGER IF EXISTS review_audit_no_update")
                conn.exec_driver_sql("DROP TRIGGER IF EXISTS review_events_no_update")
            for statement in sql:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def _history(url: str) -> None:
    with rs.ReviewStore(url) as store:
        store.record("b1", H1, "cat.png", "alice", "accept", note="ears lit", seconds=3)
        store.record("b1", H1, "cat.png", "alice", "reject", note="it looked at the floor", seconds=4)
        store.record("b1", H2, "dog.png", "bob", "accept", seconds=1)
        store.append_event("signin_failed", account="mallory", client="ip:203.0.113.7")
        assert store.verify().ok


def test_cleared_audit_hashes_and_an_edited_decision_are_not_sealed_on_restart(url):
    _history(url)
    _tamper(
        url,
        "UPDATE review_audit SET decision_hash = NULL, prev_hash = NULL, row_hash = NULL WHERE id = 2",
        "UPDATE review_decisions SET decision = 'accept' WHERE id = 1",
    )
    for _ in range(2):  # the next start of the app, and the one after
        with rs.ReviewStore(url) as store:
            check = store.verify()
            assert not check.ok and (check.table, check.row) == ("review_audit", 2)
            assert NO_HASH in check.problem and "not repaired" in check.problem
            assert "review_audit" in check.message or "row 2" in check.message
            assert [e.kind for e in store.events()] == ["signin_failed"]  # no sealing was recorded
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT row_hash FROM review_audit WHERE id = 2").scalar() is None
    engine.dispose()


def test_a_cleared_event_hash_is_named_not_repaired(url):
    _history(url)
    _tamper(url, "UPDATE review_events SET row_hash = '' WHERE id = 1")
    with rs.ReviewStore(url) as store:
        check = store.verify()
    assert not check.ok and (check.table, check.row) == ("review_events", 1) and NO_HASH in check.problem


def test_migration_from_before_the_chain_seals_once_and_records_itself(url):
    write_pre_chain_database(url)
    with rs.ReviewStore(url) as store:
        assert store.verify().ok
        (started,) = store.events()
        assert (
            started.kind == "chain_started"
            and "2 audit row(s) written before the hash chain" in started.detail
        )
    with rs.ReviewStore(url) as store:  # reopening seals nothing more
        assert [e.kind for e in store.events()] == ["chain_started"] and store.verify().ok


def test_after_migration_a_cleared_row_is_a_failure_not_a_second_sealing(url):
    write_pre_chain_database(url)
    rs.ReviewStore(url).close()
    _tamper(
        url,
        "UPDATE review_audit SET decision_hash = NULL, prev_hash = NULL, row_hash = NULL WHERE id = 2",
        "UPDATE review_decisions SET decision = 'accept' WHERE id = 1",
    )
    with rs.ReviewStore(url) as store:
        check = store.verify()
        assert not check.ok and check.row == 2 and NO_HASH in check.problem
        assert [e.kind for e in store.events()] == ["chain_started"]
