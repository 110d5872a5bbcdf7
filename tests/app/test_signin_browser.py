"""End to end in Chromium: sign in with a real OpenID Connect provider started on 127.0.0.1
(oidc-provider-mock, tests/_oidc.py) through Streamlit's st.login, with SALIENCY_REQUIRE_SIGN_IN=1.

One app server and one provider; the providers the app knows (secrets.toml): "default" (the
registered client and its secret), "wrongsecret" (the same client, a wrong secret) and "down" (a
port nothing answers on). A provider that is down, a wrong client secret, a tampered state
parameter and a denied consent each end on the sign-in screen with a plain message and record
nothing; then the right sign-in shows the pages, a review decision is recorded under the
provider's subject, and after sign-out the pages are refused again. Screenshots go to
tests/artifacts/ (signin_screen.png, signin_failed.png, signin_sidebar.png,
signin_decision.png)."""

import os
import re
import urllib.parse

import oidc_provider_mock
import pytest
from _browser import ROOT, free_port, launch, streamlit_app
from _oidc import auth_section, oidc_provider, provider_settings, register_client, toml_text, wrong_secret

from saliency_core.review import store as rs

ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")
SUBJECT, EMAIL = "rita-sub-001", "rita@example.com"
RITA = oidc_provider_mock.User(
    sub=SUBJECT, claims={"email": EMAIL, "email_verified": True, "groups": ["qa-inspectors"]}
)
ROLES = 'claim = "groups"\n[claim_values]\n"qa-inspectors" = "reviewer"\n'
FAILED = "did not complete"
# every page in app.py's navigation, by the address Streamlit gives it (the file's name)
PAGE_PATHS = [
    os.path.splitext(os.path.basename(p))[0]
    for p in re.findall(r'st\.Page\("([^"]+)"', open(os.path.join(ROOT, "app.py"), encoding="utf-8").read())
]
WAIT = 120_000  # ms


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The provider, then the app configured for it; yields (app URL, database URL)."""
    data = tmp_path_factory.mktemp("signin")
    port = free_port()
    redirect = f"http://127.0.0.1:{port}/oauth2callback"
    with oidc_provider(users=[RITA]) as issuer:
        client_id, secret = register_client(issuer, redirect)
        auth = auth_section(
            redirect,
            default=provider_settings(issuer, client_id, secret),
            wrongsecret=provider_settings(issuer, client_id, wrong_secret()),
            down=provider_settings("http://127.0.0.1:9", client_id, secret),
        )
        (data / "secrets.toml").write_text(toml_text(auth))
        (data / "roles.toml").write_text(ROLES)
        env = {
            "STREAMLIT_SECRETS_FILES": str(data / "secrets.toml"),
            "SALIENCY_REQUIRE_SIGN_IN": "1",
            "SALIENCY_SIGN_IN": "oidc",
            "SALIENCY_ROLES": str(data / "roles.toml"),
            "SALIENCY_USERS": str(data / "users.toml"),
        }
        with streamlit_app(data, port=port, **env) as url:
            yield url, rs.sqlite_url(data / "reviews.sqlite")


def _sign_in_screen(page) -> None:
    page.get_by_text("Sign in to continue.").wait_for(timeout=WAIT)
    assert page.locator("[data-testid='stSidebarNav']").count() == 0
    assert page.locator("input[type=file]").count() == 0
    assert page.locator("[data-testid='stException']").count() == 0
    assert "Traceback" not in page.content()


def _provider_button(page, words: str):
    return page.get_by_role("button", name=f"Sign in with {words}")


def _nothing_recorded(database: str) -> None:
    with rs.ReviewStore(database) as store:
        assert store.decisions() == []
        assert [e for e in store.events(kinds=["signin"]) if e.account.startswith("oidc:")] == []


def test_failed_sign_ins_then_sign_in_decide_and_sign_out(site):
    from playwright.sync_api import sync_playwright

    url, database = site
    os.makedirs(ARTIFACTS, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        _sign_in_screen(page)
        _provider_button(page, "Down").wait_for(timeout=WAIT)  # the last of the three buttons
        page.screenshot(path=os.path.join(ARTIFACTS, "signin_screen.png"), full_page=True)
        for path in PAGE_PATHS:  # each page's own address: the same screen, nothing computed
            page.goto(f"{url}/{path}")
            _sign_in_screen(page)
            page.wait_for_timeout(1500)  # a page that ran would have drawn by now
            _sign_in_screen(page)
            assert page.locator("[data-testid='stImage']").count() == 0

        # the provider is down: said before anyone is sent there
        _provider_button(page, "Down").click()
        page.get_by_text("cannot be reached").wait_for(timeout=WAIT)
        _sign_in_screen(page)

        # a wrong client secret: the provider refuses the code exchange
        _provider_button(page, "Wrongsecret").click()
        page.get_by_role("button", name=SUBJECT).click()  # the provider's sign-in form
        page.get_by_text(FAILED).wait_for(timeout=WAIT)
        _sign_in_screen(page)
        page.screenshot(path=os.path.join(ARTIFACTS, "signin_failed.png"))

        # consent denied at the provider
        _provider_button(page, "your organisation's account").click()
        page.get_by_role("button", name="Deny").click()
        page.get_by_text(FAILED).wait_for(timeout=WAIT)
        _sign_in_screen(page)

        # a tampered state parameter on the way back (Playwright does not route a redirect's target,
        # so the provider's redirect itself is rewritten)
        tampered = []

        def tamper(route):
            if route.request.method != "POST":
                route.continue_()
                return
            answer = route.fetch(max_redirects=0)
            location = urllib.parse.urlsplit(answer.headers.get("location", ""))
            query = urllib.parse.parse_qs(location.query)
            if "code" not in query:
                route.fulfill(response=answer)
                return
            query["state"] = ["forged-state-0000"]
            forged = location._replace(query=urllib.parse.urlencode(query, doseq=True)).geturl()
            tampered.append(forged)
            route.fulfill(status=answer.status, headers={**answer.headers, "location": forged})

        authorize = re.compile(r".*/oauth2/authorize.*")
        page.route(authorize, tamper)
        _provider_button(page, "your organisation's account").click()
        page.get_by_role("button", name=SUBJECT).click()
        page.get_by_text(FAILED).wait_for(timeout=WAIT)
        _sign_in_screen(page)
        page.unroute(authorize)
        assert tampered, "the callback was not intercepted"
        _nothing_recorded(database)

        # the right sign-in: the pages, the sidebar names the person and offers sign-out
        _provider_button(page, "your organisation's account").click()
        page.get_by_role("button", name=SUBJECT).click()
        nav = page.locator("[data-testid='stSidebarNav']")
        nav.wait_for(timeout=WAIT)
        sidebar = page.locator("[data-testid='stSidebar']")
        sidebar.get_by_text(f"Signed in as {EMAIL} (reviewer)").wait_for(timeout=WAIT)
        sidebar.get_by_role("button", name="Sign out").wait_for(timeout=WAIT)
        assert "sign-in is off" not in sidebar.inner_text()
        sidebar.get_by_text("Saliency methods").wait_for(timeout=WAIT)  # the rest of the sidebar
        page.get_by_role("heading", name="Explain a prediction").wait_for(timeout=WAIT)
        page.screenshot(path=os.path.join(ARTIFACTS, "signin_sidebar.png"))

        # a review decision, recorded under the provider's subject
        nav.get_by_text("Review", exact=True).click()
        page.get_by_text("Signed in as").first.wait_for(timeout=WAIT)
        methods = page.locator("[data-testid='stMultiSelect']").filter(has_text="Methods shown for each item")
        methods.click()
        for _ in range(3):  # the defaults less all but the first (Gradient): quick maps
            page.keyboard.press("Backspace")
        page.keyboard.press("Escape")
        page.get_by_role("button", name="Open batch").click()
        accept = page.get_by_role("button", name="Accept", exact=True)
        accept.wait_for(timeout=600_000)
        accept.click()
        page.get_by_text("Recorded Accept for").wait_for(timeout=WAIT)
        page.get_by_text(f"Your decisions are recorded as oidc:default:{SUBJECT}.").wait_for(timeout=WAIT)
        page.screenshot(path=os.path.join(ARTIFACTS, "signin_decision.png"), full_page=True)
        with rs.ReviewStore(database) as store:
            [decision] = store.decisions()
            assert decision.reviewer == f"oidc:default:{SUBJECT}" and decision.decision == "accept"
            assert store.audit_log()[0].actor == f"oidc:default:{SUBJECT} <{EMAIL}>"
            assert [e.account for e in store.events(kinds=["signin"])][-1] == f"oidc:default:{SUBJECT}"
            assert store.verify().ok

        # sign out (through the provider's end-session page), then refused again
        sidebar.get_by_role("button", name="Sign out").click()
        end = page.get_by_role("button", name="End session")
        end.wait_for(timeout=WAIT)
        end.click()
        _sign_in_screen(page)
        assert page.get_by_text(FAILED).count() == 0
        page.goto(f"{url}/review")
        _sign_in_screen(page)
        browser.close()
