"""A stricter per-app idle timeout on the real Keycloak: that app is logged out
on its own deadline, alone; the SSO session and the other apps go on; using
that app again needs the password (prompt=login), not a silent SSO sign-in."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from httpbrowser import Browser
from oidc_idle.demo.stack import start_app
from stack import free_port, wait_for

pytestmark = pytest.mark.keycloak


def test_stricter_app_logs_out_alone_and_requires_the_password_again(make_stack, keycloak):
    stack = make_stack(idle_s=30, warn_s=5)
    port = free_port()
    name = f"records-{uuid.uuid4().hex[:6]}"
    secret = keycloak.admin.register_client(name, f"http://127.0.0.1:{port}")["secret"]
    applied = subprocess.run(
        [sys.executable, "-m", "oidc_idle", "realm", "apply", "--keycloak-url",
         keycloak.base_url, "--idle-timeout", "30s", "--warning-lead", "5s",
         "--absolute-lifetime", "1h", "--client-idle-timeout", f"{name}=5s"],
        capture_output=True, text=True, timeout=60)
    assert applied.returncode == 0, applied.stderr
    assert f"{name}/oidcIdle.idleTimeout" in applied.stdout
    strict = start_app(name, port=port, issuer=keycloak.issuer, worker_url=stack.worker_url,
                       session_db=stack.run_dir / f"{name}.db",
                       log=stack.run_dir / f"{name}.log",
                       extra_env={"OIDC_IDLE_APP_CLIENT_SECRET": secret})
    try:
        user, pw, uid = keycloak.new_user()
        browser, sid = stack.login_both(user, pw)
        r = browser.go("GET", f"http://127.0.0.1:{port}/whoami")
        assert r.status_code == 200 and r.json()["sid"] == sid, "silent SSO into the third app"
        wait_for(lambda: name in stack.session(sid).clients, 10, "the worker to see it")

        # Work in the portal only; the strict app's own 5 s run out.
        def ended():
            return stack.audit("session.app_terminated")

        while not ended():
            assert browser.go("GET", stack.url("patient-portal", "/whoami")).status_code == 200
            time.sleep(1)  # the user's pace in the portal
        rec = ended()[0]
        assert rec["type"] == "app_idle_timeout" and rec["identity"]["clients"] == [name]
        assert rec["source"]["policy"]["client_idle_timeout_s"] == 5
        note = wait_for(lambda: [n for n in stack.notifications(sid)
                                 if n.client_id == name and n.state == "delivered"], 10,
                        "the strict app's logout")[0]
        assert note.last_status == 200
        assert [n.client_id for n in stack.notifications(sid)] == [name], "only that app"
        # The SSO session and the other apps go on.
        assert len(keycloak.sessions_of(uid)) == 1
        for client_id in ("patient-portal", "admin-console"):
            assert browser.go("GET", stack.url(client_id, "/whoami")).status_code == 200
        # The strict app asks for the password again, and then works.
        r = browser.go("GET", f"http://127.0.0.1:{port}/whoami")
        assert Browser.is_login_page(r), "signed in silently through SSO"
        r = browser.login_form(r, user, pw)
        assert r.status_code == 200 and "json" in r.headers.get("Content-Type", ""), r.url
        assert r.json()["sid"] == sid
        assert stack.session(sid).state == "active"
        assert browser.go("GET", f"http://127.0.0.1:{port}/whoami").status_code == 200
    finally:
        strict.stop()
        kc = keycloak.admin._admin
        kc.delete_client(kc.get_client_id(name))
