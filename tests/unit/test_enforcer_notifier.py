"""Enforcer and notifier with a fake clock, fake Keycloak and fake HTTP."""

from __future__ import annotations

import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from oidc_idle import audit
from oidc_idle.logout_token import BCL_EVENT


def _due(rig):
    rig.login()
    rig.report("app-a")
    rig.report("app-b")
    deadline = rig.store.get_session("sid-1").deadline
    rig.clock.set(deadline + 250)
    return deadline


def _drain(rig, rounds=20):
    """Run delivery rounds, each until its attempts have finished (real threads)."""
    for _ in range(rounds):
        if not rig.notifier.deliver_due():
            return
        assert rig.notifier.wait_idle(10)


def test_due_session_is_terminated_audited_and_notified_once(rig, policy):
    deadline = _due(rig)
    assert rig.enforcer.sweep() == 1
    assert rig.enforcer.sweep() == 0, "exactly once"
    s = rig.store.get_session("sid-1")
    assert s.state == "terminated" and s.terminated_at == deadline + 250
    assert rig.kc.deleted == ["sid-1"]
    recs = [e.record for e in rig.store.audit_entries()]
    assert len(recs) == 1
    rec = recs[0]
    assert rec["deadline_ms"] == deadline and rec["lag_ms"] == 250
    assert rec["type"] == "automatic_logoff"
    assert rec["where"] == {"realm": "demo", "issuer": "http://worker", "worker": "w1"}
    assert rec["outcome"]["notify"] == ["app-a", "app-b"]
    _drain(rig)
    assert sorted(p["url"] for p in rig.http.posts) == ["http://rp/app-a/bcl",
                                                        "http://rp/app-b/bcl"]
    assert all(n.state == "delivered" for n in rig.store.notifications_for("sid-1"))
    assert audit.verify([e.record for e in rig.store.audit_entries()]) == []


