"""Sign-in on every page (pages/_signin.py) with AppTest: with SALIENCY_REQUIRE_SIGN_IN=1 no page
computes or accepts an upload before sign-in; identity-provider identities (st.user) get their
role from the roles file at every run; local accounts likewise from the accounts file; viewers
record nothing; a reviewer's decision is attributed to oidc:<provider>:<subject>."""

import os
import re
import time

import pytest
from _oidc import auth_section, oidc_provider, provider_settings
from streamlit.testing.v1 import AppTest

import pages._models
import saliency_core.pipeline
from saliency_core.review import auth
from saliency_core.review import store as rs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGES = re.findall(r'st\.Page\("([^"]+)"', open(os.path.join(ROOT, "app.py"), encoding="utf-8").read())
OPEN_LINE = "Anyone who can reach this address can use it: sign-in is off."
ROLES = """
claim = "groups"
[claim_values]
"qa-inspectors" = "reviewer"
"staff" = "viewer"
[emails]
"lead@example.com" = "admin"
"""
DEAD = "http://127.0.0.1:9"  # the discard port: nothing answers
SECRETS = auth_section(
    "http://127.0.0.1:8501/oauth2callback", **{"default": provider_settings(DEAD, "client-1", "secret-1")}
)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """Sign-in required; a database, an accounts file with alice (reviewer), a roles file."""
    users, roles = tmp_path / "users.toml", tmp_path / "roles.toml"
    auth.add_user("alice", "alice-password-1", path=users, rounds=4)
    roles.write_text(ROLES)
    monkeypatch.setenv("SALIENCY_REQUIRE_SIGN_IN", "1")
    monkeypatch.setenv("SALIENCY_DB", str(tmp_path / "reviews.sqlite"))
    monkeypatch.setenv("SALIENCY_USERS", str(users))
    monkeypatch.setenv("SALIENCY_ROLES", str(roles))
    for name in ("DATABASE_URL", "SALIENCY_REVIEW_DIR", "SALIENCY_SIGN_IN", "SALIENCY_SIGN_IN_MAX_HOURS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _app(user: dict | None = None, secrets: dict | None = None) -> AppTest:
    at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=300)
    if secrets is not None:
        at.secrets["auth"] = secrets
    if user is not None:
        at.user = user
    return at


def _identity(sub: str, email: str, groups=(), age_hours: float = 0.0) -> dict:
    now = time.time() - age_hours * 3600
    return {
        "is_logged_in": True,
        "provider": "default",
        "sub": sub,
        "email": email,
        "groups": list(groups),
        "iat": int(now),
        "auth_time": int(now),
    }


