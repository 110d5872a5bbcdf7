"""Qualification records in the review database (SQLite and PostgreSQL): sign-off only by an admin,
record and approval chained into the audit log, a changed scorecard row breaks verification, the
newest approved record of the model's own weights is the one in force."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from saliency_core.evaluation.qualification import Qualification
from saliency_core.review.auth import Account
from saliency_core.review.qualification import QualificationStore, SignOffRefused
from saliency_core.review.store import ReviewStore

FP, OTHER = "f" * 64, "e" * 64
LEAD = Account("lead@example.org", "admin", via="oidc")


def _qualification(fingerprint: str = FP, verdict: str = "qualified") -> Qualification:
    rows = [
        {
            "method": "gradcam",
            "method_label": "Grad-CAM",
            "criterion": criterion,
            "criterion_label": criterion,
            "figure": figure,
            "low": figure - 0.05,
            "high": figure + 0.05,
            "rule": "a stated rule",
            "verdict": "pass",
            "detail": "60 images",
        }
        for criterion, figure in (("pointing_game", 0.8), ("sanity", 0.12))
    ]
    return Qualification(
        rows=rows,
        verdicts={"gradcam": {"verdict": verdict, "reason": "Passes every criterion.", "failing": []}},
        model={"name": "demo", "fingerprint": fingerprint},
        dataset={"fingerprint": "d" * 64, "description": "pasted objects", "images": 60},
        settings={"methods": ["gradcam"], "step_fraction": 0.2},
        rules={"min_images": 50, "sanity_threshold": 0.5},
        versions={"saliency_core": "test"},
        images=60,
    )


def _tamper(store, sql: str) -> None:
    """Write as someone with direct access to the database, past the append-only triggers."""
    with store._engine.begin() as conn:
        if store.backend == "postgresql":
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql(sql)


def test_sign_off_is_refused_to_a_non_admin_and_nothing_is_written(url):
    with ReviewStore(url) as store:
        qs = QualificationStore(store)
        rec = qs.add(_qualification(), run_by="alice", via="command line")
        with pytest.raises(SignOffRefused, match="Only an admin"):
            qs.sign_off(rec.id, Account("bob", "reviewer"), "approve")
        assert qs.record(rec.id).signoffs == []
        assert qs.in_force(FP) is None  # recorded but not signed off: not in force
        with store.transaction() as conn:
            actions = [r.action for r in conn.execute(sa.text("SELECT action FROM qualification_audit"))]
        assert actions == ["recorded"]


def test_record_and_approval_are_chained_and_verify(url):
    with ReviewStore(url) as store:
        qs = QualificationStore(store)
        rec = qs.add(_qualification(), run_by="alice", via="command line")
        signed = qs.sign_off(rec.id, LEAD, "approve", note="scorecard read")
        with store.transaction() as conn:
            log = [
                dict(r._mapping)
                for r in conn.execute(sa.text("SELECT * FROM qualification_audit ORDER BY id"))
            ]
        assert [(r["action"], r["record_id"], r["actor"]) for r in log] == [
            ("recorded", rec.id, "alice"),
            ("approve", rec.id, "lead@example.org"),
        ]
        assert log[1]["prev_hash"] == log[0]["row_hash"]
        check = store.verify()
        assert check.ok, check.problem
        force = qs.in_force(FP)
        assert (
            force.id == rec.id and force.approval.admin == "lead@example.org" and force.approval.via == "oidc"
        )
        assert signed.note == "scorecard read"
        assert force.scorecard[0]["figure"] == pytest.approx(0.8)


def test_changed_scorecard_row_breaks_verification(url):
    with ReviewStore(url) as store:
        qs = QualificationStore(store)
        rec = qs.add(_qualification(), run_by="alice")
        qs.sign_off(rec.id, LEAD)
        assert store.verify().ok
        with pytest.raises(sa.exc.DBAPIError):  # the app's own connections cannot change it
            with store._engine.begin() as conn:
                conn.exec_driver_sql("UPDATE qualification_scores SET figure = 0.99")
        if store.backend == "sqlite":  # REPLACE gets past the triggers
            _tamper(
                store,
                "REPLACE INTO qualification_scores (record_id, method, criterion, position, figure, "
                "low, high, rule, verdict, detail) SELECT record_id, method, criterion, position, 0.99, "
                "low, high, rule, verdict, detail FROM qualification_scores WHERE criterion = 'sanity'",
            )
        else:
            _tamper(store, "UPDATE qualification_scores SET figure = 0.99 WHERE criterion = 'sanity'")
        check = store.verify()
    assert not check.ok
    assert (check.table, check.row) == ("qualification_records", rec.id)
    assert "scorecard rows differs" in check.problem


def test_newest_approved_record_of_the_models_own_weights_is_in_force(url):
    with ReviewStore(url) as store:
        qs = QualificationStore(store)
        first = qs.add(_qualification(), run_by="alice")
        qs.sign_off(first.id, LEAD)
        second = qs.add(_qualification(verdict="provisional"), run_by="alice")
        assert qs.in_force(FP).id == first.id  # the newer one is not approved yet
        qs.sign_off(second.id, LEAD)
        assert qs.in_force(FP).id == second.id
        qs.sign_off(second.id, LEAD, "reject", note="wrong data set")
        assert qs.in_force(FP).id == first.id
        other = qs.add(_qualification(fingerprint=OTHER), run_by="alice")
        qs.sign_off(other.id, LEAD)
        assert qs.in_force(FP).id == first.id  # a record of other weights is never in force for these
        assert qs.in_force("0" * 64) is None
        assert [r.id for r in qs.records(FP)] == [second.id, first.id]
        assert store.verify().ok


def test_only_the_demo_is_approved_automatically_and_only_once(url):
    from saliency_core.review.qualification import DEMO_SIGNER, record_demo

    with ReviewStore(url) as store:
        qs = QualificationStore(store)
        with pytest.raises(SignOffRefused, match="Only the bundled demo model"):
            record_demo(qs, _qualification(fingerprint=OTHER), FP)
        first = record_demo(qs, _qualification(), FP)
        again = record_demo(qs, _qualification(), FP)  # the next server start: nothing new written
        assert first.id == again.id and len(qs.records(FP)) == 1
        assert qs.in_force(FP).approval.admin == DEMO_SIGNER
        assert "not reviewed by a person" in qs.in_force(FP).approval.via
        assert store.verify().ok
