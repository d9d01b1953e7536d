"""Issue 2, "Must show": the main job on a real Keycloak, real worker, two real apps."""

from __future__ import annotations

import time

import pytest
import requests

from httpbrowser import Browser
from oidc_idle.clock import parse_iso_ms
from stack import APP_SECRETS, wait_for

pytestmark = pytest.mark.keycloak


def _last_activity(stack, sid: str) -> int:
    rec = stack.session(sid)
    assert rec is not None
    return rec.last_activity_at


def test_login_to_both_apps_gives_one_sid(make_stack, keycloak):
    stack = make_stack(idle_s=30, warn_s=5)
    user, pw, _ = keycloak.new_user()
    _, sid = stack.login_both(user, pw)
    # Both apps' server-side sessions are keyed by the same Keycloak session id.
    for client_id in APP_SECRETS:
        assert stack.rp_store(client_id).count_for_sid(sid) == 1
    # And the worker tracks that one SSO session with both apps in it.
    rec = wait_for(lambda: (s := stack.session(sid)) and len(s.clients) == 2 and s,
                   10, "the worker to see both apps")
    assert rec.clients == ("admin-console", "patient-portal")


def test_activity_in_one_app_keeps_the_other_alive_and_passive_traffic_does_not(
        make_stack, keycloak):
    stack = make_stack(idle_s=6, warn_s=2)
    idle_ms = stack.policy.idle_timeout_ms
    user, pw, uid = keycloak.new_user()
    browser, sid = stack.login_both(user, pw)

    # Work in the portal for 1.5 idle timeouts; the console sees no request at all.
    end = time.monotonic() + 1.5 * idle_ms / 1000
    while time.monotonic() < end:
        assert browser.go("GET", stack.url("patient-portal", "/whoami")).status_code == 200
        time.sleep(1)  # the user's pace, not synchronisation
    r = browser.go("GET", stack.url("admin-console", "/whoami"))
    assert r.status_code == 200 and r.json()["sid"] == sid, "one clock per SSO session"

    # Now only passive traffic: polls and a token refresh in the console.
    wait_for(lambda: stack.session(sid).last_activity_at > 0, 5, "worker state")
    t_sent = int(time.time() * 1000)
    assert browser.go("GET", stack.url("patient-portal", "/whoami")).status_code == 200
    t_back = int(time.time() * 1000)
    last = wait_for(lambda: (v := _last_activity(stack, sid)) >= t_sent - 5 and v,
                    5, "the last counted request to reach the worker")
    assert t_sent - 5 <= last <= t_back + 5
    refreshed = browser.go("POST", stack.url("admin-console", "/refresh"))
    assert refreshed.status_code == 200 and refreshed.json()["ok"] is True
    polls = 0
    while stack.terminated_record(sid) is None:
        r = browser.get(stack.url("admin-console", "/poll"), allow_redirects=False)
        if r.status_code != 200:
            break
        polls += 1
        assert _last_activity(stack, sid) == last, "a passive request moved the clock"
        time.sleep(0.5)
    assert polls >= 3
    rec = wait_for(lambda: stack.terminated_record(sid), 10, "the termination record")
    assert rec["deadline_ms"] == last + idle_ms
    assert keycloak.sessions_of(uid) == []


