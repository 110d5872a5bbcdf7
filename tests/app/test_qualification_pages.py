"""Qualification governs what the pages show (AppTest, real SQLite file, real demo model): with a
record in force Review and Gallery start from the qualified methods and Explain marks an unqualified
one in words; SALIENCY_HIDE_UNQUALIFIED=1 keeps unqualified methods from reviewers; without a record
the pages say "not qualified yet"; the Qualify page shows the scorecard and signs off for admins only."""

import os
import time

import pytest
from conftest import shown
from streamlit.testing.v1 import AppTest

import pages._signin as signin
import saliency_core as sc
from saliency_core.evaluation.qualification import Qualification
from saliency_core.review import auth
from saliency_core.review.auth import Account
from saliency_core.review.qualification import QualificationStore
from saliency_core.review.store import ReviewStore, sqlite_url

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUIDED_REASON = (
    "Fails randomisation sanity check (the map stays like the trained model's when the model is destroyed "
    "on 3 of 3 sampled images (rank correlation up to 0.81, not below 0.50))."
)
VERDICTS = {
    "gradient": {"verdict": "qualified", "reason": "Passes every criterion.", "failing": []},
    "gradcam": {"verdict": "qualified", "reason": "Passes every criterion.", "failing": []},
    "guided_backprop": {"verdict": "not qualified", "reason": GUIDED_REASON, "failing": ["sanity"]},
    "smoothgrad": {
        "verdict": "provisional",
        "reason": "Provisional: undecided: reproducibility.",
        "failing": [],
    },
}


def _scorecard(fingerprint: str) -> Qualification:
    rows = [
        {
            "method": m,
            "method_label": sc.METHODS[m].label,
            "criterion": "sanity",
            "criterion_label": "Randomisation sanity check",
            "figure": 0.81 if m == "guided_backprop" else 0.2,
            "low": 0.7 if m == "guided_backprop" else 0.1,
            "high": 0.81 if m == "guided_backprop" else 0.3,
            "rule": "rank correlation below 0.50 on every sampled image",
            "verdict": "fail" if m == "guided_backprop" else "pass",
            "detail": "3 images",
        }
        for m in VERDICTS
    ]
    return Qualification(
        rows=rows,
        verdicts=VERDICTS,
        model={"name": "demo", "fingerprint": fingerprint},
        dataset={"fingerprint": "d" * 64, "description": "pasted objects", "images": 60},
        settings={"methods": list(VERDICTS)},
        rules={"min_images": 50},
        versions={},
        images=60,
    )


