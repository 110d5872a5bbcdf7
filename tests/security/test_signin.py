"""Password guessing: per user name and per client lockouts, recorded in the review database's
chained event log, cleared by an admin (command line and Review page).

Real bcrypt accounts file, real SQLite file and PostgreSQL server (tests/_postgres.py), the real
Review page through AppTest."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta

import pytest
from streamlit.testing.v1 import AppTest

from saliency_core.cli import main
from saliency_core.review import auth
from saliency_core.review import store as rs

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALICE, ALICE_PW = "alice", "alice-password-1"
BOB, BOB_PW = "bob", "bob-password-1"
ADMIN, ADMIN_PW = "quinn", "quinn-password-1"


@pytest.fixture
def users(tmp_path):
    path = tmp_path / "users.toml"
    auth.add_user(ALICE, ALICE_PW, path=path, rounds=4)
    auth.add_user(BOB, BOB_PW, path=path, rounds=4)
    auth.add_user(ADMIN, ADMIN_PW, role="admin", path=path, rounds=4)
    return path


def test_twenty_wrong_passwords_then_the_right_one_is_refused(users, url, capsys):
    """Hostile input: 20 guesses at alice's password, then her real one."""
    with rs.ReviewStore(url) as store:
        throttle = auth.SignInThrottle(store)
        answers = []
        for n in range(20):
            with pytest.raises(auth.AuthError) as caught:
                throttle.sign_in(ALICE, f"guess-number-{n}", client="ip:203.0.113.7", path=users)
            answers.append(caught.value)
        assert all(isinstance(a, auth.WrongPassword) for a in answers[: auth.ACCOUNT_FAILURES])
        assert "locked until" in str(answers[auth.ACCOUNT_FAILURES - 1])
        assert all(isinstance(a, auth.SignInLocked) for a in answers[auth.ACCOUNT_FAILURES :])
        for client in ("ip:203.0.113.7", "ip:198.51.100.9"):  # the right password, from anywhere
            with pytest.raises(auth.SignInLocked, match="Too many failed sign-ins for this user name"):
                throttle.sign_in(ALICE, ALICE_PW, client=client, path=users)
        # recorded: five failures, one lockout; locked attempts are refused before any bcrypt check
        kinds = [e.kind for e in store.events(account=ALICE)]
        assert kinds == ["signin_failed"] * auth.ACCOUNT_FAILURES + ["account_locked"]
        assert [(lock.scope, lock.key) for lock in throttle.locks()] == [("account", ALICE)]
        assert store.verify().ok

    # an admin clears it from the command line; the right password works again
    assert main(["users", "unlock", ALICE, "--database", url]) == 0
    assert f"unlocked user name {ALICE}" in capsys.readouterr().err
    with rs.ReviewStore(url) as store:
        throttle = auth.SignInThrottle(store)
        assert throttle.sign_in(ALICE, ALICE_PW, client="ip:203.0.113.7", path=users).name == ALICE
        unlock = store.events(kinds=["account_unlocked"])[0]
        assert unlock.account == ALICE and "command line" in unlock.actor
        assert store.verify().ok


def test_one_client_guessing_many_names_is_locked(users, tmp_path):
    """Hostile input: one address trying one password against many user names (spraying)."""
    with rs.ReviewStore(rs.sqlite_url(tmp_path / "r.sqlite")) as store:
        throttle = auth.SignInThrottle(store)
        for n in range(auth.CLIENT_FAILURES):
            with pytest.raises(auth.WrongPassword):
                throttle.sign_in(f"user{n}", "Spring2024!", client="ip:203.0.113.50", path=users)
        with pytest.raises(auth.SignInLocked, match="from this device or network"):
            throttle.sign_in(BOB, BOB_PW, client="ip:203.0.113.50", path=users)
        assert throttle.sign_in(BOB, BOB_PW, client="ip:198.51.100.1", path=users).name == BOB
        assert ("client", "ip:203.0.113.50") in [(lock.scope, lock.key) for lock in throttle.locks()]


def test_lockout_ends_by_itself_and_counts_start_again(users, tmp_path):
    now = [datetime(2030, 1, 1, 9, 0, tzinfo=UTC)]
    with rs.ReviewStore(rs.sqlite_url(tmp_path / "r.sqlite")) as store:
        throttle = auth.SignInThrottle(store, clock=lambda: now[0])
        for _ in range(auth.ACCOUNT_FAILURES):
            with pytest.raises(auth.WrongPassword):
                throttle.sign_in(ALICE, "wrong-password", client="session:a", path=users)
        now[0] += auth.LOCKOUT - timedelta(seconds=1)
        with pytest.raises(auth.SignInLocked):
            throttle.sign_in(ALICE, ALICE_PW, client="session:a", path=users)
        now[0] += timedelta(seconds=2)
        assert throttle.sign_in(ALICE, ALICE_PW, client="session:a", path=users).name == ALICE
        with pytest.raises(auth.WrongPassword) as caught:  # a fresh count after the lockout
            throttle.sign_in(ALICE, "wrong-password", client="session:a", path=users)
        assert "locked" not in str(caught.value)


def _review_page() -> AppTest:
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300).run()
    return at.switch_page("pages/review.py").run()


def _sign_in(at, user, password) -> AppTest:
    at.text_input(key="signin_user").input(user)
    at.text_input(key="signin_password").input(password)
    next(b for b in at.button if b.label == "Sign in").click()
    return at.run()


def test_review_page_refuses_the_right_password_while_locked_and_admin_unlocks(users, tmp_path, monkeypatch):
    """Hostile input: password guessing through the Review page's sign-in form."""
    monkeypatch.setenv("SALIENCY_DB", str(tmp_path / "reviews.sqlite"))
    monkeypatch.setenv("SALIENCY_USERS", str(users))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    at = _review_page()
    for n in range(auth.ACCOUNT_FAILURES + 1):
        at = _sign_in(at, ALICE, f"guess-{n}-password")
        assert not at.exception, at.exception
    at = _sign_in(at, ALICE, ALICE_PW)
    [error] = [e.value for e in at.error]
    assert "Too many failed sign" in error and "locked until" in error
    assert not any("Signed in as" in m.value for m in at.markdown)

    admin = _sign_in(_review_page(), ADMIN, ADMIN_PW)
    assert any(t.value.startswith(f"User name {ALICE}: locked until") for t in admin.text)
    next(b for b in admin.button if b.label == "Unlock").click()
    admin = admin.run()
    assert not admin.exception, admin.exception
    assert not any(t.value.startswith(f"User name {ALICE}") for t in admin.text)
    at = _sign_in(_review_page(), ALICE, ALICE_PW)
    assert any("Signed in as" in m.value for m in at.markdown)
    with rs.ReviewStore(rs.sqlite_url(tmp_path / "reviews.sqlite")) as store:
        unlock = store.events(kinds=["account_unlocked"])[0]
        assert (unlock.account, unlock.actor) == (ALICE, ADMIN)
