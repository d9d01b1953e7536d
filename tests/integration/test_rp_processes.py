"""Sessions are shared by every process of an app: a logout delivered to one
process ends the session for requests served by any other."""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

from httpbrowser import Browser
from oidc_idle.demo.stack import start_app
from oidc_idle.logout_token import BCL_EVENT
from stack import free_port, wait_for

pytestmark = pytest.mark.keycloak


def test_logout_delivered_to_one_process_ends_the_session_in_another(make_stack, keycloak):
    stack = make_stack(idle_s=120, warn_s=10)
    user, pw, uid = keycloak.new_user()
    browser, sid = stack.login_both(user, pw)
    port2 = free_port()
    second = start_app("patient-portal", port=port2, issuer=keycloak.issuer,
                       worker_url=stack.worker_url,
                       session_db=stack.run_dir / "patient-portal.db",
                       log=stack.run_dir / "patient-portal-2.log")
    try:
        other = f"http://127.0.0.1:{port2}/whoami"
        r = browser.go("GET", other)
        assert r.status_code == 200 and r.json()["sid"] == sid, "one session, two processes"

        stolen = browser.cookies.get("oidc_idle_patient-portal")
        assert stolen
        store = stack.store()
        key = RSAKey.import_key(store.signing_keys()[0]["private_jwk"])
        store.close()
        now = int(time.time())
        token = jwt.encode({"alg": "RS256", "typ": "logout+jwt", "kid": key.kid},
                           {"iss": stack.worker_url, "aud": "patient-portal", "iat": now,
                            "exp": now + 60, "jti": uuid.uuid4().hex, "sid": sid, "sub": uid,
                            "events": {BCL_EVENT: {}}}, key)
        r = requests.post(stack.url("patient-portal", "/oidc-idle/backchannel-logout"),
                          data={"logout_token": token}, timeout=10)
        assert r.status_code == 200
        # The very next request to the *other* process is sent to login. (Not
        # followed: Keycloak knows only the first process's redirect URI.)
        r = browser.get(other, allow_redirects=False)
        assert r.status_code == 302 and r.headers["Location"].startswith("/oidc-idle/login")
        # A stolen copy of the old cookie is worth nothing either.
        thief = Browser()
        thief.cookies.set("oidc_idle_patient-portal", stolen, domain="127.0.0.1")
        r = thief.get(other, allow_redirects=False)
        assert r.status_code == 302 and r.headers["Location"].startswith("/oidc-idle/login")
        wait_for(lambda: stack.rp_store("patient-portal").count_for_sid(sid) == 0, 5,
                 "the shared store to show the session gone")
        # Only the portal was told; the console's session is untouched by it.
        assert stack.rp_store("admin-console").count_for_sid(sid) == 1
    finally:
        second.stop()