@pytest.fixture
def in_force(tmp_path, monkeypatch):
    """A review database holding a signed-off scorecard of the demo model."""
    path = tmp_path / "reviews.sqlite"
    monkeypatch.setenv("SALIENCY_DB", str(path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SALIENCY_HIDE_UNQUALIFIED", raising=False)
    with ReviewStore(sqlite_url(path)) as store:
        qs = QualificationStore(store)
        rec = qs.add(_scorecard(sc.load_model("demo").fingerprint), run_by="alice", via="test")
        qs.sign_off(rec.id, Account("quinn", "admin"), note="checked")
    return sqlite_url(path)


def _page(page: str, methods: list[str]) -> AppTest:
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300)
    at.session_state["methods"] = methods
    at = at.run()
    at.switch_page(page)
    at.session_state["methods"] = methods
    at = at.run()
    assert not at.exception, at.exception
    return at


def _captions(at) -> str:
    return " | ".join(shown(c.value) for c in at.caption)


def test_review_and_gallery_start_from_the_qualified_methods(in_force):
    every = ["gradient", "guided_backprop", "smoothgrad", "gradcam"]
    review = _page("pages/review.py", every)
    assert review.multiselect(key="rb_methods").value == ["gradcam", "gradient"]
    assert "Guided backprop" in review.multiselect(key="rb_methods").options  # offered, not chosen
    assert "Qualified for this model: Gradient, Grad-CAM (since " in _captions(review)
    assert "on 60 annotated images, signed off by quinn; see the scorecard" in _captions(review)
    gallery = _page("pages/gallery.py", every)
    assert gallery.multiselect(key="go_methods").value == ["gradcam", "gradient"]


def test_hide_setting_keeps_unqualified_methods_from_reviewers(in_force, monkeypatch):
    monkeypatch.setenv("SALIENCY_HIDE_UNQUALIFIED", "1")
    review = _page("pages/review.py", ["gradient", "guided_backprop"])
    assert review.multiselect(key="rb_methods").options == ["Grad-CAM", "Gradient"]
    gallery = _page("pages/gallery.py", ["gradient", "guided_backprop"])
    assert gallery.multiselect(key="go_methods").options == ["Grad-CAM", "Gradient"]


def test_explain_marks_an_unqualified_method_in_words(in_force):
    at = _page("pages/explain.py", ["gradcam", "guided_backprop"])
    warnings = " | ".join(shown(w.value) for w in at.warning)
    assert "Guided backprop is not qualified for this model. Fails randomisation sanity check" in warnings
    assert "Grad-CAM is qualified for this model." in _captions(at)


def test_no_record_says_not_qualified_yet_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_DB", str(tmp_path / "empty.sqlite"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    at = _page("pages/report.py", ["gradcam"])
    text = _captions(at)
    assert "Not qualified yet: no method has a signed-off qualification for this model." in text
    assert "python -m saliency_core qualify" in text


def test_qualify_page_shows_the_scorecard_and_signs_off_for_admins_only(in_force, tmp_path, monkeypatch):
    users = tmp_path / "users.toml"  # signed in through the sign-in gate's local accounts
    auth.add_user("bob", "bob-password-1", path=users, rounds=4)
    auth.add_user("quinn", "quinn-password-1", role="admin", path=users, rounds=4)
    monkeypatch.setenv("SALIENCY_USERS", str(users))
    with ReviewStore(in_force) as store:  # a newer scorecard, awaiting sign-off
        newer = QualificationStore(store).add(_scorecard(sc.load_model("demo").fingerprint), run_by="bob")
    at = _page("pages/qualify.py", ["gradcam"])
    errors = " | ".join(shown(e.value) for e in at.error)
    assert "Guided backprop: not qualified.** Fails randomisation sanity check" in errors
    table = at.dataframe[0].value  # the newest scorecard, chosen first
    assert set(table["Criterion"]) == {"Randomisation sanity check"} and "Interval" in table
    assert at.button(key="FormSubmitter:qualify_signoff-Approve").disabled  # not signed in
    at.session_state[signin.LOCAL_KEY] = {"name": "bob", "at": time.time()}
    at = at.run()
    assert at.button(key="FormSubmitter:qualify_signoff-Approve").disabled  # a reviewer cannot
    at.session_state[signin.LOCAL_KEY] = {"name": "quinn", "at": time.time()}
    at = at.run()
    at.text_input(key="qualify_note").input("read every row")
    at = at.button(key="FormSubmitter:qualify_signoff-Approve").click().run()
    assert not at.exception, at.exception
    with ReviewStore(in_force) as store:
        force = QualificationStore(store).in_force(sc.load_model("demo").fingerprint)
        assert (
            force.id == newer.id
            and force.approval.admin == "quinn"
            and force.approval.note == "read every row"
        )
        assert store.verify().ok


def test_qualify_page_runs_records_and_says_why_in_words(tmp_path, monkeypatch):
    """A run from the page (10 pasted images, Grad-CAM and guided backprop, cheap curves): progress, then
    the scorecard recorded for sign-off, the verdicts in words."""
    monkeypatch.setenv("SALIENCY_DB", str(tmp_path / "reviews.sqlite"))
    monkeypatch.setenv("SALIENCY_QUALIFICATION_DIR", str(tmp_path / "qualification"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    at = _page("pages/qualify.py", ["gradcam", "guided_backprop"])
    at.number_input(key="qualify_pasted").set_value(10)
    at.select_slider(key="qualify_step").set_value(0.2)
    at = at.button(key="FormSubmitter:qualify_form-Run qualification").click().run()
    assert not at.exception, at.exception
    texts = " | ".join(shown(e.value) for e in [*at.error, *at.warning, *at.success])
    assert "Guided backprop: not qualified.** Fails randomisation sanity check" in texts
    assert "Grad-CAM: " in texts and "only 10 annotated image(s) scored (50 needed)" in texts
    with ReviewStore(sqlite_url(tmp_path / "reviews.sqlite")) as store:
        (rec,) = QualificationStore(store).records(sc.load_model("demo").fingerprint)
        assert rec.run_via == "Qualify page" and rec.images == 10 and rec.signoffs == []
    assert len(list((tmp_path / "qualification" / "runs").glob("*.jsonl"))) == 1  # kept for a resume
