"""Who may do what: roles viewer / reviewer / admin, the actions each allows, and the role of
someone signed in through the organisation's identity provider (OpenID Connect).

Roles, lowest first (each allows what the roles below it allow):

- ``viewer``: sees every page, computes maps, uploads images; records nothing.
- ``reviewer``: also records review decisions.
- ``admin`` (QA lead): also sees every reviewer's notes, exports and the audit log, unlocks
  sign-in lockouts and signs off qualifications.

Local accounts carry their role in the accounts file (``auth``). For an identity-provider
sign-in the role comes from the roles file (``SALIENCY_ROLES``, default ``./data/roles.toml``),
read again at every request, so a change there applies at the identity's next request::

    claim = "groups"        # the ID-token claim holding group or role names (a list or one text)
    default = "none"        # role of an identity that nothing below matches; "none": refused

    [claim_values]          # claim value -> role
    "qa-leads" = "admin"
    "qa-inspectors" = "reviewer"
    "staff" = "viewer"

    [emails]                # allow-list: e-mail -> role; an entry here wins over the claim
    "lead@example.com" = "admin"
    "left@example.com" = "none"

An e-mail counts only if the provider does not say it is unverified (``email_verified`` false).
An identity is recorded as ``oidc:<provider>:<subject>`` (the provider's stable subject), with
its e-mail beside it where the audit log names who acted.

Example:
    >>> rules = load_rules("roles.toml")
    >>> role_from_claims({"sub": "u1", "email": "lead@example.com"}, rules)
    'admin'
    >>> can(Account("oidc:default:u1", "viewer", via="oidc"), "decide")
    False
"""

from __future__ import annotations

import hashlib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("viewer", "reviewer", "admin")  # lowest first
NO_ROLE = "none"  # in the roles file: refused
DEFAULT_ROLES_FILE = os.path.join("data", "roles.toml")
# action -> the lowest role that may do it
ACTIONS = {
    "view": "viewer",  # see the pages, compute maps, upload images
    "decide": "reviewer",  # record a review decision
    "oversee": "admin",  # every reviewer's notes, full exports, the audit log and its check
    "unlock": "admin",  # clear a sign-in lockout
    "sign_off": "admin",  # sign off a qualification
}
MAX_SUBJECT = 150  # characters of a subject kept as is in the identity key; longer ones are hashed
MAX_CLAIM_VALUES = 1000  # values of the role claim looked at


@dataclass(frozen=True)
class Account:
    """A signed-in person: ``name`` (user name, or ``oidc:<provider>:<subject>``), ``role`` and how
    they signed in (``via`` "password" or "oidc"); for an identity-provider sign-in also the
    provider, subject and e-mail."""

    name: str
    role: str
    via: str = "password"
    email: str = field(default="", compare=False)
    provider: str = field(default="", compare=False)
    subject: str = field(default="", compare=False)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def label(self) -> str:
        """How the person is named on screen: the e-mail of an identity-provider sign-in, else the name."""
        return self.email or self.name

    @property
    def actor(self) -> str:
        """Who acted, as the audit log records it: the name, and the e-mail when there is one."""
        return f"{self.name} <{self.email}>"[:200] if self.email else self.name


def can(account: Account | None, action: str) -> bool:
    """Whether ``account`` may do ``action`` (one of ``ACTIONS``); nobody signed in may do nothing.

    Raises:
        ValueError: an unknown action (a typo must not quietly refuse or allow).
    """
    if action not in ACTIONS:
        raise ValueError(f"Expected an action among {', '.join(ACTIONS)}; got {action!r}.")
    if account is None or account.role not in ROLES:
        return False
    return ROLES.index(account.role) >= ROLES.index(ACTIONS[action])


@dataclass(frozen=True)
class RoleRules:
    """The roles file: ``claim`` (name of the role claim), ``claim_values`` {value: role},
    ``emails`` {lower-case e-mail: role} and the ``default`` role ("none" or a role)."""

    claim: str = ""
    claim_values: Mapping[str, str] = field(default_factory=dict)
    emails: Mapping[str, str] = field(default_factory=dict)
    default: str = NO_ROLE


def roles_path(path: str | os.PathLike | None = None) -> Path:
    """The roles file: ``path``, else ``SALIENCY_ROLES``, else ``./data/roles.toml``."""
    return Path(path or os.environ.get("SALIENCY_ROLES") or DEFAULT_ROLES_FILE)


