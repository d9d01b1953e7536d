"""`oidc-idle rp register` against the real Keycloak, and key rotation with a
running app."""

from __future__ import annotations

import subprocess
import sys
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


def cli(*args):
    return subprocess.run([sys.executable, "-m", "oidc_idle", *args], capture_output=True,
                          text=True, timeout=120)


def test_rp_register_creates_a_client_that_works_end_to_end(make_stack, keycloak):
    stack = make_stack(idle_s=5, warn_s=1)
    port = free_port()
    name = f"lab-{uuid.uuid4().hex[:6]}"
    args = ["rp", "register", "--client-id", name, "--url", f"http://127.0.0.1:{port}",
            "--keycloak-url", keycloak.base_url, "--realm", "demo"]
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert f"created client {name}" in first.stdout
    again = cli(*args)
    assert again.returncode == 0 and f"updated client {name}" in again.stdout, "idempotent"
    secret = next(line.split()[-1] for line in again.stdout.splitlines()
                  if "client secret" in line)
    app = start_app(name, port=port, issuer=keycloak.issuer, worker_url=stack.worker_url,
                    session_db=stack.run_dir / f"{name}.db", log=stack.run_dir / f"{name}.log",
                    extra_env={"OIDC_IDLE_APP_CLIENT_SECRET": secret})
    try:
        user, pw, uid = keycloak.new_user()
        b = Browser()
        r = b.login_form(b.go("GET", f"http://127.0.0.1:{port}/whoami"), user, pw)
        assert r.status_code == 200, "login through the registered client"
        sid = r.json()["sid"]
        # Activity reporting: the worker tracks the session for this client.
        wait_for(lambda: (s := stack.session(sid)) and name in s.clients, 10,
                 "the worker to track the new client's session")
        # Back-channel logout: at the deadline the new app is told and acknowledges.
        wait_for(lambda: stack.terminated_record(sid), 20, "the automatic logoff")
        note = wait_for(lambda: [n for n in stack.notifications(sid)
                                 if n.client_id == name and n.state == "delivered"], 10,
                        "delivery to the registered app")[0]
        assert note.last_status == 200
        assert Browser.is_login_page(b.go("GET", f"http://127.0.0.1:{port}/whoami"))
        assert keycloak.sessions_of(uid) == []
    finally:
        app.stop()


def test_rp_register_errors_are_clear(keycloak):
    bad_url = cli("rp", "register", "--client-id", "x", "--url", "not a url",
                  "--keycloak-url", keycloak.base_url)
    assert bad_url.returncode == 2 and "--url" in bad_url.stderr
    down = cli("rp", "register", "--client-id", "x", "--url", "http://127.0.0.1:9",
               "--keycloak-url", "http://127.0.0.1:9")
    assert down.returncode == 2 and "cannot sign in to Keycloak" in down.stderr
    for r in (bad_url, down):
        assert "Traceback" not in r.stderr


def _token(key, iss, sid, sub):
    now = int(time.time())
    return jwt.encode({"alg": "RS256", "typ": "logout+jwt", "kid": key.kid},
                      {"iss": iss, "aud": "patient-portal", "iat": now, "exp": now + 60,
                       "jti": uuid.uuid4().hex, "sid": sid, "sub": sub,
                       "events": {BCL_EVENT: {}}}, key)


def test_key_rotation_keeps_tokens_in_flight_valid(make_stack, keycloak):
    stack = make_stack(idle_s=60, warn_s=5)
    bcl = stack.url("patient-portal", "/oidc-idle/backchannel-logout")
    db = str(stack.run_dir / "worker.db")

    def keys():
        store = stack.store()
        try:
            return [(k["kid"], RSAKey.import_key(k["private_jwk"]), k["active"])
                    for k in store.signing_keys()]
        finally:
            store.close()

    old_kid, old_key, _ = keys()[0]
    users = [keycloak.new_user() for _ in range(3)]
    sessions = []
    for user, pw, uid in users:
        _, sid = stack.login_both(user, pw)
        sessions.append((sid, uid))
    # Before the rotation: the app knows the old key.
    assert requests.post(bcl, data={"logout_token": _token(old_key, stack.worker_url,
                                                            *sessions[0])}).status_code == 200

    rotated = cli("keys", "rotate", "--db", db)
    assert rotated.returncode == 0, rotated.stderr
    new_kid = keys()[0][0]
    assert new_kid != old_kid and new_kid in rotated.stdout
    published = {k["kid"] for k in requests.get(f"{stack.worker_url}/.well-known/jwks.json",
                                                timeout=5).json()["keys"]}
    assert published == {old_kid, new_kid}

    # A token signed before the rotation, still in flight, is accepted...
    assert requests.post(bcl, data={"logout_token": _token(old_key, stack.worker_url,
                                                            *sessions[1])}).status_code == 200
    # ...and so is one the worker signs now with the new key (the app fetches it).
    time.sleep(1.1)  # the app refetches an issuer's keys at most once a second
    sid, _ = sessions[2]
    r = requests.delete(f"{stack.worker_url}/v1/sessions/{sid}", headers={
        "Authorization": "Bearer " + keycloak.client_token("patient-portal",
                                                           "patient-portal-demo-secret")})
    assert r.status_code == 202
    note = wait_for(lambda: [n for n in stack.notifications(sid)
                             if n.client_id == "patient-portal" and n.state == "delivered"],
                    15, "delivery signed with the new key")[0]
    assert note.last_status == 200 and note.attempts == 1

    # A second rotation withdraws the first key: once the app's cached key set
    # ages out (2 s in these tests, OIDC_IDLE_KEYS_MAX_AGE), its tokens are refused.
    assert cli("keys", "rotate", "--db", db).returncode == 0
    time.sleep(2.1)
    late = requests.post(bcl, data={"logout_token": _token(old_key, stack.worker_url,
                                                            *sessions[1])})
    assert late.status_code == 400


def test_rp_register_by_an_admin_without_the_role_is_a_clear_error(keycloak):
    from keycloak import KeycloakAdmin

    master = KeycloakAdmin(server_url=keycloak.base_url, username="admin", password="admin",
                           realm_name="master", user_realm_name="master")
    name = f"limited-{uuid.uuid4().hex[:6]}"
    uid = master.create_user({"username": name, "enabled": True, "email": f"{name}@t.example",
                              "emailVerified": True, "firstName": "L", "lastName": "L",
                              "credentials": [{"type": "password", "value": "pw-limited",
                                               "temporary": False}]})
    try:
        r = cli("rp", "register", "--client-id", "x-app", "--url", "http://127.0.0.1:9",
                "--keycloak-url", keycloak.base_url, "--admin-user", name,
                "--admin-password", "pw-limited")
        assert r.returncode == 2, r.stdout
        assert "403" in r.stderr and "manage-clients" in r.stderr
        assert "Traceback" not in r.stderr
    finally:
        master.delete_user(uid)
