"""Logout tokens: minted by the worker, validated by the relying party.

OpenID Connect Back-Channel Logout 1.0 (incorporating errata set 1, 2023).
§2.4 defines the token: ``iss``, ``aud``, ``iat``, ``exp``, ``jti``, ``events``
holding ``http://schemas.openid.net/event/backchannel-logout`` with a JSON
object as its value, ``sub`` and/or ``sid``, and **no** ``nonce``; it should
be typed ``logout+jwt`` (§2.4, explicit typing per RFC 8725 §3.11).
§2.6 lists the checks the receiver must make; :func:`validate` makes them in
that order. Pure apart from the injected key lookup and replay cache.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from joserfc import jwt

from .errors import InvalidLogoutToken, OidcIdleError
from .jose import unverified, verified_claims

BCL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TYP = "logout+jwt"
#: §2.4: "exp ... a short period ... RECOMMENDED no more than two minutes".
MAX_LIFETIME_S = 120


def mint(*, key: Any, issuer: str, audience: str, sub: str | None, sid: str | None,
         now_s: int, lifetime_s: int = MAX_LIFETIME_S) -> str:
    """A fresh logout token: new ``jti`` every call, ``exp`` ≤ 2 minutes."""
    if sub is None and sid is None:
        raise ValueError("a logout token needs sub or sid (§2.4)")
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "iat": now_s,
        "exp": now_s + min(lifetime_s, MAX_LIFETIME_S),
        "jti": uuid.uuid4().hex,
        "events": {BCL_EVENT: {}},
    }
    if sub is not None:
        claims["sub"] = sub
    if sid is not None:
        claims["sid"] = sid
    header = {"alg": "RS256", "typ": LOGOUT_TYP, "kid": key.kid}
    return jwt.encode(header, claims, key, algorithms=["RS256"])


class KeyLookup(Protocol):
    def key_for(self, kid: str | None) -> Any: ...


@dataclass(frozen=True)
class TrustedIssuer:
    """An issuer whose logout tokens are accepted, with its keys and pinned ``alg``.

    ``speaks_for`` is the issuer whose sessions its tokens name: the worker
    issues tokens about the realm's sessions (DESIGN.md, Notifier).
    """

    issuer: str
    keys: KeyLookup
    algorithms: tuple[str, ...] = ("RS256",)
    speaks_for: str | None = None

    @property
    def session_issuer(self) -> str:
        return self.speaks_for or self.issuer


@dataclass(frozen=True)
class LogoutRequest:
    issuer: TrustedIssuer
    sub: str | None
    sid: str | None
    jti: str
    exp: int
    claims: dict[str, Any]


def validate(token: Any, *, trusted: Mapping[str, TrustedIssuer], audience: str, now_s: int,
             skew_s: int = 30, max_age_s: int = 600,
             seen_jti: Callable[[str, str, int], bool] | None = None) -> LogoutRequest:
    """Validate a logout token per BCL 1.0 §2.6; raise InvalidLogoutToken naming the rule."""

    def bad(msg: str) -> InvalidLogoutToken:
        return InvalidLogoutToken(msg)

    try:
        header, unverified_claims = unverified(token)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(f"logout_token is not a signed JWT: {exc}") from exc
    # §2.6 step 1-2 (via OIDC Core §3.1.3.7): the issuer must be one we trust,
    # the alg the one pinned for it ("none" is never pinned), the signature valid.
    iss = unverified_claims.get("iss")
    if not isinstance(iss, str) or iss not in trusted:
        raise bad(f"untrusted or missing iss: {iss!r}")
    issuer = trusted[iss]
    alg = header.get("alg")
    if alg not in issuer.algorithms:
        raise bad(f"alg {alg!r} not accepted for {iss} (expected {list(issuer.algorithms)})")
    # BCL §2.4 (errata): typ SHOULD be logout+jwt; a JWT typed as something else
    # (an ID token, an access token "at+jwt") must not be accepted as a logout.
    typ = header.get("typ")
    if typ is not None and str(typ).lower() not in ("jwt", LOGOUT_TYP):
        raise bad(f"typ {typ!r} is not a logout token type")
    try:
        key = issuer.keys.key_for(header.get("kid"))
    except OidcIdleError as exc:
        raise bad(f"cannot find the signing key: {exc.description}") from exc
    try:
        claims = verified_claims(token, key, list(issuer.algorithms))
    except ValueError as exc:
        raise bad(str(exc)) from exc
    # §2.6 step 3: iss, aud, iat, exp as for ID tokens (OIDC Core §3.1.3.7).
    if claims.get("iss") != iss:
        raise bad("iss changed between header check and verification")
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
    if not auds or audience not in auds:
        raise bad(f"aud {aud!r} does not contain {audience!r}")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int | float) or isinstance(iat, bool):
        raise bad("iat is required and must be a number")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise bad("exp is required and must be a number (BCL 1.0 errata: exp is REQUIRED)")
    if iat > now_s + skew_s:
        raise bad(f"iat is {int(iat - now_s)} s in the future")
    if iat < now_s - max_age_s:
        raise bad(f"iat is {int(now_s - iat)} s old, older than {max_age_s} s")
    if exp <= now_s - skew_s:
        raise bad("token expired")
    # §2.6 step 4-5: sid or sub; the events claim with the BCL member, a JSON object.
    sub, sid = claims.get("sub"), claims.get("sid")
    if sub is not None and not isinstance(sub, str):
        raise bad("sub must be a string")
    if sid is not None and not isinstance(sid, str):
        raise bad("sid must be a string")
    if not sub and not sid:
        raise bad("neither sid nor sub is present")
    events = claims.get("events")
    if not isinstance(events, dict) or BCL_EVENT not in events:
        raise bad(f"events claim must contain {BCL_EVENT}")
    if not isinstance(events[BCL_EVENT], dict):
        raise bad(f"events[{BCL_EVENT}] must be a JSON object")
    # §2.6 step 6: a nonce means someone is passing an ID token off as a logout token.
    if "nonce" in claims:
        raise bad("nonce is present: not a logout token")
    # §2.6 step 7 (optional, which we do): the jti has not been seen before.
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise bad("jti is required")
    if seen_jti is not None and seen_jti(iss, jti, int(exp)):
        raise bad("jti already used (replay)")
    return LogoutRequest(issuer, sub or None, sid or None, jti, int(exp), claims)