def test_logout_token_is_fresh_spec_shaped_and_signed_by_the_published_key(rig):
    _due(rig)
    rig.enforcer.sweep()
    _drain(rig)
    post = rig.http.posts[0]
    assert post["allow_redirects"] is False
    assert post["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    token = post["data"]["logout_token"]
    keys = KeySet.import_key_set(rig.keys.jwks())
    decoded = jwt.decode(token, keys, algorithms=["RS256"])
    assert decoded.header["typ"] == "logout+jwt" and decoded.header["kid"]
    c = decoded.claims
    assert c["iss"] == "http://worker" and c["aud"] in ("app-a", "app-b")
    assert c["sid"] == "sid-1" and c["sub"] == "user-1"
    assert c["events"] == {BCL_EVENT: {}}
    assert 0 < c["exp"] - c["iat"] <= 120
    assert "nonce" not in c
    jtis = {jwt.decode(p["data"]["logout_token"], keys).claims["jti"] for p in rig.http.posts}
    assert len(jtis) == len(rig.http.posts)


def test_keycloak_down_keeps_terminating_reports_dead_and_retries(rig):
    deadline = _due(rig)
    rig.kc.down = True
    assert rig.enforcer.sweep() == 0
    s = rig.store.get_session("sid-1")
    assert s.state == "terminating"
    assert rig.worker.status("app-a", "sid-1")["alive"] is False, "fail closed"
    assert rig.report("app-a")["alive"] is False
    assert list(rig.store.audit_entries()) == []
    rig.kc.down = False
    assert rig.enforcer.sweep() == 0, "not before the backoff"
    rig.clock.advance(1000)
    assert rig.enforcer.sweep() == 1
    rec = next(rig.store.audit_entries()).record
    assert rec["deadline_ms"] == deadline and rec["outcome"]["keycloak"]["attempts"] == 2


def test_crashed_sweep_is_recovered_after_the_lease(rig):
    _due(rig)
    claimed = rig.store.claim_due(rig.clock.now_ms(), "dead-worker", 30_000, 10)
    assert [c.sid for c in claimed] == ["sid-1"]  # ...and that worker dies here
    assert rig.enforcer.sweep() == 0, "leased to someone else"
    rig.clock.advance(30_000)
    assert rig.enforcer.sweep() == 1
    assert rig.store.finish_termination("sid-1", "dead-worker", rig.clock.now_ms(), {}, [],
                                        1000) is None, "the old lease holder cannot finish"
    assert len(list(rig.store.audit_entries())) == 1


def test_failed_deliveries_back_off_and_succeed_later(rig):
    _due(rig)
    rig.http.answers["http://rp/app-b/bcl"] = [503, requests.ConnectionError("down"), 204]
    rig.enforcer.sweep()
    _drain(rig)
    b = next(n for n in rig.store.notifications_for("sid-1") if n.client_id == "app-b")
    assert b.state == "pending" and b.attempts == 1 and b.last_status == 503
    a = next(n for n in rig.store.notifications_for("sid-1") if n.client_id == "app-a")
    assert a.state == "delivered", "a failing app does not hold up the others"
    for _ in range(3):
        rig.clock.advance(5000)
        _drain(rig, rounds=3)
    b = next(n for n in rig.store.notifications_for("sid-1") if n.client_id == "app-b")
    assert b.state == "delivered" and b.attempts == 3
    delivered = [e.record for e in rig.store.audit_entries()
                 if e.record["event"] == "logout.delivered"]
    assert {d["identity"]["client_id"]: d["outcome"]["attempts"] for d in delivered} == \
        {"app-a": 1, "app-b": 3}


def test_rejected_token_is_dead_lettered_after_a_few_tries_with_the_answer_kept(rig):
    _due(rig)
    rig.http.answers["http://rp/app-b/bcl"] = [400]
    rig.enforcer.sweep()
    for _ in range(5):
        _drain(rig, rounds=2)
        rig.clock.advance(10_000)
    b = next(n for n in rig.store.notifications_for("sid-1") if n.client_id == "app-b")
    assert b.state == "dead" and b.attempts == 3 and b.last_status == 400
    dead = [e.record for e in rig.store.audit_entries()
            if e.record["event"] == "logout.dead_lettered"]
    assert len(dead) == 1 and "HTTP 400" in dead[0]["outcome"]["error"]


def test_ttl_dead_letters_an_app_that_never_answers(rig):
    _due(rig)
    rig.http.answers["http://rp/app-b/bcl"] = [requests.Timeout("slow")]
    rig.enforcer.sweep()
    for _ in range(40):
        _drain(rig, rounds=1)
        rig.clock.advance(120_000)
    b = next(n for n in rig.store.notifications_for("sid-1") if n.client_id == "app-b")
    assert b.state == "dead" and "time-to-live" in (b.last_error or "")


def test_user_logout_terminates_at_once_with_its_reason(rig):
    rig.login()
    rig.report("app-a")
    rig.clock.advance(1000)
    view = rig.worker.logout("app-a", "sid-1")
    assert view["alive"] is False
    assert rig.enforcer.sweep() == 1
    rec = next(rig.store.audit_entries()).record
    assert rec["type"] == "user_logout" and rec["deadline_ms"] == rig.clock.now_ms()


def test_absolute_lifetime_ends_an_active_session(rig, policy):
    rig.login()
    for _ in range(policy.absolute_lifetime_ms // 30_000 + 2):
        rig.clock.advance(30_000)
        rig.report("app-a")
        rig.enforcer.sweep()
    rec = next(rig.store.audit_entries()).record
    s = rig.store.get_session("sid-1")
    assert rec["type"] == "absolute_timeout"
    assert rec["deadline_ms"] == s.started_at + policy.absolute_lifetime_ms


def test_jsonl_sink_catches_up_after_a_crash(rig, tmp_path):
    _due(rig)
    rig.enforcer.sweep()
    path = tmp_path / "audit.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("")  # the file lost its last write
    from oidc_idle.audit import JsonlSink
    assert JsonlSink(rig.store, path).sync() == len(lines)
    assert path.read_text().splitlines() == lines


def test_metrics_count_terminations_deliveries_and_outbox_state(rig):
    from oidc_idle.metrics import Metrics

    m = Metrics()
    rig.enforcer._metrics = m
    rig.notifier._metrics = m
    rig.worker.metrics = m
    _due(rig)
    rig.http.answers["http://rp/app-b/bcl"] = [500]
    rig.enforcer.sweep()
    _drain(rig, rounds=3)
    text = rig.worker.render_metrics()
    assert 'oidc_idle_terminations_total{reason="idle_timeout"} 1' in text
    assert 'oidc_idle_deliveries_total{client="app-a",outcome="delivered"} 1' in text
    assert 'oidc_idle_deliveries_total{client="app-b",outcome="retried"} 1' in text
    assert 'oidc_idle_outbox{client="app-b",state="pending"} 1' in text
    assert 'oidc_idle_outbox{client="app-a",state="delivered"} 1' in text
    assert 'oidc_idle_sessions{state="terminated"} 1' in text
    assert 'oidc_idle_delivery_latency_seconds_count{client="app-a"} 1' in text
    assert "# TYPE oidc_idle_delivery_latency_seconds histogram" in text
    assert 'oidc_idle_activity_events_total{counted="true"}' in text


def test_jsonl_sink_repairs_a_torn_last_line(rig, tmp_path):
    import json

    from oidc_idle.audit import JsonlSink

    _due(rig)
    rig.enforcer.sweep()
    path = tmp_path / "audit.jsonl"
    path.write_text(path.read_text() + '{"seq": 99, "torn')  # a crash cut a line short
    rig.store.append_audit({"event": "x"})
    JsonlSink(rig.store, path).sync()
    lines = path.read_text().splitlines()
    assert lines[-2] == '{"seq": 99, "torn', "the torn line stays apart"
    assert json.loads(lines[-1])["event"] == "x", "the next record is a line of its own"


def test_admin_ends_a_session_from_the_command_line(rig, tmp_path):
    import os
    import subprocess
    import sys

    rig.login()
    rig.report("app-a")
    db = str(tmp_path / "w.db")
    r = subprocess.run([sys.executable, "-m", "oidc_idle", "session", "end", "sid-1", "--db", db],
                       capture_output=True, text=True, env={**os.environ})
    assert r.returncode == 0 and "next sweep" in r.stdout
    assert rig.enforcer.sweep() == 1
    rec = next(rig.store.audit_entries()).record
    assert rec["type"] == "admin_logout" and rec["identity"]["sid"] == "sid-1"
    missing = subprocess.run([sys.executable, "-m", "oidc_idle", "session", "end", "nope",
                              "--db", db], capture_output=True, text=True)
    assert missing.returncode == 2 and "no session nope" in missing.stderr


def test_a_bad_realm_policy_stops_the_worker_at_start_naming_the_attribute(tmp_path):
    import pytest

    from fakes import FakeKeycloak
    from oidc_idle.config import WorkerSettings
    from oidc_idle.errors import PolicyError
    from oidc_idle.worker import build

    kc = FakeKeycloak(attributes={"oidcIdle.idleTimeout": "600", "oidcIdle.absoluteLifetime": "60"})
    settings = WorkerSettings.from_env({
        "OIDC_IDLE_KEYCLOAK_URL": "http://127.0.0.1:1", "OIDC_IDLE_REALM": "demo",
        "OIDC_IDLE_CLIENT_ID": "w", "OIDC_IDLE_CLIENT_SECRET": "s",
        "OIDC_IDLE_DB": str(tmp_path / "x.db"), "OIDC_IDLE_AUDIT_LOG": str(tmp_path / "a.jsonl")})
    with pytest.raises(PolicyError, match=r"oidcIdle\.absoluteLifetime"):
        build(settings, keycloak=kc)


def test_a_logout_at_keycloak_itself_is_audited_and_told_to_every_app(rig):
    rig.login()
    rig.report("app-a")
    rig.report("app-b")
    rig.clock.advance(5000)
    rig.kc.sessions.pop("sid-1")  # the user logged out at Keycloak's account console
    rig.kc.logouts.append((rig.clock.now_ms() - 1000, "sid-1"))
    assert rig.worker.watch_logouts() == 1
    assert rig.worker.watch_logouts() == 0, "each event once"
    assert rig.enforcer.sweep() == 1
    rec = next(rig.store.audit_entries()).record
    assert rec["type"] == "user_logout" and rec["reason"] == "keycloak_logout"
    assert rec["outcome"]["keycloak"]["result"] == "already_gone"
    assert sorted(n.client_id for n in rig.store.notifications_for("sid-1")) == \
        ["app-a", "app-b"]


def test_without_the_events_role_the_worker_warns_and_goes_on(rig, caplog):
    from oidc_idle.errors import KeycloakError

    def forbidden(since):
        raise KeycloakError("lacks view-events", keycloak_status=403)

    rig.kc.logout_events = forbidden
    with caplog.at_level("WARNING"):
        assert rig.worker.watch_logouts() == 0
        assert rig.worker.watch_logouts() == 0
    assert caplog.text.count("cannot read Keycloak's logout events") == 1


def test_a_store_failure_while_claiming_does_not_use_up_delivery_slots(rig, monkeypatch):
    import pytest

    from oidc_idle.errors import StoreError

    _due(rig)
    rig.enforcer.sweep()
    real = rig.store.claim_notifications

    def broken(*a, **k):
        raise StoreError("database is locked")

    monkeypatch.setattr(rig.store, "claim_notifications", broken)
    for _ in range(3):  # more failures than there are slots
        with pytest.raises(StoreError):
            rig.notifier.deliver_due()
    monkeypatch.setattr(rig.store, "claim_notifications", real)
    assert rig.notifier.deliver_due() == 2, "every slot is free again"
    assert rig.notifier.wait_idle(10)
