"""A real OpenID Connect provider on 127.0.0.1 for the sign-in tests (the oidc-provider-mock
package: authorization code flow, signed ID tokens, client registration), and the [auth]
settings Streamlit's st.login reads."""

from __future__ import annotations

import json
import secrets
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import oidc_provider_mock
import werkzeug.serving

COOKIE_SECRET = "a-test-cookie-secret-of-enough-bytes"


@contextmanager
def oidc_provider(users=(), require_client_registration: bool = True) -> Iterator[str]:
    """The provider on a free port of 127.0.0.1; yields its base URL (issuer). ``users``:
    ``oidc_provider_mock.User`` objects offered on its sign-in form with their claims."""
    app = oidc_provider_mock.app(
        require_client_registration=require_client_registration, require_nonce=True, user_claims=users
    )
    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def register_client(issuer: str, redirect_uri: str) -> tuple[str, str]:
    """Register a client with the provider (dynamic registration); returns (client id, secret)."""
    request = urllib.request.Request(
        f"{issuer}/oauth2/clients",
        data=json.dumps({"redirect_uris": [redirect_uri]}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        body = json.loads(answer.read())
    return body["client_id"], body["client_secret"]


def provider_settings(issuer: str, client_id: str, client_secret: str) -> dict:
    """One provider's settings as ``[auth.NAME]`` holds them."""
    return {
        "client_id": client_id,
        "client_secret": client_secret,
        "server_metadata_url": f"{issuer}/.well-known/openid-configuration",
    }


def auth_section(redirect_uri: str, **named: dict) -> dict:
    """``[auth]``: redirect URI, cookie secret, and the named providers."""
    return {"redirect_uri": redirect_uri, "cookie_secret": COOKIE_SECRET, **named}


def toml_text(auth: dict) -> str:
    """``auth`` as a secrets.toml."""
    lines = ["[auth]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in auth.items() if not isinstance(v, dict)]
    for name, section in auth.items():
        if isinstance(section, dict):
            lines += ["", f"[auth.{name}]"] + [f"{k} = {json.dumps(v)}" for k, v in section.items()]
    return "\n".join(lines) + "\n"


def wrong_secret() -> str:
    return secrets.token_hex(16)
