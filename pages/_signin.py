"""Sign-in for every page: who is signed in (a local account or the organisation's identity
provider through Streamlit's st.login), the gate app.py calls before any page runs, the sign-in
options, and sign-out on the sidebar.

Operator settings (environment):

- ``SALIENCY_REQUIRE_SIGN_IN=1``: every page shows the sign-in screen and nothing else until
  someone with a role is signed in. Unset: pages are open, and the sidebar says so.
- ``SALIENCY_SIGN_IN``: ``local`` (accounts file), ``oidc`` (identity provider, ``[auth]`` in
  ``.streamlit/secrets.toml``) or ``both`` (default: whichever is configured).
- ``SALIENCY_SIGN_IN_MAX_HOURS`` (default 12): a sign-in older than this is no longer accepted.
  Streamlit's identity cookie itself lasts 30 days and cannot be shortened, so the age is taken
  from the ID token's ``auth_time`` (else ``iat``) for the identity provider, and from the time of
  the password check for a local account.

Roles are asked again at every run (``identity.load_rules`` for the identity provider,
``auth.current_role`` for local accounts), so an identity whose role was removed loses access at
its next request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

import streamlit as st

from pages._client import client_id
from pages._text import plain
from saliency_core.review import auth, identity
from saliency_core.review import store as rs
from saliency_core.review.identity import Account

REQUIRE_ENV = "SALIENCY_REQUIRE_SIGN_IN"
MODE_ENV = "SALIENCY_SIGN_IN"
MAX_HOURS_ENV = "SALIENCY_SIGN_IN_MAX_HOURS"
MODES = ("local", "oidc", "both")
DEFAULT_MAX_HOURS = 12.0
MAX_MAX_HOURS = 24 * 90  # a longer limit is refused as a typo
OPEN_LINE = "Anyone who can reach this address can use it: sign-in is off."
ATTEMPT_SECONDS = 600  # a provider sign-in that has not come back after this is forgotten
METADATA_TIMEOUT = 5.0  # seconds to reach the provider's metadata before sending anyone there
ORGANISATION = "your organisation's account"  # the button of the provider named "default"
LOCAL_KEY = "signin_local"  # {"name": user name, "at": Unix time of the password check}
FAILED = (
    "Signing in with {provider} did not complete: it was cancelled, the provider refused it, or "
    "the answer could not be checked. Nothing was recorded. Try again; if it keeps failing, tell "
    "the operator (the server log says why)."
)
log = logging.getLogger("saliency_lens.signin")
ss = st.session_state


# ---- settings ----------------------------------------------------------------------------------------
def required() -> bool:
    """Whether every page needs a signed-in user (``SALIENCY_REQUIRE_SIGN_IN=1``)."""
    return os.environ.get(REQUIRE_ENV, "").strip() == "1"


def setting_problems() -> list[str]:
    """What is wrong with the sign-in settings, in words (empty: nothing)."""
    problems = []
    if os.environ.get(MODE_ENV, "").strip().lower() not in ("", *MODES):
        problems.append(f"{MODE_ENV} must be local, oidc or both; got {os.environ[MODE_ENV]!r}.")
    try:
        max_hours()
    except ValueError as err:
        problems.append(str(err))
    return problems


def mode() -> str:
    value = os.environ.get(MODE_ENV, "").strip().lower()
    return value if value in MODES else "both"


def max_hours() -> float:
    """``SALIENCY_SIGN_IN_MAX_HOURS``: a finite number of hours above 0 and at most 90 days."""
    text = os.environ.get(MAX_HOURS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_HOURS
    try:
        hours = float(text)
    except ValueError:
        hours = math.nan
    if not (math.isfinite(hours) and 0 < hours <= MAX_MAX_HOURS):
        raise ValueError(
            f"{MAX_HOURS_ENV} must be a number of hours above 0 and at most {MAX_MAX_HOURS}; got {text!r}."
        )
    return hours


def _auth_section() -> dict:
    try:
        section = st.secrets.get("auth")
    except Exception:  # noqa: BLE001  no secrets file, or one that is not TOML
        return {}
    return section.to_dict() if hasattr(section, "to_dict") else dict(section or {})


def providers() -> dict[str, str]:
    """The identity providers configured in ``[auth]``: {name for st.login: words for its button}."""
    if mode() == "local":
        return {}
    section = _auth_section()
    found = {"default": ORGANISATION} if section.get("client_id") else {}
    for name, value in section.items():
        if isinstance(value, dict) and value.get("client_id"):
            found[name] = ORGANISATION if name == "default" else name.replace("-", " ").title()
    return found


def local_enabled() -> bool:
    return mode() in ("local", "both")


def _oidc_claims() -> dict:
    """What the identity provider said about the person signed in (st.user), or {}."""
    if not providers():
        return {}
    try:
        claims = st.user.to_dict()
    except Exception:  # noqa: BLE001  no identity cookie support here
        return {}
    return claims if claims.get("is_logged_in") else {}


# ---- who is signed in --------------------------------------------------------------------------------
def resolve() -> tuple[Account | None, str]:
    """The signed-in Account (its role asked again now), or None and why not in words ("" when
    nobody tried)."""
    hours = max_hours() if not setting_problems() else DEFAULT_MAX_HOURS
    local = ss.get(LOCAL_KEY)
    if local and local_enabled():
        role = auth.current_role(local["name"])
        if role is None:
            return None, f"The account {local['name']} no longer exists or has no role; sign in again."
        if identity.session_expired(local["at"], time.time(), hours):
            return None, f"Your sign-in is older than {hours:g} hours; sign in again."
        return Account(local["name"], role), ""
    claims = _oidc_claims()
    if not claims:
        return None, ""
    who = str(claims.get("email") or claims.get("sub") or "this identity")
    if identity.session_expired(identity.signed_in_at(claims), time.time(), hours):
        return None, f"Your sign-in as {who} is older than {hours:g} hours (or has no time); sign in again."
    try:
        account = identity.oidc_account(claims, identity.load_rules())
    except ValueError as err:
        log.error("roles file: %s", err)
        return None, "The roles file cannot be read, so nobody signed in has a role; tell the operator."
    if account is None:
        return None, (
            f"You are signed in as {who}, but you have no role here. Ask the operator to give you one "
            "(the roles file, SALIENCY_ROLES)."  # its path stays on the server
        )
    return account, ""


def current_account() -> Account | None:
    """The signed-in Account, its role asked again now; None when nobody with a role is signed in."""
    return resolve()[0]


# ---- the audit trail and the sign-in throttle --------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _event_store(url: str) -> rs.ReviewStore:
    return rs.ReviewStore(url)


@st.cache_resource
def _memory_events() -> auth.MemoryEvents:
    """Where sign-in failures are counted when the review database cannot be opened."""
    return auth.MemoryEvents()


def event_log():
    """The review database's chained event log, else one in this process's memory."""
    try:
        return _event_store(rs.database_url())
    except ValueError:
        return _memory_events()


def throttle() -> auth.SignInThrottle:
    return auth.SignInThrottle(event_log())


def _record_signin(account: Account) -> None:
    """An identity-provider sign-in goes to the chained event log once per browser session."""
    if ss.get("signin_recorded") == account.name:
        return
    ss["signin_recorded"] = account.name
    try:
        event_log().append_event(
            "signin",
            account=account.name,
            client=client_id(),
            detail=f"identity provider {account.provider}; subject {account.subject}; "
            f"e-mail {account.email or '(none)'}; role {account.role}",
        )
    except ValueError as err:  # the database refused the write: the sign-in stands, the log says so
        log.error("could not record the sign-in of %s: %s", account.name, err)


# ---- provider sign-ins that did not come back --------------------------------------------------------
@st.cache_resource
def _attempts() -> tuple[dict, threading.Lock]:
    """{browser key: (provider, Unix time)} of provider sign-ins started and not yet back."""
    return {}, threading.Lock()


def browser_key() -> str:
    """This browser, across the round trip to the provider: the token of Streamlit's XSRF cookie
    (kept by the browser, unlike the session), else the client address and user agent."""
    try:
        raw = str(st.context.cookies.get("_streamlit_xsrf", ""))
        agent = str((st.context.headers or {}).get("User-Agent", ""))
    except Exception:  # noqa: BLE001  no request context
        raw, agent = "", ""
    parts = raw.split("|")
    if len(parts) == 4 and parts[0] == "2":  # version 2: 2|mask|masked token|time
        try:
            mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
            token = bytes(b ^ mask[i % len(mask)] for i, b in enumerate(masked))
            return "xsrf:" + hashlib.sha256(token).hexdigest()
        except (ValueError, ZeroDivisionError):
            pass
    return "client:" + hashlib.sha256(f"{client_id()}|{agent}".encode()).hexdigest()


def _remember_attempt(provider: str) -> None:
    items, lock = _attempts()
    now = time.time()
    with lock:
        for key in [k for k, (_, at) in items.items() if now - at > ATTEMPT_SECONDS]:
            del items[key]
        items[browser_key()] = (provider, now)


def _take_attempt() -> str | None:
    """The provider of a sign-in this browser started and that has not come back, or None."""
    items, lock = _attempts()
    with lock:
        found = items.pop(browser_key(), None)
    if found is None or time.time() - found[1] > ATTEMPT_SECONDS:
        return None
    return found[0]


def provider_problem(name: str) -> str | None:
    """Why the provider ``name`` cannot be used now (its metadata cannot be fetched), or None."""
    section = _auth_section()
    conf = section.get(name) if isinstance(section.get(name), dict) else section  # [auth.NAME], else [auth]
    url = str(conf.get("server_metadata_url", ""))
    parsed = urllib.parse.urlsplit(url)
    where = parsed.netloc or "the identity provider"
    if parsed.scheme not in ("http", "https"):
        return f"The sign-in service is not set up (server_metadata_url of {name}); tell the operator."
    try:
        with urllib.request.urlopen(url, timeout=METADATA_TIMEOUT) as answer:  # noqa: S310  http(s) only
            metadata = json.loads(answer.read(1_000_000))
        if not isinstance(metadata, dict) or not isinstance(metadata.get("authorization_endpoint"), str):
            raise ValueError("its answer is not OpenID Connect metadata")
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        log.warning("identity provider %s: %s", name, reason)
        return (
            f"The sign-in service ({where}) cannot be reached or answered wrongly, so signing in is not "
            "possible now. Nothing was recorded. Try again later; if it lasts, tell the operator."
        )
    return None


def start_provider_sign_in(name: str) -> None:
    """Button callback: check the provider answers, remember the attempt, hand over to st.login."""
    problem = provider_problem(name)
    if problem:
        ss["signin_problem"] = problem
        return
    _remember_attempt(name)
    # this session is leaving for the provider: its own runs do not take the attempt
    ss["signin_started"] = name
    try:
        st.login(name)
    except Exception as err:  # noqa: BLE001  StreamlitAuthError: settings incomplete; Authlib missing
        _take_attempt()
        ss.pop("signin_started", None)
        log.error("st.login(%r) refused: %s", name, err)
        ss["signin_problem"] = (
            "Signing in with the identity provider cannot start: its settings are incomplete. "
            "Tell the operator (the server log says what is missing)."
        )


# ---- local accounts ----------------------------------------------------------------------------------
def _local_sign_in(after: Callable[[], None] | None) -> None:
    """Form callback (runs before the page). Lockouts after repeated failures: auth.SignInThrottle."""
    try:
        account = throttle().sign_in(
            str(ss.get("signin_user", "")).strip(), str(ss.get("signin_password", "")), client_id()
        )
    except ValueError as err:
        ss["signin_error"] = str(err)
        return
    ss[LOCAL_KEY] = {"name": account.name, "at": time.time()}
    if after is not None:
        after()


def _no_local_accounts() -> bool:
    try:
        return not auth.list_users()
    except ValueError:  # an unreadable accounts file: signing in says why
        return False


def sign_out() -> None:
    """Button callback: forget this session's state (uploads included); leave the identity provider
    too when signed in with it (st.logout starts a new session)."""
    oidc = bool(_oidc_claims())
    ss.clear()
    if oidc:
        st.logout()


def sign_in_options(after: Callable[[], None] | None = None) -> bool:
    """The ways to sign in the operator configured (provider buttons, the password form) and any
    message; returns False when there is none. ``after``: called after a password sign-in."""
    for key in ("signin_problem",):
        if key in ss:
            st.error(plain(ss.pop(key)))
    offered = False
    for name, label in providers().items():
        st.button(
            f"Sign in with {label}",
            key=f"signin_oidc::{name}",
            icon=":material/login:",
            on_click=start_provider_sign_in,
            args=(name,),
        )
        offered = True
    if local_enabled() and not _no_local_accounts():
        with st.form("signin_form", clear_on_submit=True, border=False):
            c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
            c1.text_input("User name", key="signin_user")
            c2.text_input("Password", type="password", key="signin_password")
            c3.form_submit_button(
                "Sign in", type="primary", width="stretch", on_click=_local_sign_in, args=(after,)
            )
        if "signin_error" in ss:
            st.error(plain(ss.pop("signin_error")))
        offered = True
    return offered


# ---- the gate --------------------------------------------------------------------------------------
def _sign_in_screen(notes: list[str]) -> None:
    st.title("Saliency Lens")
    st.markdown("**Sign in to continue.** This dashboard's pages are for signed-in users only.")
    for note in notes:
        st.error(plain(note))
    problems = setting_problems()
    if problems:
        st.error("Signing in is switched off until the operator fixes: " + plain(" ".join(problems)))
        return
    if not sign_in_options():
        st.info(
            "No way to sign in is set up yet: the operator adds accounts (python -m saliency_core users "
            "add NAME) or an identity provider (docs/sign-in.md).",
            icon=":material/person_off:",
        )
    if _oidc_claims():
        st.button("Sign out", key="signin_screen_out", on_click=sign_out, icon=":material/logout:")


def nav_position() -> str:
    """Where app.py's page navigation goes: hidden while the sign-in screen is all there is."""
    try:
        return "hidden" if required() and current_account() is None else "sidebar"
    except Exception:  # noqa: BLE001  the gate says what went wrong, and stops
        return "hidden"


