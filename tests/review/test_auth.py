"""Reviewer accounts: bcrypt-hashed accounts file, sign-in checks and the `users` CLI."""

import io
import stat
import tomllib

import bcrypt
import pytest

from saliency_core.cli import main
from saliency_core.review import auth
from saliency_core.review.auth import AuthError


@pytest.fixture
def users(tmp_path):
    return tmp_path / "users.toml"


def test_add_then_sign_in(users):
    added = auth.add_user("alice", "alice-password-1", role="admin", path=users, rounds=4)
    assert added == auth.Account("alice", "admin")
    account = auth.authenticate("alice", "alice-password-1", path=users)
    assert account.is_admin and account.via == "password"
    text = users.read_text()
    assert "alice-password-1" not in text
    stored = tomllib.loads(text)["users"]["alice"]
    assert stored["role"] == "admin" and bcrypt.checkpw(b"alice-password-1", stored["hash"].encode())
    assert stat.S_IMODE(users.stat().st_mode) == 0o600


def test_wrong_password_and_unknown_user_get_the_same_answer(users):
    auth.add_user("alice", "alice-password-1", path=users, rounds=4)
    for name, password in (
        ("alice", "alice-password-2"),
        ("mallory", "alice-password-1"),
        ("alice", ""),
        ("alice", "x" * 100),
    ):
        with pytest.raises(AuthError) as caught:
            auth.authenticate(name, password, path=users)
        assert str(caught.value) == auth.WRONG


def test_salted_hashes_differ_for_the_same_password(users):
    auth.add_user("alice", "same-password-1", path=users, rounds=4)
    auth.add_user("bob", "same-password-1", path=users, rounds=4)
    hashes = {n: u["hash"] for n, u in auth.load_accounts(users).items()}
    assert hashes["alice"] != hashes["bob"]
    assert [(a.name, a.role) for a in auth.list_users(users)] == [("alice", "reviewer"), ("bob", "reviewer")]


def test_existing_user_needs_replace(users):
    auth.add_user("alice", "first-password", path=users, rounds=4)
    with pytest.raises(AuthError, match="already exists"):
        auth.add_user("alice", "second-password", path=users, rounds=4)
    auth.add_user("alice", "second-password", path=users, rounds=4, replace=True)
    assert auth.authenticate("alice", "second-password", path=users).name == "alice"
    with pytest.raises(AuthError):
        auth.authenticate("alice", "first-password", path=users)
    auth.remove_user("alice", path=users)
    assert auth.load_accounts(users) == {}
    with pytest.raises(AuthError, match="No user 'alice'"):
        auth.remove_user("alice", path=users)


@pytest.mark.parametrize(
    "name, password, role, words",
    [
        ("al ice", "long-enough-1", "reviewer", "Expected a user name"),
        ("alice", "short", "reviewer", "at least 8 characters; got 5"),
        ("alice", "é" * 40, "reviewer", "at most 72 bytes (bcrypt's limit); got 80"),
        ("alice", "long-enough-1", "owner", "role among viewer, reviewer, admin; got 'owner'"),
    ],
)
def test_bad_accounts_are_refused_in_words(users, name, password, role, words):
    with pytest.raises(AuthError, match=words.replace("(", r"\(").replace(")", r"\)")):
        auth.add_user(name, password, role=role, path=users, rounds=4)
    assert not users.exists()


def test_missing_or_broken_accounts_file(users):
    with pytest.raises(AuthError, match="No reviewer accounts are configured"):
        auth.authenticate("alice", "whatever-1", path=users)
    users.write_text("[users.alice\nrole = ")
    with pytest.raises(ValueError, match="not valid TOML"):
        auth.authenticate("alice", "whatever-1", path=users)


def test_users_command(users, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("carol-password-1\n"))
    assert (
        main(["users", "add", "carol", "--admin", "--file", str(users), "--password-stdin", "--rounds", "4"])
        == 0
    )
    assert "added carol (admin)" in capsys.readouterr().err
    assert auth.authenticate("carol", "carol-password-1", path=users).is_admin
    assert main(["users", "list", "--file", str(users)]) == 0
    assert capsys.readouterr().out == "carol\tadmin\n"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "dave", "--file", str(users), "--password-stdin"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: Expected a password of at least 8 characters" in err
    answers = iter(["one-password-1", "another-pass-2"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["users", "add", "erin", "--file", str(users)]) == 1
    assert "the two passwords differ" in capsys.readouterr().err
    assert main(["users", "remove", "carol", "--file", str(users)]) == 0
    assert auth.list_users(users) == []
