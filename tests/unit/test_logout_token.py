"""OIDC Back-Channel Logout 1.0 §2.6 checks, including the OpenID Foundation's
RP back-channel conformance cases (valid; alg none; no events; wrong event;
nonce; wrong alg with a valid published key; wrong aud; wrong iss)."""

from __future__ import annotations

import base64
import json

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from oidc_idle.errors import InvalidLogoutToken
from oidc_idle.logout_token import BCL_EVENT, TrustedIssuer, mint, validate

NOW = 1_800_000_000
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
OTHER = RSAKey.generate_key(2048, parameters={"kid": "k2"})


class StaticKeys:
    def __init__(self, *keys):
        self.keys = {k.kid: k for k in keys}
        self.lookups = 0

    def key_for(self, kid):
        self.lookups += 1
        if kid not in self.keys:
            raise InvalidLogoutToken(f"no key {kid}")
        return self.keys[kid]


TRUSTED = {"https://idp": TrustedIssuer("https://idp", StaticKeys(KEY))}


def claims(**over):
    c = {"iss": "https://idp", "aud": "rp", "iat": NOW, "exp": NOW + 120, "jti": "j1",
         "sub": "u1", "sid": "s1", "events": {BCL_EVENT: {}}}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def sign(c, key=KEY, header=None):
    h = {"alg": "RS256", "kid": key.kid, "typ": "logout+jwt"}
    h.update(header or {})
    h = {k: v for k, v in h.items() if v is not None}
    return jwt.encode(h, c, key, algorithms=[h["alg"]])


def check(token, **kw):
    return validate(token, trusted=TRUSTED, audience="rp", now_s=NOW, **kw)


def test_valid_token():
    req = check(sign(claims()))
    assert (req.sid, req.sub, req.jti) == ("s1", "u1", "j1")


@pytest.mark.parametrize("typ", [None, "JWT", "logout+jwt"])
def test_accepted_typ_values(typ):
    assert check(sign(claims(), header={"typ": typ})).sid == "s1"


def test_aud_may_be_an_array():
    assert check(sign(claims(aud=["other", "rp"]))).sid == "s1"


def test_only_sub_or_only_sid_is_enough():
    assert check(sign(claims(sid=None))).sub == "u1"
    assert check(sign(claims(sub=None))).sid == "s1"


def test_unknown_claims_are_ignored():
    assert check(sign(claims(extra="x", typ="Logout"))).sid == "s1"


def _alg_none(c):
    def b64(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    return f"{b64({'alg': 'none', 'typ': 'logout+jwt'})}.{b64(c)}."


@pytest.mark.parametrize("name, token, words", [
    ("alg none", _alg_none(claims()), "alg"),
    ("no events", sign(claims(events=None)), "events"),
    ("wrong event", sign(claims(events={"http://schemas.openid.net/event/other": {}})),
     "events"),
    ("event value not an object", sign(claims(events={BCL_EVENT: "yes"})), "JSON object"),
    ("nonce", sign(claims(nonce="n")), "nonce"),
    ("wrong aud", sign(claims(aud="someone-else")), "aud"),
    ("wrong iss", sign(claims(iss="https://evil")), "iss"),
    ("no iat", sign(claims(iat=None)), "iat"),
    ("no exp", sign(claims(exp=None)), "exp"),
    ("expired", sign(claims(iat=NOW - 300, exp=NOW - 100)), "expired"),
    ("iat in the future", sign(claims(iat=NOW + 600, exp=NOW + 700)), "future"),
    ("too old", sign(claims(iat=NOW - 3600, exp=NOW + 60)), "old"),
    ("no jti", sign(claims(jti=None)), "jti"),
    ("neither sid nor sub", sign(claims(sid=None, sub=None)), "sid nor sub"),
    ("typ of an access token", sign(claims(), header={"typ": "at+jwt"}), "typ"),
    ("unknown key", sign(claims(), key=OTHER), "key"),
    ("bad signature", sign(claims())[:-6] + "AAAAAA", "signature"),
    ("garbage", "not.a.jwt", "JWT"),
    ("not a string", None, "JWT"),
])
def test_rejected(name, token, words):
    with pytest.raises(InvalidLogoutToken) as err:
        check(token)
    assert words.lower() in err.value.description.lower(), (name, err.value.description)


def test_wrong_alg_signed_with_a_valid_published_key_is_refused():
    # HS256 "signed" with the RSA public key bytes: the classic alg-confusion attack.
    import hashlib
    import hmac

    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = (b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode()) + "." +
                     b64(json.dumps(claims()).encode()))
    mac = hmac.new(KEY.as_pem(private=False), signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64(mac)}"
    with pytest.raises(InvalidLogoutToken) as err:
        check(token)
    assert "alg" in err.value.description


def test_replayed_jti_is_refused():
    seen: set[tuple[str, str]] = set()

    def seen_jti(iss, jti, exp):
        hit = (iss, jti) in seen
        seen.add((iss, jti))
        return hit

    token = sign(claims())
    check(token, seen_jti=seen_jti)
    with pytest.raises(InvalidLogoutToken, match="replay"):
        check(token, seen_jti=seen_jti)


def test_minted_tokens_validate_and_are_fresh():
    trusted = {"https://worker": TrustedIssuer("https://worker", StaticKeys(KEY),
                                               speaks_for="https://idp")}
    a = mint(key=KEY, issuer="https://worker", audience="rp", sub="u1", sid="s1", now_s=NOW)
    b = mint(key=KEY, issuer="https://worker", audience="rp", sub="u1", sid="s1", now_s=NOW)
    ra = validate(a, trusted=trusted, audience="rp", now_s=NOW)
    rb = validate(b, trusted=trusted, audience="rp", now_s=NOW)
    assert ra.jti != rb.jti
    assert ra.exp - NOW <= 120
    assert ra.issuer.session_issuer == "https://idp"
