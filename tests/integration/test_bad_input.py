"""Bad input to the worker API and to the back-channel endpoint: a clear 4xx,
nothing changes, everything keeps serving. Real Keycloak, real processes."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

from oidc_idle import logout_token
from stack import APP_SECRETS, wait_for

pytestmark = pytest.mark.keycloak


@pytest.fixture
def live(make_stack, keycloak):
    stack = make_stack(idle_s=60, warn_s=10)
    user, pw, uid = keycloak.new_user()
    browser, sid = stack.login_both(user, pw)
    wait_for(lambda: (s := stack.session(sid)) and len(s.clients) == 2, 10, "both apps known")
    return stack, browser, sid, uid


def _snapshot(stack, sid):
    s = stack.session(sid)
    store = stack.store()
    n = store.count_sessions()
    audit = len(list(store.audit_entries()))
    store.close()
    return (s.last_activity_at, s.deadline, s.state, s.clients, n, audit)


def _post(stack, token, body, content_type="application/json"):
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(f"{stack.worker_url}/v1/activity", data=body, headers=headers,
                         timeout=10)


def test_activity_api_rejects_bad_input_and_changes_nothing(live, keycloak):
    stack, _, sid, uid = live
    token = keycloak.client_token("patient-portal", APP_SECRETS["patient-portal"])
    before = _snapshot(stack, sid)
    ev = {"sid": sid, "sub": uid, "kind": "click"}
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    cases = [
        ("malformed JSON", token, '{"events": [', 400, "malformed_json"),
        ("not JSON at all", token, "hello", 400, "malformed_json"),
        ("wrong content type", token, json.dumps({"events": [ev]}), 400, "unsupported_media"),
        ("body not an object", token, json.dumps([ev]), 400, "invalid_request"),
        ("no events", token, json.dumps({}), 400, "invalid_request"),
        ("empty events", token, json.dumps({"events": []}), 400, "invalid_request"),
        ("unknown kind", token, json.dumps({"events": [{**ev, "kind": "mousewiggle"}]}), 400,
         "unknown_kind"),
        ("missing sid", token, json.dumps({"events": [{"sub": uid, "kind": "click"}]}), 400,
         "invalid_request"),
        ("missing kind", token, json.dumps({"events": [{"sid": sid, "sub": uid}]}), 400,
         "invalid_request"),
        ("bad timestamp", token, json.dumps({"events": [{**ev, "at": "yesterday"}]}), 400,
         "invalid_request"),
        ("future timestamp", token, json.dumps({"events": [{**ev, "at": future}]}), 400,
         "future_timestamp"),
        ("one bad event spoils the batch", token,
         json.dumps({"events": [ev, {**ev, "kind": "nope"}]}), 400, "unknown_kind"),
        ("no bearer token", None, json.dumps({"events": [ev]}), 401, "unauthorized"),
        ("garbage bearer token", "not-a-jwt", json.dumps({"events": [ev]}), 401,
         "unauthorized"),
    ]
    # A token signed by a key Keycloak never published.
    rogue = RSAKey.generate_key(2048, parameters={"kid": "rogue"})
    forged = jwt.encode({"alg": "RS256", "kid": "rogue"},
                        {"iss": keycloak.issuer, "azp": "patient-portal",
                         "aud": "oidc-idle-worker", "exp": int(time.time()) + 60}, rogue)
    cases.append(("forged bearer token", forged, json.dumps({"events": [ev]}), 401,
                  "unauthorized"))
    for name, tok, body, status, error in cases:
        ct = "text/plain" if name == "wrong content type" else "application/json"
        r = _post(stack, tok, body, ct)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/problem+json"), name
        problem = r.json()
        assert problem["type"].endswith(error), (name, problem)
        assert problem["detail"], name
        assert "Traceback" not in r.text
    assert _snapshot(stack, sid) == before
    # A user's own access token is not the app's service-account token.
    user_access = stack.rp_store("patient-portal").load(
        live[1].cookies.get("oidc_idle_patient-portal"))["oidc_idle_tokens"]["access_token"]
    r = _post(stack, user_access, json.dumps({"events": [ev]}))
    assert r.status_code == 401
    # A client that is not part of the session cannot report for it or read it.
    intruder = keycloak.client_token("admin-console", APP_SECRETS["admin-console"])
    r = _post(stack, intruder, json.dumps({"events": [{**ev, "sid": "not-" + sid}]}))
    assert r.status_code == 200 and r.json()["results"][0]["error"] == "unknown_session"
    r = requests.get(f"{stack.worker_url}/v1/sessions/not-{sid}",
                     headers={"Authorization": f"Bearer {intruder}"}, timeout=10)
    assert r.status_code == 404
    assert _snapshot(stack, sid) == before
    # And the worker still serves good input.
    r = _post(stack, token, json.dumps({"events": [ev]}))
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    assert result["state"] == "active" and result["counted"] is True
    assert _snapshot(stack, sid)[0] > before[0]
    assert requests.get(f"{stack.worker_url}/healthz", timeout=5).status_code == 200


def _worker_key(stack):
    store = stack.store()
    keys = store.signing_keys()
    store.close()
    return RSAKey.import_key(keys[0]["private_jwk"])


def test_backchannel_endpoint_rejects_bad_tokens_and_ends_nothing(live):
    stack, browser, sid, uid = live
    url = stack.url("patient-portal", "/oidc-idle/backchannel-logout")
    key = _worker_key(stack)
    now = int(time.time())

    def token(**overrides):
        claims = {"iss": stack.worker_url, "aud": "patient-portal", "iat": now,
                  "exp": now + 120, "jti": uuid.uuid4().hex, "sid": sid, "sub": uid,
                  "events": {logout_token.BCL_EVENT: {}}}
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode({"alg": "RS256", "typ": "logout+jwt", "kid": key.kid}, claims, key)

    rogue = RSAKey.generate_key(2048, parameters={"kid": "rogue-key"})
    unknown_key = jwt.encode({"alg": "RS256", "typ": "logout+jwt", "kid": "rogue-key"},
                             {"iss": stack.worker_url, "aud": "patient-portal", "iat": now,
                              "exp": now + 60, "jti": "x", "sid": sid,
                              "events": {logout_token.BCL_EVENT: {}}}, rogue)
    bad = {
        "garbage": {"logout_token": "garbage"},
        "no token": {"something": "else"},
        "unknown key": {"logout_token": unknown_key},
        "nonce present": {"logout_token": token(nonce="n-0S6_WzA2Mj")},
        "wrong audience": {"logout_token": token(aud="admin-console")},
        "no events": {"logout_token": token(events=None)},
        "expired": {"logout_token": token(iat=now - 300, exp=now - 200)},
        "neither sid nor sub": {"logout_token": token(sid=None, sub=None)},
    }
    for name, form in bad.items():
        r = requests.post(url, data=form, timeout=10)
        assert r.status_code == 400, (name, r.status_code, r.text)
        assert r.headers["Cache-Control"] == "no-store", name
        assert r.json()["error"] == "invalid_request" and r.json()["error_description"], name
        assert stack.rp_store("patient-portal").count_for_sid(sid) == 1, name
    assert browser.go("GET", stack.url("patient-portal", "/whoami")).status_code == 200
    # The control: a good token from the worker ends the session (and only in that app).
    r = requests.post(url, data={"logout_token": token()}, timeout=10)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert stack.rp_store("patient-portal").count_for_sid(sid) == 0
    assert stack.rp_store("admin-console").count_for_sid(sid) == 1
