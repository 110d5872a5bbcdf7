"""Tampering with the review history by writing to the database directly: the hash chain and the
decision hashes expose it, and the verifier names the first broken row (API, command line, the
Review page's admin view, reports).

SQLite's REPLACE INTO gets past the append-only triggers; on PostgreSQL an owner can switch the
triggers off (session_replication_role = replica). Real SQLite file and PostgreSQL server."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

import pytest
import skimage
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

import saliency_core as sc
from saliency_core import report as rp
from saliency_core.cli import main
from saliency_core.review import auth
from saliency_core.review import store as rs
from tests._old_database import write_pre_chain_database

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
H1, H2 = "a" * 64, "b" * 64


def _history(store) -> None:
    """alice accepts then rejects cat.png; bob accepts dog.png; one sign-in failure."""
    store.record(
        "b1",
        H1,
        "cat.png",
        "alice",
        "accept",
        note="ears lit",
        seconds=3,
        methods={"smoothgrad": {"noise": 0.15, "samples": 50}},
    )
    store.record("b1", H1, "cat.png", "alice", "reject", note="it looked at the floor", seconds=4.25)
    store.record("b1", H2, "dog.png", "bob", "accept", seconds=1)
    store.append_event("signin_failed", account="mallory", client="ip:203.0.113.7")


def _tamper(store, sql: str) -> None:
    """Run ``sql`` as someone with write access to the database, triggers out of the way."""
    with store._engine.begin() as conn:
        if store.backend == "postgresql":
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql(sql)


def _rewrite_audit_row_2(store) -> None:
    """Make audit row 2 say alice accepted (keeping its stored hashes)."""
    columns = ", ".join(c.name for c in rs.audit.columns)
    values = ", ".join("'accept'" if c.name == "new_decision" else c.name for c in rs.audit.columns)
    if store.backend == "sqlite":
        _tamper(
            store, f"REPLACE INTO review_audit ({columns}) SELECT {values} FROM review_audit WHERE id = 2"
        )
    else:  # the same rewrite where REPLACE does not exist: delete and insert with triggers off
        _tamper(
            store,
            f"CREATE TEMP TABLE keep AS SELECT {values} FROM review_audit WHERE id = 2; "
            "DELETE FROM review_audit WHERE id = 2; "
            f"INSERT INTO review_audit ({columns}) SELECT * FROM keep",
        )


def test_untouched_history_verifies(url):
    with rs.ReviewStore(url) as store:
        _history(store)
        check = store.verify()
    assert check.ok, check.problem
    assert (check.audit_rows, check.decisions, check.event_rows) == (3, 2, 1)
    assert len(check.head) == 64 and check.head != rs.GENESIS


def test_replaced_audit_row_is_detected(url, capsys):
    """Hostile input: REPLACE INTO review_audit rewriting a past decision."""
    with rs.ReviewStore(url) as store:
        _history(store)
        _rewrite_audit_row_2(store)
        assert [e.new_decision for e in store.audit_log()] == ["accept", "accept", "accept"]  # it worked
        check = store.verify()
    assert not check.ok and (check.table, check.row) == ("review_audit", 2)
    assert "audit log row 2 was changed after it was written" in check.problem
    assert main(["audit", "verify", "--database", url]) == 1
    out = capsys.readouterr().out
    assert "did NOT verify" in out and "review_audit row 2" in out


def test_rehashed_audit_row_breaks_the_chain_after_it(url):
    """Hostile input: a rewritten audit row with its own hash recomputed (the algorithm is public)."""
    with rs.ReviewStore(url) as store:
        _history(store)
        row = dict(
            store._engine.connect().execute(sa.select(rs.audit).where(rs.audit.c.id == 2)).one()._mapping
        )
        row.update(new_decision="accept", at=row["at"].replace(tzinfo=UTC))
        forged = rs.chain_row_hash(rs.audit, row)
        _tamper(
            store,
            f"UPDATE review_audit SET new_decision = 'accept', row_hash = '{forged}' WHERE id = 2"
            if store.backend == "postgresql"
            else "REPLACE INTO review_audit SELECT id, decision_id, batch, item_hash, item_name, reviewer, "
            "actor, "
            f"action, old_decision, 'accept', old_note, new_note, seconds, version, at, decision_hash, "
            f"prev_hash, '{forged}' FROM review_audit WHERE id = 2",
        )
        check = store.verify()
    assert not check.ok and (check.table, check.row) == ("review_audit", 3)
    assert "does not follow row 2" in check.problem


def test_updated_decision_is_detected(url):
    """Hostile input: UPDATE review_decisions (allowed by the triggers: the app changes decisions)."""
    with rs.ReviewStore(url) as store:
        _history(store)
        with store._engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE review_decisions SET decision = 'accept', note = '' WHERE reviewer = 'alice'"
            )
        [alice] = store.decisions(reviewer="alice")
        check = store.verify()
    assert not check.ok and (check.table, check.row) == ("review_decisions", alice.id)
    assert (
        f"decision {alice.id} (alice on cat.png in batch b1) differs from what its last audit row"
        in check.problem
    )


def test_removed_sign_in_event_is_detected(url):
    """Hostile input: deleting the record of a failed sign-in (triggers switched off)."""
    with rs.ReviewStore(url) as store:
        _history(store)
        store.append_event("account_locked", account="alice", until=datetime(2030, 1, 1, tzinfo=UTC))
        if store.backend == "sqlite":  # the owner of the file can drop a trigger
            _tamper(store, "DROP TRIGGER review_events_no_delete")
        _tamper(store, "DELETE FROM review_events WHERE id = 1")
        check = store.verify()
    assert not check.ok and (check.table, check.row) == ("review_events", 2)


def test_database_from_before_the_chain_is_sealed_on_opening(tmp_path):
    """A review database written by the previous version (no hash columns) gains them, its rows
    are sealed as found (recorded as an event), and tampering afterwards is detected."""
    url = rs.sqlite_url(tmp_path / "old.sqlite")
    write_pre_chain_database(url)
    with rs.ReviewStore(url) as store:
        assert store.verify().ok
        assert [e.kind for e in store.events()] == ["chain_started"]
        store.record("b", H1, "cat.png", "alice", "accept", note="n")
        assert store.verify().ok
        _rewrite_audit_row_2(store)
        assert store.verify().row == 2


@pytest.fixture
def admin_page(tmp_path, monkeypatch):
    users = tmp_path / "users.toml"
    auth.add_user("quinn", "quinn-password-1", role="admin", path=users, rounds=4)
    monkeypatch.setenv("SALIENCY_DB", str(tmp_path / "reviews.sqlite"))
    monkeypatch.setenv("SALIENCY_USERS", str(users))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return rs.sqlite_url(tmp_path / "reviews.sqlite")


def test_admin_view_names_the_first_broken_row(admin_page):
    with rs.ReviewStore(admin_page) as store:
        _history(store)
        _rewrite_audit_row_2(store)
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300).run()
    at = at.switch_page("pages/review.py").run()
    at.text_input(key="signin_user").input("quinn")
    at.text_input(key="signin_password").input("quinn-password-1")
    next(b for b in at.button if b.label == "Sign in").click()
    at = at.run()
    next(b for b in at.button if b.label == "Verify the audit log").click()
    at = at.run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any("did NOT verify" in e and "row 2 was changed" in e for e in errors), errors
    assert "First broken row: review_audit row 2." in [c.value for c in at.caption]


def test_report_states_whether_the_chain_verified(tmp_path):
    with rs.ReviewStore(rs.sqlite_url(tmp_path / "r.sqlite")) as store:
        _history(store)
        good = store.verify().record()
        _rewrite_audit_row_2(store)
        bad = store.verify().record()
        reviews = store.decisions()
    model = sc.load_model("demo")
    photo = os.path.join(os.path.dirname(skimage.__file__), "data", "chelsea.png")
    report = rp.build_report(model, [photo], ["gradient"], reviews=reviews, audit=good)
    assert "The review audit log verified when this report was made" in report.to_html()
    assert good["head"] in report.to_html()
    report.audit = bad
    html = report.to_html()
    assert "WARNING: the review audit log did NOT verify" in html and "row 2 was changed" in html
    report.audit = None
    assert "The review audit log was not checked for this report" in report.to_html()