def _role(value, where: str) -> str:
    if not isinstance(value, str) or value not in (*ROLES, NO_ROLE):
        raise ValueError(f'{where}: expected one of {", ".join(ROLES)} or "{NO_ROLE}"; got {value!r}.')
    return value


def load_rules(path: str | os.PathLike | None = None) -> RoleRules:
    """The roles file as ``RoleRules``; no file: nobody gets a role (``RoleRules()``).

    Raises:
        ValueError: the file cannot be read, is not TOML, or names an unknown role.
    """
    file = roles_path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return RoleRules()
    except OSError as err:
        raise ValueError(f"Cannot read the roles file {file}: {err.strerror or err}.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"The roles file {file} is not valid TOML ({err}).") from None
    claim = data.get("claim", "")
    if not isinstance(claim, str) or len(claim) > 200:
        raise ValueError(f"The roles file {file}: claim must be the name of a claim; got {claim!r}.")
    tables = {}
    for name in ("claim_values", "emails"):
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ValueError(f"The roles file {file}: [{name}] must be a table of value = role.")
        tables[name] = {str(k): _role(v, f"The roles file {file}, [{name}] {k!r}") for k, v in table.items()}
    return RoleRules(
        claim=claim,
        claim_values=tables["claim_values"],
        emails={k.strip().lower(): v for k, v in tables["emails"].items()},
        default=_role(data.get("default", NO_ROLE), f"The roles file {file}, default"),
    )


def verified_email(claims: Mapping) -> str:
    """The identity's e-mail in lower case, or "" when there is none or the provider says it is
    not verified."""
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email or len(email) > 254:
        return ""
    if claims.get("email_verified") is False or str(claims.get("email_verified")).lower() == "false":
        return ""
    return email.strip().lower()


def claim_values(claims: Mapping, claim: str) -> list[str]:
    """The values of the role claim: a list of texts, or one text (one value)."""
    value = claims.get(claim) if claim else None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value[:MAX_CLAIM_VALUES] if isinstance(v, str)]
    return []


def role_from_claims(claims: Mapping, rules: RoleRules) -> str | None:
    """The role of an identity-provider identity, or None (refused).

    The e-mail allow-list decides when it lists the (verified) e-mail; else the highest role any
    value of the role claim maps to; else the rules' default.
    """
    email = verified_email(claims)
    if email and email in rules.emails:
        found = rules.emails[email]
    else:
        mapped = [rules.claim_values[v] for v in claim_values(claims, rules.claim) if v in rules.claim_values]
        granted = [r for r in mapped if r in ROLES]
        found = max(granted, key=ROLES.index) if granted else rules.default
    return found if found in ROLES else None


def identity_key(provider: str, subject: str) -> str:
    """``oidc:<provider>:<subject>``: what decisions record as the reviewer (a subject longer than
    ``MAX_SUBJECT`` characters is replaced by its sha256)."""
    if len(subject) > MAX_SUBJECT:
        subject = "sha256-" + hashlib.sha256(subject.encode("utf-8")).hexdigest()
    return f"oidc:{provider}:{subject}"


def oidc_account(claims: Mapping, rules: RoleRules) -> Account | None:
    """The Account of a signed-in identity (``claims``: what the provider said, with ``provider``
    and ``sub``), or None when it has no subject or no role."""
    provider, subject = claims.get("provider"), claims.get("sub")
    if not isinstance(provider, str) or not provider or not isinstance(subject, str) or not subject.strip():
        return None
    role = role_from_claims(claims, rules)
    if role is None:
        return None
    return Account(
        identity_key(provider, subject),
        role,
        via="oidc",
        email=verified_email(claims),
        provider=provider,
        subject=subject,
    )


def signed_in_at(claims: Mapping) -> float | None:
    """When the identity signed in at the provider (Unix seconds): ``auth_time``, else the ID
    token's ``iat``; None when neither is a finite number after 2000-01-01."""
    for name in ("auth_time", "iat"):
        value = claims.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
            if math.isfinite(value) and value > 946684800:
                return value
    return None


def session_expired(started: float | None, now: float, max_hours: float) -> bool:
    """Whether a sign-in made at ``started`` (Unix seconds; None: unknown) is older than
    ``max_hours`` at ``now``. An unknown start counts as expired; a start in the future (more
    than 5 minutes of clock skew) too."""
    if started is None:
        return True
    return not (started - 300 <= now <= started + max_hours * 3600)
