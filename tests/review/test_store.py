"""Review store: one suite, run against a real SQLite file and a real PostgreSQL server.

The PostgreSQL cases start a throwaway cluster (tests/_postgres.py); they are skipped only when
Debian's postgresql binaries are not installed (``make test`` and ``.ci/run`` install them).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from saliency_core.review import store as rs
from saliency_core.review import summary as rsum
from saliency_core.review.store import DecisionConflict, ReviewStore, StoreError

H1, H2, H3, H4 = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
METHODS = {"gradient": {}, "smoothgrad": {"samples": 50, "noise": 0.15, "seed": 0}}


@pytest.fixture
def store(url):
    with ReviewStore(url) as s:
        yield s


def _record(store, item=H1, reviewer="alice", decision="accept", **kw):
    kw.setdefault("model_fingerprint", "f" * 64)
    kw.setdefault("methods", METHODS)
    return store.record("batch-1", item, f"{item[:4]}.png", reviewer, decision, **kw)


def test_record_stores_every_field_and_one_audit_row(store):
    before = datetime.now(UTC)
    done = _record(store, note="ears and whiskers lit", seconds=12.5)
    assert done.action == "created" and done.audit_id is not None
    d = done.decision
    assert (d.batch, d.item_hash, d.item_name, d.reviewer, d.decision) == (
        "batch-1",
        H1,
        "aaaa.png",
        "alice",
        "accept",
    )
    assert (d.note, d.seconds, d.model_fingerprint, d.methods, d.version) == (
        "ears and whiskers lit",
        12.5,
        "f" * 64,
        METHODS,
        1,
    )
    assert d.decided_at.tzinfo is not None
    assert before - timedelta(seconds=1) <= d.decided_at <= datetime.now(UTC)
    assert store.decisions() == [d]
    assert store.decision("batch-1", H1, "alice") == d
    [entry] = store.audit_log()
    assert (entry.id, entry.decision_id, entry.action, entry.actor) == (
        done.audit_id,
        d.id,
        "create",
        "alice",
    )
    assert (entry.old_decision, entry.new_decision, entry.new_note, entry.version) == (
        None,
        "accept",
        d.note,
        1,
    )


def test_double_submit_writes_nothing(store):
    first = _record(store, note="ok", seconds=3)
    again = _record(store, note="ok", seconds=3)
    assert again.action == "unchanged" and again.audit_id is None
    assert again.decision == first.decision
    assert len(store.decisions()) == 1 and len(store.audit_log()) == 1


def test_changes_are_appended_never_overwritten(store):
    _record(store, decision="accept", note="", seconds=4)
    _record(store, decision="reject", note="", seconds=6)
    last = _record(store, decision="reject", note="background, not the part", seconds=2)
    assert last.action == "changed"
    d = last.decision
    assert (d.decision, d.note, d.version, d.seconds) == ("reject", "background, not the part", 3, 12.0)
    log = store.audit_log(decision_id=d.id)
    assert [(e.action, e.old_decision, e.new_decision, e.version) for e in log] == [
        ("create", None, "accept", 1),
        ("change", "accept", "reject", 2),
        ("change", "reject", "reject", 3),
    ]
    assert [(e.old_note, e.new_note) for e in log][2] == ("", "background, not the part")
    assert [e.seconds for e in log] == [4.0, 6.0, 2.0]
    assert [e.at for e in log] == sorted(e.at for e in log)


def test_stale_page_gets_a_conflict_and_nothing_is_written(store):
    # two windows of one reviewer both showed "no decision yet" (version 0)
    _record(store, decision="accept", expected_version=0)
    with pytest.raises(DecisionConflict, match="changed elsewhere") as caught:
        _record(store, decision="reject", expected_version=0)
    assert caught.value.current.decision == "accept"
    assert [d.decision for d in store.decisions()] == ["accept"]
    assert len(store.audit_log()) == 1
    # the same click arriving twice (double submit) is not a conflict
    assert _record(store, decision="accept", expected_version=0).action == "unchanged"
    assert _record(store, decision="reject", expected_version=1).decision.version == 2


def test_one_decision_per_item_reviewer_and_batch(store):
    _record(store, reviewer="alice")
    _record(store, reviewer="bob", decision="reject")
    store.record("batch-2", H1, "aaaa.png", "alice", "needs_expert")
    rows = {(d.batch, d.reviewer): d.decision for d in store.decisions()}
    assert rows == {
        ("batch-1", "alice"): "accept",
        ("batch-1", "bob"): "reject",
        ("batch-2", "alice"): "needs_expert",
    }
    assert [d.reviewer for d in store.decisions(batch="batch-1", reviewer="bob")] == ["bob"]
    assert len(store.audit_log(batch="batch-1")) == 2


def test_database_refuses_to_edit_or_delete_history(store):
    _record(store)
    engine = store._engine
    for sql in (
        "UPDATE review_audit SET new_decision = 'reject'",
        "DELETE FROM review_audit",
        "DELETE FROM review_decisions",
    ):
        with pytest.raises(sa.exc.DBAPIError, match="append-only|never deleted"):
            with engine.begin() as conn:
                conn.execute(sa.text(sql))
    with pytest.raises(sa.exc.IntegrityError):  # the unique constraint itself, bypassing record()
        with engine.begin() as conn:
            conn.execute(
                rs.decisions.insert().values(
                    batch="batch-1",
                    item_hash=H1,
                    item_name="dup.png",
                    reviewer="alice",
                    decision="reject",
                    note="",
                    seconds=0,
                    model_fingerprint="",
                    methods={},
                    decided_at=datetime.now(UTC),
                    version=1,
                )
            )
    assert len(store.decisions()) == 1 and len(store.audit_log()) == 1


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"decision": "maybe"}, "accept, reject, needs_expert; got 'maybe'"),
        ({"seconds": -1}, "finite number >= 0; got -1"),
        ({"seconds": float("nan")}, "finite number"),
        ({"reviewer": " "}, "reviewer name must be a non-empty text"),
        ({"note": "x" * (rs.MAX_NOTE + 1)}, f"at most {rs.MAX_NOTE} characters"),
    ],
)
def test_bad_arguments_are_plain_value_errors(store, kwargs, words):
    with pytest.raises(ValueError) as caught:
        _record(store, **kwargs)
    assert words in str(caught.value)
    assert store.decisions() == [] and store.audit_log() == []


def test_batches_keep_the_methods_of_their_first_opening(store):
    first = store.open_batch(
        "line-3", source="folder:line-3", created_by="alice", model_fingerprint="f", methods={"gradcam": {}}
    )
    again = store.open_batch(
        "line-3", source="samples", created_by="bob", model_fingerprint="g", methods={"gradient": {}}
    )
    assert again == first and again.methods == {"gradcam": {}} and again.created_by == "alice"
    assert [b.name for b in store.batches()] == ["line-3"]
    assert store.batch("nope") is None
    assert store.last_batch("alice") == "line-3"  # opened, nothing decided yet
    store.record("other", H1, "x.png", "alice", "accept")
    assert store.last_batch("alice") == "other"  # the batch of the latest decision
    assert store.last_batch("carol") is None


def test_decisions_survive_closing_and_reopening(url):
    with ReviewStore(url) as s:
        made = [_record(s, item=h, decision=d).decision for h, d in ((H1, "accept"), (H2, "reject"))]
    with ReviewStore(url) as s:
        assert s.decisions() == made
        assert len(s.audit_log()) == 2


def test_summary_counts_kappa_median_and_csv(store):
    # alice and bob both decide four items; they agree on 3 of 4.
    votes = {
        "alice": ["accept", "accept", "reject", "needs_expert"],
        "bob": ["accept", "reject", "reject", "needs_expert"],
    }
    for reviewer, choices in votes.items():
        for item, choice, secs in zip((H1, H2, H3, H4), choices, (10, 20, 30, 40)):
            _record(
                store,
                item=item,
                reviewer=reviewer,
                decision=choice,
                seconds=secs,
                note=f"{reviewer} on {item[:1]}",
            )
    _record(store, item=H1, reviewer="carol", decision="accept", seconds=5)
    s = rsum.summarize(store.decisions(batch="batch-1"))
    assert (s.items, s.decisions) == (4, 9)
    assert s.by_decision == {"accept": 4, "reject": 3, "needs_expert": 2}
    assert s.by_reviewer["alice"] == {"accept": 2, "reject": 1, "needs_expert": 1}
    assert s.by_reviewer["carol"] == {"accept": 1, "reject": 0, "needs_expert": 0}
    ab = next(a for a in s.agreement if (a.reviewer_a, a.reviewer_b) == ("alice", "bob"))
    # p_o = 3/4; p_e = (2/4)(1/4) + (1/4)(2/4) + (1/4)(1/4) = 5/16; kappa = (12/16 - 5/16) / (11/16)
    assert (ab.items, ab.agreed) == (4, 3) and ab.kappa == pytest.approx(7 / 11)
    ac = next(a for a in s.agreement if (a.reviewer_a, a.reviewer_b) == ("alice", "carol"))
    assert (ac.items, ac.kappa) == (1, None)  # one shared item, both "accept": kappa undefined
    # accept: 10, 20, 10, 5 -> 10; reject: 30, 20, 30 -> 30; needs expert: 40, 40 -> 40
    assert s.median_seconds == {"accept": 10.0, "reject": 30.0, "needs_expert": 40.0}
    rows = list(csv.DictReader(io.StringIO(rsum.to_csv(store.decisions()))))
    assert len(rows) == 9 and set(rows[0]) == set(rsum.CSV_COLUMNS)
    assert {r["note"] for r in rows if r["reviewer"] == "bob"} == {f"bob on {c}" for c in "abcd"}
    hidden = list(csv.DictReader(io.StringIO(rsum.to_csv(store.decisions(), include_notes=False))))
    assert {r["note"] for r in hidden} == {""}


# ---- independent of the backend -----------------------------------------------------------------------
def test_cohen_kappa_textbook_values():
    # 50 items: both yes 20, yes/no 5, no/yes 10, both no 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert rsum.cohen_kappa(a, b) == pytest.approx(0.4)
    assert rsum.cohen_kappa(a, a) == 1.0
    assert rsum.cohen_kappa(["x", "y"], ["y", "x"]) == pytest.approx(-1.0)
    assert rsum.cohen_kappa(["x"] * 3, ["x"] * 3) is None
    with pytest.raises(ValueError, match="same length; got 2 and 1"):
        rsum.cohen_kappa(["x", "y"], ["x"])


def test_database_url_choice(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SALIENCY_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    assert rs.database_url() == "sqlite:///" + str(tmp_path / "data" / "reviews.sqlite")
    monkeypatch.setenv("SALIENCY_DB", str(tmp_path / "x.sqlite"))
    assert rs.database_url() == "sqlite:///" + str(tmp_path / "x.sqlite")
    monkeypatch.setenv("DATABASE_URL", "postgres://qa:secret@db.example:5432/reviews")
    assert rs.database_url() == "postgresql+psycopg://qa:secret@db.example:5432/reviews"
    assert rs.database_url("sqlite:////srv/r.sqlite") == "sqlite:////srv/r.sqlite"


def test_default_sqlite_file_and_folder_are_created(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SALIENCY_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    with ReviewStore() as s:
        s.record("b", H1, "a.png", "alice", "accept")
        assert s.where == str(tmp_path / "data" / "reviews.sqlite")
    assert (tmp_path / "data" / "reviews.sqlite").is_file()
    import sqlite3

    with sqlite3.connect(tmp_path / "data" / "reviews.sqlite") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT decision FROM review_decisions").fetchall() == [("accept",)]


@pytest.mark.parametrize(
    "url, words",
    [
        ("sqlite://", "in-memory database"),
        ("sqlite:///:memory:", "in-memory database"),
        ("mysql://u@h/db", "SQLite or PostgreSQL"),
        ("not a url", "Expected a database URL"),
    ],
)
def test_unusable_urls_are_refused_in_words(url, words):
    with pytest.raises(StoreError, match=words):
        ReviewStore(url)


def test_not_a_database_file(tmp_path):
    bad = tmp_path / "notes.sqlite"
    bad.write_text("these are my notes, not a database " * 200)
    with pytest.raises(StoreError, match="is not a usable SQLite database"):
        ReviewStore(rs.sqlite_url(bad))


def test_unreachable_postgresql_server_is_reported(monkeypatch):
    pytest.importorskip("psycopg")
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError) as caught:
        ReviewStore(f"postgresql://qa:secret@127.0.0.1:{port}/reviews")
    text = str(caught.value)
    assert "cannot be reached" in text and f"127.0.0.1:{port}" in text and "DATABASE_URL" in text
    assert "secret" not in text  # the password never reaches the page