def gate() -> Account | None:
    """Call before any page runs. With sign-in required and nobody with a role signed in: the
    sign-in screen, and the run stops. Otherwise the sidebar's sign-in lines; returns the Account.
    An unexpected error shows a short message with a reference (the trace goes to the server log)
    and, with sign-in required, stops the run: the gate fails closed."""
    try:
        return _gate()
    except Exception as err:  # noqa: BLE001  st.stop() and reruns are not Exceptions: they pass
        reference = secrets.token_hex(4)
        log.error("unexpected error while signing in (reference %s)", reference, exc_info=err)
        st.error(
            "Something went wrong while checking who is signed in. If it happens again, give the operator "
            f"the reference **{reference}**: the details are in the server log."
        )
        if required():
            st.stop()
        return None


def _gate() -> Account | None:
    account, note = resolve()
    notes = [note] if note else []
    if account is None and note:
        ss.pop(LOCAL_KEY, None)  # a removed, changed or expired local sign-in is said once, then gone
    tried = None if "signin_started" in ss else _take_attempt()  # taken by the session that comes back
    if account is not None and account.via == "oidc":
        _record_signin(account)
    elif tried is not None and not _oidc_claims():
        label = providers().get(tried, tried)
        notes.append(FAILED.format(provider=label))
    if required() and account is None:
        _sign_in_screen(notes)
        st.stop()
    for text in notes:
        st.error(plain(text))
    with st.sidebar:
        if account is not None:
            st.markdown(f"Signed in as **{plain(account.label)}** ({account.role})")
        if account is not None or _oidc_claims():
            st.button("Sign out", key="signin_sidebar_out", on_click=sign_out, icon=":material/logout:")
        if not required():
            st.caption(OPEN_LINE)
    return account
