"""Review store under faults: concurrent writer processes, a writer killed mid-transaction, a
read-only database file and a locked database. Real processes (fork), a real SQLite file and a
real PostgreSQL server (tests/_postgres.py)."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from saliency_core.review import store as rs
from saliency_core.review.store import ReviewStore, StoreError

PROCESSES = 6
ITEMS = 20
REVIEWERS = ("alice", "bob", "carol")
FORK = multiprocessing.get_context("fork")  # no re-import of torch per process


def _item(i: int) -> str:
    return f"{i:064x}"


def _writer(url: str, worker: int, barrier, results) -> None:
    """Record a decision for every (item, reviewer) in a random order; report what record() said."""
    store = ReviewStore(url)
    pairs = [(i, r) for i in range(ITEMS) for r in REVIEWERS]
    rng = random.Random(worker)
    # the first two items in the same order in every process: simultaneous first decisions on the
    # same row; the rest in a different random order per process
    head, tail = pairs[: 2 * len(REVIEWERS)], pairs[2 * len(REVIEWERS) :]
    rng.shuffle(tail)
    pairs = head + tail
    out = []
    barrier.wait(timeout=60)
    for n, (i, reviewer) in enumerate(pairs):
        choice = rng.choice(rs.DECISIONS)
        # every call carries a distinct note, so every call is a real change to be audited
        done = store.record(
            "line-7",
            _item(i),
            f"part-{i:02d}.png",
            reviewer,
            choice,
            note=f"worker {worker} call {n}",
            seconds=1.0,
            model_fingerprint="f" * 64,
            methods={"gradcam": {}},
        )
        out.append((done.audit_id, done.action, done.decision.id, choice, done.decision.note))
    store.close()
    results.put((worker, out))


def test_processes_recording_the_same_items_at_once_lose_nothing(url, capsys):
    ReviewStore(url).close()  # schema first, so the writers start on the same footing
    barrier, results = FORK.Barrier(PROCESSES), FORK.Queue()
    procs = [FORK.Process(target=_writer, args=(url, w, barrier, results)) for w in range(PROCESSES)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    reports = dict(results.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    seconds = time.perf_counter() - started

    calls = [c for w in sorted(reports) for c in reports[w]]
    with ReviewStore(url) as store:
        decisions = store.decisions(batch="line-7")
        log = store.audit_log(batch="line-7")

    # every decision exactly once: one row per (item, reviewer)
    assert len(calls) == PROCESSES * ITEMS * len(REVIEWERS)
    assert len(decisions) == ITEMS * len(REVIEWERS)
    assert len({(d.item_hash, d.reviewer) for d in decisions}) == len(decisions)
    actions = Counter(action for _, action, *_ in calls)
    assert actions == {"created": ITEMS * len(REVIEWERS), "changed": len(calls) - ITEMS * len(REVIEWERS)}

    # the audit log accounts for every change: each reported audit id is there, once, with what was sent
    by_id = {e.id: e for e in log}
    reported = [a for a, *_ in calls]
    lost = [a for a in reported if a not in by_id]
    assert not lost and len(set(reported)) == len(reported) == len(log)
    for audit_id, action, decision_id, choice, note in calls:
        e = by_id[audit_id]
        assert (e.decision_id, e.new_decision, e.new_note, e.action) == (
            decision_id,
            choice,
            note,
            "create" if action == "created" else "change",
        )

    # replaying each decision's audit chain gives exactly the stored row
    chains = defaultdict(list)
    for e in log:
        chains[e.decision_id].append(e)
    for d in decisions:
        chain = chains[d.id]
        assert [e.version for e in chain] == list(range(1, d.version + 1))
        assert chain[0].action == "create" and chain[0].old_decision is None
        for before, after in zip(chain, chain[1:]):
            assert (after.old_decision, after.old_note) == (before.new_decision, before.new_note)
        assert (chain[-1].new_decision, chain[-1].new_note) == (d.decision, d.note)
        assert d.seconds == pytest.approx(float(len(chain)))
    with capsys.disabled():
        print(
            f"\n[{url.split(':')[0]}] processes {PROCESSES}, record() calls {len(calls)}, decisions "
            f"{len(decisions)} ({actions['created']} created, {actions['changed']} changed), audit rows "
            f"{len(log)}, lost: {len(lost)}, duplicated: {len(reported) - len(set(reported))}, "
            f"{seconds:.1f} s"
        )


def _slow_creator(url: str, ready, go) -> None:
    store = ReviewStore(url)
    append = rs.append_audit

    def pause(conn, **row):  # the new decision row is inserted, its transaction still open
        ready.send("inserted")
        go.poll(60)
        return append(conn, **row)

    rs.append_audit = pause
    done = store.record("line-7", _item(0), "part-0.png", "alice", "accept", note="first window")
    ready.send(done.action)


def test_two_windows_deciding_the_same_new_item_at_the_same_moment(url):
    """The second writer waits for the first, then changes its decision: one row, both audited."""
    store = ReviewStore(url)
    parent, child = FORK.Pipe()
    go_parent, go_child = FORK.Pipe()
    proc = FORK.Process(target=_slow_creator, args=(url, child, go_child))
    proc.start()
    try:
        assert parent.poll(60) and parent.recv() == "inserted"
        second = {}
        thread = threading.Thread(
            target=lambda: second.update(
                done=store.record("line-7", _item(0), "part-0.png", "alice", "reject", note="second window")
            )
        )
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the second writer should wait for the first one's transaction"
        assert store.decisions() == []  # nothing committed yet, and readers are not blocked
    finally:
        go_parent.send("go")
    thread.join(30)
    assert parent.poll(30) and parent.recv() == "created"
    proc.join(timeout=30)
    assert second["done"].action == "changed" and second["done"].decision.version == 2
    [d] = store.decisions()
    assert (d.decision, d.note) == ("reject", "second window")
    assert [(e.action, e.old_decision, e.new_decision) for e in store.audit_log()] == [
        ("create", None, "accept"),
        ("change", "accept", "reject"),
    ]
    store.close()


def _killed_writer(url: str, ready) -> None:
    store = ReviewStore(url)
    for i in range(5):
        store.record("line-7", _item(i), f"part-{i}.png", "alice", "accept", note="committed")

    def stall(conn, **row):
        ready.send("decision row written, audit row not yet, transaction open")
        time.sleep(120)

    rs.append_audit = stall  # pause inside record()'s transaction, after the UPDATE
    store.record("line-7", _item(0), "part-0.png", "alice", "reject", note="never committed")


def test_writer_killed_mid_transaction_leaves_a_clean_database(url):
    ReviewStore(url).close()
    parent, child = FORK.Pipe()
    proc = FORK.Process(target=_killed_writer, args=(url, child))
    proc.start()
    assert parent.poll(120), "the writer never reached the middle of its transaction"
    parent.recv()
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)
    assert proc.exitcode == -signal.SIGKILL

    if url.startswith("sqlite"):
        path = url[len("sqlite:///") :]
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with ReviewStore(url, busy_timeout=5) as store:  # opens cleanly, the lock is gone
        decisions = store.decisions()
        assert [(d.item_hash, d.decision, d.note, d.version) for d in decisions] == [
            (_item(i), "accept", "committed", 1) for i in range(5)
        ]
        assert [e.action for e in store.audit_log()] == ["create"] * 5
        # and it takes writes again, including the change that was interrupted
        done = store.record("line-7", _item(0), "part-0.png", "alice", "reject", note="after the crash")
        assert (done.action, done.decision.version) == ("changed", 2)


def _drop_to_nobody() -> None:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def _try_open(path: str, as_nobody: bool, out) -> None:
    if as_nobody:
        _drop_to_nobody()
    try:
        store = ReviewStore(rs.sqlite_url(path))
        store.record("b", _item(9), "x.png", "alice", "accept")
        out.send(("recorded", ""))
    except StoreError as err:
        out.send(("StoreError", str(err)))
    except Exception as err:  # an unexplained error is a failure of the test
        out.send((type(err).__name__, str(err)))


def test_read_only_database_file_gives_a_clear_error():
    folder = Path(tempfile.mkdtemp(prefix="saliency-ro-"))
    try:
        path = folder / "reviews.sqlite"
        with ReviewStore(rs.sqlite_url(path)) as store:
            store.record("b", _item(1), "a.png", "alice", "accept")
        path.chmod(0o444)
        folder.chmod(0o555)
        as_nobody = os.geteuid() == 0  # root ignores file modes: check as an ordinary user
        parent, child = FORK.Pipe()
        proc = FORK.Process(target=_try_open, args=(str(path), as_nobody, child))
        proc.start()
        assert parent.poll(60)
        kind, message = parent.recv()
        proc.join(timeout=30)
        assert kind == "StoreError", (kind, message)
        assert "read-only" in message and str(path) in message and "nothing was written" in message
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
        with ReviewStore(rs.sqlite_url(path)) as store:  # untouched: still exactly the one decision
            assert [d.item_hash for d in store.decisions()] == [_item(1)]
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()


def _hold_lock(path: str, ready, release) -> None:
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN EXCLUSIVE")
    ready.send("locked")
    release.poll(60)
    raw.execute("ROLLBACK")
    raw.close()


def test_locked_database_gives_a_clear_error_and_records_after(tmp_path):
    path = str(tmp_path / "reviews.sqlite")
    store = ReviewStore(rs.sqlite_url(path), busy_timeout=0.3)
    store.record("b", _item(1), "a.png", "alice", "accept")
    ready_parent, ready_child = FORK.Pipe()
    release_parent, release_child = FORK.Pipe()
    proc = FORK.Process(target=_hold_lock, args=(path, ready_child, release_child))
    proc.start()
    try:
        assert ready_parent.poll(60)
        ready_parent.recv()
        started = time.perf_counter()
        with pytest.raises(StoreError) as caught:
            store.record("b", _item(2), "b.png", "alice", "reject")
        waited = time.perf_counter() - started
        text = str(caught.value)
        assert "locked by another program" in text and "0.3 s" in text and "nothing was written" in text
        assert 0.25 <= waited < 10
        assert [d.item_hash for d in store.decisions()] == [_item(1)]  # readers are not blocked (WAL)
    finally:
        release_parent.send("go")
        proc.join(timeout=30)
    done = store.record("b", _item(2), "b.png", "alice", "reject")
    assert done.action == "created"
    assert len(store.decisions()) == 2 and len(store.audit_log()) == 2
    store.close()