def _shown(text: str) -> str:
    """What a reader sees of Markdown source (the pages escape user text with backslashes)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


def _words(at) -> str:
    return _shown(
        " ".join(
            [m.value for m in at.markdown]
            + [e.value for e in at.error]
            + [c.value for c in at.caption]
            + [t.value for t in at.title]
        )
    )


def _on_sign_in_screen(at) -> bool:
    return any(t.value == "Saliency Lens" for t in at.title) and "Sign in to continue." in _words(at)


@pytest.mark.parametrize("page", PAGES)
def test_no_page_computes_or_takes_an_upload_before_sign_in(site, page, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("computed before sign-in")

    monkeypatch.setattr(pages._models, "get_model", refuse)
    monkeypatch.setattr(saliency_core.pipeline, "explain_image", refuse)
    at = _app().run()
    at = at.switch_page(page).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert _on_sign_in_screen(at)
    assert not at.get("file_uploader") and not at.get("imgs") and not at.selectbox and not at.multiselect
    assert "model" not in at.session_state and "methods" not in at.session_state
    assert [t.key for t in at.text_input] == [
        "signin_user",
        "signin_password",
    ]  # the sign-in form, nothing else
    assert OPEN_LINE not in _words(at)


def test_open_by_default_and_the_sidebar_says_so(site, monkeypatch):
    monkeypatch.delenv("SALIENCY_REQUIRE_SIGN_IN")
    at = _app().switch_page("pages/report.py").run()
    assert not at.exception, at.exception
    assert OPEN_LINE in [c.value for c in at.sidebar.caption]
    assert not _on_sign_in_screen(at)


def test_identity_provider_role_is_asked_again_at_every_run(site):
    at = _app(_identity("u-42", "lead@example.com"), SECRETS).switch_page("pages/report.py").run()
    assert not at.exception, at.exception
    assert not _on_sign_in_screen(at)
    assert "Signed in as **lead@example.com** (admin)" in [
        m.value.replace("\\", "") for m in at.sidebar.markdown
    ]
    assert any(b.label == "Sign out" for b in at.sidebar.button)
    (site / "roles.toml").write_text('claim = "groups"\n')  # the operator removes the e-mail
    at = at.run()
    assert _on_sign_in_screen(at)
    assert "you have no role here" in _words(at)
    assert any(b.label == "Sign out" for b in at.button)  # to sign in as someone else


def test_a_sign_in_older_than_the_limit_is_refused(site, monkeypatch):
    monkeypatch.setenv("SALIENCY_SIGN_IN_MAX_HOURS", "8")
    at = _app(_identity("u-42", "lead@example.com", age_hours=9), SECRETS).run()
    assert _on_sign_in_screen(at)
    assert "is older than 8 hours" in _words(at)
    at = (
        _app(_identity("u-42", "lead@example.com", age_hours=7), SECRETS).switch_page("pages/report.py").run()
    )
    assert not _on_sign_in_screen(at)


def test_local_account_signs_in_and_is_refused_once_removed(site, monkeypatch):
    monkeypatch.setenv("SALIENCY_SIGN_IN", "local")
    at = _app().switch_page("pages/report.py").run()
    assert _on_sign_in_screen(at)
    at.text_input(key="signin_user").input("alice")
    at.text_input(key="signin_password").input("alice-password-1")
    next(b for b in at.button if b.label == "Sign in").click()
    at = at.run()
    assert not at.exception, at.exception
    assert not _on_sign_in_screen(at)
    auth.remove_user("alice", path=site / "users.toml")
    at = at.run()
    assert _on_sign_in_screen(at) and "no longer exists" in _words(at)


def test_provider_down_or_st_login_refused_gives_a_plain_message(site):
    at = _app(secrets=SECRETS).run()
    next(b for b in at.button if b.label == "Sign in with your organisation's account").click()
    at = at.run()
    assert not at.exception, at.exception
    [error] = [_shown(e.value) for e in at.error]
    assert "The sign-in service (127.0.0.1:9) cannot be reached" in error and "Nothing was recorded" in error
    assert "Traceback" not in _words(at)
    # a provider that answers, but settings st.login refuses (no secrets.toml on disk for it here)
    with oidc_provider() as issuer:
        at = _app(
            secrets=auth_section(
                "http://127.0.0.1:8501/oauth2callback",
                **{"default": provider_settings(issuer, "client-1", "secret-1")},
            )
        ).run()
        next(b for b in at.button if b.label == "Sign in with your organisation's account").click()
        at = at.run()
    assert not at.exception, at.exception
    [error] = [_shown(e.value) for e in at.error]
    assert "cannot start: its settings are incomplete" in error and "Traceback" not in error
    assert _on_sign_in_screen(at)


def _review_batch(at) -> AppTest:
    at = at.switch_page("pages/review.py").run()
    at.multiselect(key="rb_methods").set_value(["gradient"])
    next(b for b in at.button if b.label == "Open batch").click()
    return at.run()


def _decide_buttons(at) -> list:
    return [b for b in at.button if (b.key or "").startswith("decide::")]


def test_viewer_cannot_decide_and_reviewer_is_recorded_by_subject(site):
    url = rs.sqlite_url(site / "reviews.sqlite")
    at = _review_batch(_app(_identity("u-7", "vic@example.com", groups=["qa-inspectors"]), SECRETS).run())
    assert not at.exception, at.exception
    assert _decide_buttons(at) and not any(b.disabled for b in _decide_buttons(at))
    # the operator makes vic a viewer while the page is open: the next click is refused on the server
    (site / "roles.toml").write_text(ROLES + '"vic@example.com" = "viewer"\n')
    _decide_buttons(at)[0].click()
    at = at.run()
    assert any("Your role (viewer) records no decisions" in _shown(e.value) for e in at.error)
    assert all(b.disabled for b in _decide_buttons(at))
    assert not any("lockouts" in e.label for e in at.expander)
    with rs.ReviewStore(url) as store:
        assert store.decisions() == []

    reviewer = _review_batch(
        _app(_identity("u-8", "rita@example.com", groups=["qa-inspectors"]), SECRETS).run()
    )
    next(b for b in _decide_buttons(reviewer) if b.label == "Accept").click()
    reviewer = reviewer.run()
    assert not reviewer.exception, reviewer.exception
    assert not any("lockouts" in e.label for e in reviewer.expander)  # unlocking is for admins
    with rs.ReviewStore(url) as store:
        [decision] = store.decisions()
        assert decision.reviewer == "oidc:default:u-8" and decision.decision == "accept"
        [audit] = store.audit_log()
        assert audit.actor == "oidc:default:u-8 <rita@example.com>"
        signins = [e for e in store.events(kinds=["signin"]) if e.account.startswith("oidc:")]
        assert [e.account for e in signins] == ["oidc:default:u-7", "oidc:default:u-8"]
        assert "e-mail rita@example.com; role reviewer" in signins[-1].detail
        assert store.verify().ok
