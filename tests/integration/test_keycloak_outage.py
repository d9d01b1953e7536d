"""Keycloak unreachable for 30 s across a deadline. The worker's path to
Keycloak is cut by a proxy (a restarted dev-mode Keycloak would forget its
sessions, so the outage is made in the network, where Keycloak keeps its
state, as in a real partition)."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest
import requests

from stack import TcpProxy, wait_for

pytestmark = pytest.mark.keycloak

OUTAGE_S = 30


def test_apps_are_told_dead_during_the_outage_and_keycloak_is_cleaned_after(
        make_stack, keycloak):
    proxy = TcpProxy(urlparse(keycloak.base_url).port)
    stack = make_stack(idle_s=6, warn_s=2, OIDC_IDLE_KEYCLOAK_URL=proxy.url,
                       OIDC_IDLE_ISSUER=keycloak.issuer)
    user, pw, uid = keycloak.new_user()
    browser, sid = stack.login_both(user, pw)
    token = keycloak.client_token("patient-portal", "patient-portal-demo-secret")
    deadline = wait_for(lambda: (s := stack.session(sid)) and len(s.clients) == 2
                        and s.deadline, 10, "both apps known")
    wait_for(lambda: time.time() * 1000 >= deadline - 2000, 10, "two seconds before the deadline")
    proxy.cut()
    cut_at = time.monotonic()
    try:
        wait_for(lambda: stack.session(sid).state == "terminating", 15,
                 "the sweep to claim the session")
        # Keycloak still has the session (the worker cannot reach it)...
        assert len(keycloak.sessions_of(uid)) == 1
        # ...but the worker reports it dead, and the apps refuse it.
        r = requests.get(f"{stack.worker_url}/v1/sessions/{sid}",
                         headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert r.status_code == 200 and r.json()["alive"] is False
        for client_id in ("patient-portal", "admin-console"):
            r = browser.get(stack.url(client_id, "/whoami"), allow_redirects=False)
            assert r.status_code == 302 and "/oidc-idle/login" in r.headers["Location"], \
                client_id
        assert stack.terminated_record(sid) is None, "nothing is audited before it is done"
        wait_for(lambda: time.monotonic() - cut_at >= OUTAGE_S, OUTAGE_S + 5, "the outage")
    finally:
        proxy.restore()
    back = time.monotonic()
    wait_for(lambda: keycloak.sessions_of(uid) == [], 15, "deletion after Keycloak is back")
    deleted_after = time.monotonic() - back
    rec = wait_for(lambda: stack.terminated_record(sid), 10, "the audit record")
    assert deleted_after < 10
    assert rec["outcome"]["keycloak"]["result"] == "deleted"
    assert rec["outcome"]["keycloak"]["attempts"] > 1
    assert rec["deadline_ms"] == deadline
    assert [r["identity"]["sid"] for r in stack.audit("session.terminated")].count(sid) == 1
    proxy.cut()
