"""Drive the Review page with AppTest: real accounts file, real SQLite file, real demo model,
the scikit-image sample photos, cheap methods only (gradient, Grad-CAM)."""

import os
import re
import shutil

import pytest
import skimage
from streamlit.testing.v1 import AppTest

import saliency_core as sc
from saliency_core.engine.samples import sample_images
from saliency_core.review import auth
from saliency_core.review import store as rs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHEAP = ["gradient", "gradcam"]
ALICE, ALICE_PW = "alice", "alice-password-1"
ADMIN, ADMIN_PW = "quinn", "quinn-password-1"


@pytest.fixture
def db(tmp_path, monkeypatch):
    """Fresh database file and accounts file for one test (bcrypt cost 4 keeps sign-in fast)."""
    users = tmp_path / "users.toml"
    auth.add_user(ALICE, ALICE_PW, path=users, rounds=4)
    auth.add_user(ADMIN, ADMIN_PW, role="admin", path=users, rounds=4)
    path = tmp_path / "reviews.sqlite"
    monkeypatch.setenv("SALIENCY_DB", str(path))
    monkeypatch.setenv("SALIENCY_USERS", str(users))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SALIENCY_REVIEW_DIR", raising=False)
    return rs.sqlite_url(path)


def _raw_review_page() -> AppTest:
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300).run()
    return at.switch_page("pages/review.py").run()


def _review_page() -> AppTest:
    at = _raw_review_page()
    _ok(at)
    return at


def _ok(at) -> None:
    assert not at.exception, at.exception
    assert not at.error, [_shown(e.value) for e in at.error]


def _button(at, label: str):
    return next(b for b in at.button if b.label == label)


def _decide(at, label: str):
    return next(b for b in at.button if b.label == label and (b.key or "").startswith("decide::"))


def _sign_in(at, user: str, password: str) -> AppTest:
    at.text_input(key="signin_user").input(user)
    at.text_input(key="signin_password").input(password)
    _button(at, "Sign in").click()
    return at.run()


def _open_batch(at) -> AppTest:
    at.multiselect(key="rb_methods").set_value(CHEAP)
    _button(at, "Open batch").click()
    return at.run()


def _shown(text: str) -> str:
    """What a reader sees of Markdown source: the page escapes user text (names, notes, messages)
    with backslashes, which the Markdown renderer removes."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


def _markdown(at) -> str:
    return "\n".join(_shown(m.value) for m in at.markdown)


def _table(at, column: str):
    """The first table that has ``column``."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _position(at) -> str:
    return next(_shown(m.value) for m in at.markdown if m.value.startswith("**Item "))


def test_decide_three_items_reload_and_resume_at_item_four(db):
    at = _sign_in(_review_page(), ALICE, ALICE_PW)
    _ok(at)
    assert "Signed in as **alice** (reviewer)" in _markdown(at)
    at = _open_batch(at)
    _ok(at)
    assert _position(at) == "**Item 1 of 5:** chelsea.png"
    captions = [c for img in at.get("image") for c in img.captions]
    assert {"What the model sees", "Gradient", "Grad-CAM"} <= set(captions), captions
    assert "**Prediction:**" in _markdown(at) and "confidence" in _markdown(at)
    assert any("tiger cat" in c.value or "Egyptian cat" in c.value or "tabby" in c.value for c in at.caption)

    plan = [("Accept", "ears and whiskers lit"), ("Reject", "looked at the saucer"), ("Needs expert", "")]
    names = ["chelsea.png", "coffee.png", "camera.png"]
    for n, ((label, note), name) in enumerate(zip(plan, names)):
        assert _position(at) == f"**Item {n + 1} of 5:** {name}"
        at.text_area[0].input(note)
        _decide(at, label).click()
        at.run()
        _ok(at)
        assert [_shown(s.value) for s in at.success] == [f"Recorded **{label}** for {name}."]
    assert _position(at) == "**Item 4 of 5:** motorcycle_left.png"

    with rs.ReviewStore(db) as store:
        saved = store.decisions(batch="sample-photos")
        assert [(d.item_name, d.reviewer, d.decision, d.note) for d in saved] == [
            ("chelsea.png", ALICE, "accept", "ears and whiskers lit"),
            ("coffee.png", ALICE, "reject", "looked at the saucer"),
            ("camera.png", ALICE, "needs_expert", ""),
        ]
        assert all(d.methods == {"gradient": {}, "gradcam": {}} for d in saved)
        assert all(0 < d.seconds < 120 for d in saved), [d.seconds for d in saved]
        assert len(store.audit_log()) == 3

    # reload: a new session on the same database file, signed in again
    again = _sign_in(_review_page(), ALICE, ALICE_PW)
    _ok(again)
    assert "Continuing batch **sample-photos** where you stopped." in [_shown(i.value) for i in again.info]
    assert _position(again) == "**Item 4 of 5:** motorcycle_left.png"
    assert "**Your decision:** none yet" in _markdown(again)
    queue = _table(again, "your decision")
    assert list(queue["your decision"]) == ["Accept", "Reject", "Needs expert", "", ""]
    assert list(queue["note"])[:2] == ["ears and whiskers lit", "looked at the saucer"]
    assert again.progress[0].proto.text == "3 of 5 items decided by you"
    counts = _table(again, "Needs expert").set_index("reviewer")
    assert counts.loc["alice", ["Accept", "Reject", "Needs expert"]].tolist() == [1, 1, 1]

    # previous shows the recorded decision of item three
    _button(again, "Previous").click()
    again.run()
    assert _position(again) == "**Item 3 of 5:** camera.png"
    assert "**Your decision:** Needs expert" in _markdown(again)

    # changing it keeps the earlier decision in the audit log
    _decide(again, "Accept").click()
    again.run()
    _ok(again)
    assert [_shown(s.value) for s in again.success][0].startswith(
        "Changed your decision on camera.png to **Accept**"
    )
    with rs.ReviewStore(db) as store:
        camera = store.decision("sample-photos", saved[2].item_hash, ALICE)
        assert (camera.decision, camera.version) == ("accept", 2)
        assert [(e.old_decision, e.new_decision) for e in store.audit_log(decision_id=camera.id)] == [
            (None, "needs_expert"),
            ("needs_expert", "accept"),
        ]