def test_idle_session_is_terminated_everywhere_at_its_deadline(make_stack, keycloak):
    stack = make_stack(idle_s=5, warn_s=2)
    idle_ms = stack.policy.idle_timeout_ms
    user, pw, uid = keycloak.new_user()
    browser, sid = stack.login_both(user, pw)
    refresh_token = stack.rp_store("admin-console").load(
        browser.cookies.get("oidc_idle_admin-console"))["oidc_idle_tokens"]["refresh_token"]
    assert browser.go("GET", stack.url("patient-portal", "/whoami")).status_code == 200
    assert len(keycloak.sessions_of(uid)) == 1

    rec = wait_for(lambda: stack.terminated_record(sid), idle_ms / 1000 + 15,
                   "the automatic logoff")
    worker_session = stack.session(sid)
    # The deadline is exactly the last counted activity plus the idle timeout.
    assert rec["deadline_ms"] == worker_session.last_activity_at + idle_ms
    assert parse_iso_ms(rec["deadline"]) == rec["deadline_ms"]
    assert rec["terminated_at_ms"] >= rec["deadline_ms"]
    assert rec["type"] == "automatic_logoff"
    assert rec["identity"] == {"sub": uid, "sid": sid,
                               "clients": ["admin-console", "patient-portal"]}
    assert rec["outcome"]["keycloak"]["result"] in ("deleted", "already_gone")
    assert rec["source"]["policy"]["idle_timeout_s"] == idle_ms / 1000

    # Keycloak: no session, and the refresh token is dead.
    assert keycloak.sessions_of(uid) == []
    r = requests.post(keycloak.token_url, data={
        "grant_type": "refresh_token", "refresh_token": refresh_token,
        "client_id": "admin-console", "client_secret": APP_SECRETS["admin-console"]}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"

    # Both apps acknowledged the worker's logout token; their sessions are gone.
    notes = wait_for(lambda: (n := stack.notifications(sid)) and
                     all(x.state == "delivered" for x in n) and n, 10, "both deliveries")
    assert sorted(n.client_id for n in notes) == ["admin-console", "patient-portal"]
    assert all(n.last_status == 200 for n in notes)
    for client_id in APP_SECRETS:
        assert stack.rp_store(client_id).count_for_sid(sid) == 0
        r = browser.go("GET", stack.url(client_id, "/whoami"))
        assert Browser.is_login_page(r), f"{client_id} still served the dead session"

    # Exactly one termination record for this session, and the chain is intact.
    records = stack.audit()
    assert sum(1 for x in records if x.get("event") == "session.terminated"
               and x["identity"]["sid"] == sid) == 1
    from oidc_idle.audit import read_jsonl, verify
    assert verify(records) == []
    assert read_jsonl(stack.run_dir / "audit.jsonl") == records


def test_app_down_at_the_deadline_gets_its_logout_when_it_returns(make_stack, keycloak):
    stack = make_stack(idle_s=5, warn_s=2)
    user, pw, _ = keycloak.new_user()
    browser, sid = stack.login_both(user, pw)
    wait_for(lambda: (s := stack.session(sid)) and len(s.clients) == 2, 10, "both apps known")
    stack.apps["admin-console"].stop()

    rec = wait_for(lambda: stack.terminated_record(sid), 20, "the automatic logoff")
    failed = wait_for(
        lambda: [n for n in stack.notifications(sid)
                 if n.client_id == "admin-console" and n.attempts >= 1 and n.last_error],
        10, "a failed delivery attempt to the stopped app")
    assert failed[0].state == "pending"
    # The app stays down for 10 s after the deadline (the scenario), then returns.
    time.sleep(max(0.0, rec["deadline_ms"] / 1000 + 10 - time.time()))
    assert stack.rp_store("admin-console").count_for_sid(sid) == 1, "nothing ended it yet"
    stack.start_app("admin-console")
    note = wait_for(lambda: [n for n in stack.notifications(sid)
                             if n.client_id == "admin-console" and n.state == "delivered"],
                    15, "delivery to the returned app")[0]
    assert note.attempts >= 2 and note.last_status == 200
    assert stack.rp_store("admin-console").count_for_sid(sid) == 0
    r = browser.go("GET", stack.url("admin-console", "/whoami"))
    assert Browser.is_login_page(r)


def test_a_logout_at_keycloak_itself_reaches_the_worker_and_every_app(make_stack, keycloak):
    stack = make_stack(idle_s=120, warn_s=10)
    user, pw, uid = keycloak.new_user()
    browser, sid = stack.login_both(user, pw)
    wait_for(lambda: (s := stack.session(sid)) and len(s.clients) == 2, 10, "both apps known")
    id_token = stack.rp_store("patient-portal").load(
        browser.cookies.get("oidc_idle_patient-portal"))["oidc_idle_tokens"]["id_token"]
    # The user signs out at Keycloak directly (RP-initiated logout, not via the plugin).
    r = browser.go("GET", f"{keycloak.issuer}/protocol/openid-connect/logout",
                   params={"id_token_hint": id_token})
    assert r.status_code == 200
    assert keycloak.sessions_of(uid) == []
    rec = wait_for(lambda: stack.terminated_record(sid), 15, "the worker to learn of it")
    assert rec["type"] == "user_logout" and rec["reason"] == "keycloak_logout"
    assert rec["outcome"]["keycloak"]["result"] == "already_gone"
    notes = wait_for(lambda: (n := stack.notifications(sid)) and
                     all(x.state == "delivered" for x in n) and n, 10, "deliveries")
    assert sorted(n.client_id for n in notes) == ["admin-console", "patient-portal"]
    for client_id in APP_SECRETS:
        assert Browser.is_login_page(browser.go("GET", stack.url(client_id, "/whoami")))
