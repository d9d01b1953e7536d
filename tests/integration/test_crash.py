"""The worker killed with SIGKILL: nothing owed is lost, nothing is done twice.
Real worker processes, real SQLite, real Keycloak."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from httpbrowser import Browser
from oidc_idle.audit import read_jsonl, verify
from oidc_idle.demo.stack import start_worker
from stack import free_port, wait_for

pytestmark = pytest.mark.keycloak


def _portal_sessions(stack, keycloak, n):
    """``n`` new users, each logged in to the portal: [(user id, sid)]."""
    users = []
    for _ in range(n):
        name, pw, uid = keycloak.new_user()
        b = Browser()
        r = b.login_form(b.go("GET", stack.url("patient-portal", "/whoami")), name, pw)
        users.append((uid, r.json()["sid"]))
    return users


def test_sigkill_mid_sweep_loses_nothing_and_duplicates_nothing(make_stack, keycloak):
    stack = make_stack(idle_s=5, warn_s=1, OIDC_IDLE_TERMINATE_PARALLELISM="1",
                       OIDC_IDLE_LEASE="3s")
    users = _portal_sessions(stack, keycloak, 16)
    sids = {sid for _, sid in users}
    wait_for(lambda: all(stack.session(s) for s in sids), 10, "the worker to track all")
    # Pause the worker until every deadline has passed, so one sweep claims them all.
    os.kill(stack.worker.popen.pid, signal.SIGSTOP)
    try:
        latest = max(stack.session(s).deadline for s in sids)
        wait_for(lambda: time.time() * 1000 > latest + 200, 30, "every deadline to pass")
    finally:
        os.kill(stack.worker.popen.pid, signal.SIGCONT)
    wait_for(lambda: stack.audit("session.terminated"), 20, "the first termination")
    stack.kill_worker()  # SIGKILL, mid-sweep
    done = {r["identity"]["sid"] for r in stack.audit("session.terminated")}
    states = {s: stack.session(s).state for s in sids}
    assert len(done) < len(sids), "the sweep had already finished: not a mid-sweep kill"
    assert "terminating" in states.values(), states

    stack.restart_worker()
    wait_for(lambda: len(stack.audit("session.terminated")) >= len(sids), 60,
             "every session terminated")
    records = stack.audit("session.terminated")
    assert sorted(r["identity"]["sid"] for r in records) == sorted(sids), "one record each"
    for uid, _ in users:
        assert keycloak.sessions_of(uid) == []
    for r in records:
        assert r["terminated_at_ms"] >= r["deadline_ms"]
    everything = stack.audit()
    assert verify(everything) == []
    assert read_jsonl(stack.run_dir / "audit.jsonl") == everything
    cli = subprocess.run([sys.executable, "-m", "oidc_idle", "audit", "verify", "--db",
                          str(stack.run_dir / "worker.db")], capture_output=True, text=True)
    assert cli.returncode == 0 and "chain intact" in cli.stdout


def test_sigkill_with_deliveries_pending_delivers_them_after_restart(make_stack, keycloak):
    stack = make_stack(idle_s=5, warn_s=1)
    user, pw, _ = keycloak.new_user()
    browser, sid = stack.login_both(user, pw)
    wait_for(lambda: (s := stack.session(sid)) and len(s.clients) == 2, 10, "both apps known")
    stack.apps["admin-console"].stop()
    wait_for(lambda: stack.terminated_record(sid), 20, "the automatic logoff")

    def by_client():
        return {n.client_id: n for n in stack.notifications(sid)}

    wait_for(lambda: by_client()["patient-portal"].state == "delivered"
             and by_client()["admin-console"].attempts >= 1, 15, "one delivered, one failing")
    acked = by_client()["patient-portal"]
    stack.kill_worker()
    assert by_client()["admin-console"].state == "pending"

    stack.restart_worker()
    stack.start_app("admin-console")
    wait_for(lambda: by_client()["admin-console"].state == "delivered", 20,
             "the pending delivery after restart")
    assert stack.rp_store("admin-console").count_for_sid(sid) == 0
    assert by_client()["patient-portal"] == acked, "an acknowledged logout was sent again"
    delivered = stack.audit("logout.delivered")
    assert sorted(r["identity"]["client_id"] for r in delivered) == ["admin-console",
                                                                    "patient-portal"]
    assert Browser.is_login_page(browser.go("GET", stack.url("admin-console", "/whoami")))


def test_two_replicas_sharing_the_store_terminate_each_session_once(make_stack, keycloak):
    stack = make_stack(idle_s=5, warn_s=1, OIDC_IDLE_TERMINATE_PARALLELISM="2")
    second_env = {**stack.worker.env, "OIDC_IDLE_INSTANCE": "worker-2",
                  "OIDC_IDLE_BIND": f"127.0.0.1:{free_port()}"}
    second = start_worker(second_env, stack.run_dir / "worker-2.log")
    try:
        users = _portal_sessions(stack, keycloak, 12)
        sids = {sid for _, sid in users}
        wait_for(lambda: len(stack.audit("session.terminated")) >= len(sids), 40,
                 "every termination")
        records = stack.audit("session.terminated")
        assert sorted(r["identity"]["sid"] for r in records) == sorted(sids), "once each"
        for uid, _ in users:
            assert keycloak.sessions_of(uid) == []
        everything = stack.audit()
        deliveries = [n for s in sids for n in stack.notifications(s)]
        assert verify(everything) == []
        assert read_jsonl(stack.run_dir / "audit.jsonl") == everything, "no line doubled"
        assert len(deliveries) == len(sids), "one logout owed per session and app"
        by = {r["where"]["worker"] for r in records}
        assert by <= {"worker-1", "worker-2"}
    finally:
        second.stop()
