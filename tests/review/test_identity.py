"""Roles and what they allow: roles from an identity provider's claim and from an e-mail
allow-list (the roles file), the viewer / reviewer / admin actions, and session age."""

import io

import pytest

from saliency_core.cli import main
from saliency_core.review import auth, identity
from saliency_core.review.identity import Account, can

ROLES_TOML = """
claim = "groups"
default = "none"

[claim_values]
"qa-leads" = "admin"
"qa-inspectors" = "reviewer"
"staff" = "viewer"

[emails]
"Lead@Example.com" = "admin"
"demoted@example.com" = "viewer"
"blocked@example.com" = "none"
"""


@pytest.fixture
def rules(tmp_path):
    path = tmp_path / "roles.toml"
    path.write_text(ROLES_TOML)
    return identity.load_rules(path)


def _claims(sub="u1", **extra):
    return {"provider": "default", "sub": sub, **extra}


def test_role_from_the_operator_named_claim(rules):
    assert identity.role_from_claims(_claims(groups=["staff"]), rules) == "viewer"
    assert identity.role_from_claims(_claims(groups=["staff", "qa-inspectors"]), rules) == "reviewer"
    assert identity.role_from_claims(_claims(groups=["qa-inspectors", "qa-leads"]), rules) == "admin"
    assert identity.role_from_claims(_claims(groups="qa-leads"), rules) == "admin"  # one text: one value
    # values the file does not map, another claim, a claim of the wrong type: the default ("none")
    assert identity.role_from_claims(_claims(groups=["finance"]), rules) is None
    assert identity.role_from_claims(_claims(roles=["qa-leads"]), rules) is None
    assert identity.role_from_claims(_claims(groups={"qa-leads": 1}), rules) is None


def test_role_from_the_email_allow_list_wins_over_the_claim(rules):
    assert identity.role_from_claims(_claims(email="lead@example.com"), rules) == "admin"
    assert identity.role_from_claims(_claims(email="LEAD@example.com "), rules) == "admin"
    assert (
        identity.role_from_claims(_claims(email="demoted@example.com", groups=["qa-leads"]), rules)
        == "viewer"
    )
    assert identity.role_from_claims(_claims(email="blocked@example.com", groups=["qa-leads"]), rules) is None
    # an e-mail the provider says is unverified is not looked up
    unverified = _claims(email="lead@example.com", email_verified=False)
    assert identity.role_from_claims(unverified, rules) is None
    assert identity.role_from_claims({**unverified, "groups": ["staff"]}, rules) == "viewer"


def test_default_role_and_no_roles_file(tmp_path):
    assert identity.load_rules(tmp_path / "missing.toml") == identity.RoleRules()
    assert identity.role_from_claims(_claims(email="a@example.com"), identity.RoleRules()) is None
    path = tmp_path / "roles.toml"
    path.write_text('default = "viewer"\n')
    assert identity.role_from_claims(_claims(), identity.load_rules(path)) == "viewer"


@pytest.mark.parametrize(
    "text, message",
    [
        ('claim = "groups"\n[claim_values]\n"x" = "superuser"\n', "expected one of viewer"),
        ('default = "root"\n', "expected one of viewer"),
        ("claim = 3\n", "claim must be the name of a claim"),
        ("[emails\n", "not valid TOML"),
        ('emails = "a@b"\n', "must be a table"),
    ],
)
def test_a_bad_roles_file_is_refused_in_words(tmp_path, text, message):
    path = tmp_path / "roles.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        identity.load_rules(path)


def test_oidc_account_records_provider_subject_and_email(rules):
    account = identity.oidc_account(_claims(sub="248289761001", email="Lead@Example.com"), rules)
    assert account.name == "oidc:default:248289761001" and account.role == "admin" and account.via == "oidc"
    assert (account.provider, account.subject, account.email) == (
        "default",
        "248289761001",
        "lead@example.com",
    )
    assert account.actor == "oidc:default:248289761001 <lead@example.com>"
    assert account.label == "lead@example.com"
    long_sub = "s" * 500
    assert identity.oidc_account(_claims(sub=long_sub, groups=["staff"]), rules).name.startswith(
        "oidc:default:sha256-"
    )
    assert identity.oidc_account(_claims(sub="", groups=["staff"]), rules) is None
    assert identity.oidc_account({"sub": "u1", "groups": ["staff"]}, rules) is None  # no provider
    assert identity.oidc_account(_claims(groups=["finance"]), rules) is None  # no role


def test_what_each_role_may_do():
    viewer, reviewer, admin = (Account("x", r) for r in ("viewer", "reviewer", "admin"))
    assert can(viewer, "view") and not can(viewer, "decide") and not can(viewer, "sign_off")
    assert can(reviewer, "decide") and not can(reviewer, "sign_off") and not can(reviewer, "unlock")
    assert not can(reviewer, "oversee")
    assert all(can(admin, action) for action in identity.ACTIONS)
    assert not any(can(None, action) for action in identity.ACTIONS)
    assert not can(Account("x", "none"), "view")
    with pytest.raises(ValueError, match="Expected an action"):
        can(admin, "delete_everything")


def test_session_age():
    claims = {"iat": 1_800_000_000, "auth_time": 1_799_990_000}
    started = identity.signed_in_at(claims)
    assert started == 1_799_990_000  # auth_time first
    assert not identity.session_expired(started, started + 3600, max_hours=8)
    assert identity.session_expired(started, started + 8 * 3600 + 1, max_hours=8)
    assert identity.session_expired(started, started - 3600, max_hours=8)  # from the future
    assert identity.signed_in_at({"iat": float("nan")}) is None
    assert identity.signed_in_at({"iat": True}) is None
    assert identity.session_expired(None, 1_800_000_000, max_hours=8)


def test_local_accounts_have_three_roles_and_are_asked_again(tmp_path):
    users = tmp_path / "users.toml"
    auth.add_user("vera", "vera-password-1", role="viewer", path=users, rounds=4)
    assert auth.authenticate("vera", "vera-password-1", path=users) == Account("vera", "viewer")
    assert auth.current_role("vera", users) == "viewer"
    auth.remove_user("vera", path=users)
    assert auth.current_role("vera", users) is None
    with pytest.raises(auth.AuthError, match="role among viewer, reviewer, admin"):
        auth.add_user("x", "x-password-1", role="owner", path=users, rounds=4)


def test_users_add_with_a_role(tmp_path, monkeypatch):
    users = tmp_path / "users.toml"
    monkeypatch.setattr("sys.stdin", io.StringIO("vera-password-1\n"))
    args = ["users", "add", "vera", "--role", "viewer", "--file", str(users), "--password-stdin"]
    assert main([*args, "--rounds", "4"]) == 0
    assert auth.list_users(users) == [Account("vera", "viewer")]