def test_wrong_password_records_nothing(db):
    at = _sign_in(_review_page(), ALICE, "not-her-password")
    assert not at.exception
    assert [_shown(e.value) for e in at.error] == [auth.WRONG]
    assert "Signed in as" not in _markdown(at)
    at = _open_batch(at)  # browsing works without signing in
    _ok(at)
    assert _position(at) == "**Item 1 of 5:** chelsea.png"
    assert all(_decide(at, label).disabled for label in ("Accept", "Reject", "Needs expert"))
    assert at.text_area[0].disabled
    assert "Sign in to record decisions." in _markdown(at)
    with rs.ReviewStore(db) as store:
        assert store.decisions() == [] and store.audit_log() == [] and store.batches() == []


def test_only_admins_see_other_reviewers_notes_and_export_everything(db):
    with rs.ReviewStore(db) as store:  # bob reviewed the first two photos earlier
        store.open_batch(
            "sample-photos",
            source="samples",
            created_by="bob",
            model_fingerprint="x",
            methods={m: {} for m in CHEAP},
        )
        paths = list(sample_images().values())[:2]
        for path, choice in zip(paths, ("accept", "accept")):
            store.record(
                "sample-photos",
                sc.image_hash(sc.load_image(path)),
                os.path.basename(path),
                "bob",
                choice,
                note="bob's private note",
                seconds=7,
            )

    at = _open_batch(_sign_in(_review_page(), ALICE, ALICE_PW))
    _decide(at, "Reject").click()
    at.run()
    _ok(at)
    page = _markdown(at) + " ".join(c.value for c in at.caption)
    assert "bob's private note" not in page
    assert [b.proto.label for b in at.get("download_button")] == ["Export your decisions in this batch (CSV)"]
    kappa = _table(at, "kappa")
    assert kappa.iloc[0]["reviewers"] == "alice / bob" and kappa.iloc[0]["shared items"] == 1

    admin = _sign_in(_review_page(), ADMIN, ADMIN_PW)
    admin = _open_batch(admin)
    _ok(admin)
    assert "bob: Accept. Note: bob's private note" in [
        t.value for t in admin.text
    ]  # other reviewers, as text
    notes = _table(admin, "version")
    assert set(notes["note"]) == {"bob's private note", ""} and set(notes["reviewer"]) == {"alice", "bob"}
    assert [b.proto.label for b in admin.get("download_button")] == [
        "Export this batch (CSV)",
        "Export every batch (CSV)",
    ]


def test_same_reviewer_in_two_windows_is_told_and_nothing_is_overwritten(db):
    first = _open_batch(_sign_in(_review_page(), ALICE, ALICE_PW))
    second = _open_batch(_sign_in(_review_page(), ALICE, ALICE_PW))
    assert _position(first) == _position(second) == "**Item 1 of 5:** chelsea.png"
    _decide(first, "Accept").click()
    first.run()
    _ok(first)
    _decide(second, "Reject").click()  # this window still shows "no decision yet"
    second.run()
    assert not second.exception
    [warning] = [_shown(w.value) for w in second.warning if "changed elsewhere" in w.value]
    assert "to Accept" in warning and "nothing was written" in warning
    assert _position(second) == "**Item 1 of 5:** chelsea.png"
    assert "**Your decision:** Accept" in _markdown(second)
    with rs.ReviewStore(db) as store:
        [d] = store.decisions()
        assert (d.decision, d.version) == ("accept", 1) and len(store.audit_log()) == 1


def test_server_folder_batch_skips_unreadable_files(db, tmp_path, monkeypatch):
    line = tmp_path / "inbox" / "line-3"
    line.mkdir(parents=True)
    data = os.path.join(os.path.dirname(skimage.__file__), "data")
    shutil.copy(os.path.join(data, "coffee.png"), line / "a_coffee.png")
    shutil.copy(os.path.join(data, "chelsea.png"), line / "b_chelsea.png")
    (line / "c_broken.png").write_bytes(b"not a picture")
    (line / "notes.txt").write_text("ignored: not an image type")
    monkeypatch.setenv("SALIENCY_REVIEW_DIR", str(tmp_path / "inbox"))
    at = _review_page()
    at.radio(key="rb_source").set_value("Server folder")
    at.selectbox(key="rb_folder").set_value("line-3")
    at = _open_batch(at)
    assert not at.exception
    assert not at.error, [_shown(e.value) for e in at.error]
    [warning] = [_shown(w.value) for w in at.warning if w.value.startswith("Left out")]
    assert "c_broken.png" in warning and "not an image" in warning
    assert _position(at) == "**Item 1 of 2:** a_coffee.png"
    assert "espresso" in _markdown(at)


def test_unusable_database_is_reported_and_browsing_still_works(db, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database folder should be")
    monkeypatch.setenv("SALIENCY_DB", str(blocker / "reviews.sqlite"))
    at = _sign_in(_raw_review_page(), ALICE, ALICE_PW)
    assert not at.exception
    [error] = [_shown(e.value) for e in at.error]
    assert (
        error.startswith("Decisions cannot be recorded: Cannot create the folder") and "SALIENCY_DB" in error
    )
    at = _open_batch(at)
    assert not at.exception
    assert _position(at) == "**Item 1 of 5:** chelsea.png"
    assert _decide(at, "Accept").disabled


# ---- issue 17 --------------------------------------------------------------------------------------------


def test_no_accounts_is_said_up_front_and_the_database_path_stays_on_the_server(tmp_path, monkeypatch):
    path = tmp_path / "reviews.sqlite"
    monkeypatch.setenv("SALIENCY_DB", str(path))
    monkeypatch.setenv("SALIENCY_USERS", str(tmp_path / "no-users.toml"))  # no accounts file yet
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SALIENCY_REVIEW_DIR", raising=False)
    at = _raw_review_page()
    assert not at.exception, at.exception
    assert any("No reviewer accounts exist yet" in i.value for i in at.info)  # before any sign-in attempt
    assert not [t for t in at.text_input if t.key == "signin_password"]
    shown = " ".join([m.value for m in at.markdown] + [c.value for c in at.caption])
    assert str(tmp_path) not in shown and "reviews.sqlite" not in shown
    assert "Decisions are stored in the review database (" in shown


def test_next_item_is_computed_while_the_current_one_is_shown(db):
    import pages._maps as maps

    at = _review_page()
    at = _open_batch(at)
    _ok(at)
    items = list(sample_images().values())
    model = sc.load_model("demo")
    following = sc.load_image(items[1])
    target = model.predict(following, k=1)[0][0]
    deadline = __import__("time").time() + 120
    while True:  # the prefetch thread started by the page's run computes item 2 into the shared cache
        done = [
            maps.is_cached(model, sc.image_hash(following), m, target, sc.METHODS[m].params_for({}))
            for m in CHEAP
        ]
        if all(done) or __import__("time").time() > deadline:
            break
        __import__("time").sleep(0.2)
    assert all(done), done
    calls = []
    original = sc.explain

    def counting(*args, **kwargs):
        calls.append(kwargs.get("method"))
        return original(*args, **kwargs)

    maps.sc.explain = counting
    try:
        _button(at, "Next").click()
        at = at.run()
    finally:
        maps.sc.explain = original
    _ok(at)
    assert _position(at).startswith("**Item 2 of")
    assert calls == []  # Next showed maps computed ahead; nothing computed on the click
    alts = [img.alt for el in at.get("image") for img in el.proto.imgs]
    assert all(alts) and any("Grad-CAM saliency map over" in a for a in alts)
