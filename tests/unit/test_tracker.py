"""Tracker rules with a fake clock and fake Keycloak (DESIGN.md, Tracker)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oidc_idle.clock import iso_ms
from oidc_idle.errors import InvalidInput
from oidc_idle.policy import Policy
from oidc_idle.tracker import parse_batch
from rig import T0, Rig


def test_unknown_sid_is_verified_once_with_keycloak(rig):
    rig.login()
    r = rig.report("app-a")
    assert r["state"] == "active" and rig.kc.lookups == 1
    rig.clock.advance(1000)
    rig.report("app-a")
    assert rig.kc.lookups == 1, "a known member is not re-checked"
    rig.report("app-b")
    assert rig.kc.lookups == 2, "a new client of the session is checked once"
    assert rig.store.get_session("sid-1").clients == ("app-a", "app-b")


def test_client_not_in_the_session_cannot_report_or_read(rig):
    rig.login("sid-1", "user-1", "app-a")
    rig.report("app-a")
    before = rig.store.get_session("sid-1")
    r = rig.report("app-c")
    assert r["error"] == "unknown_session"
    assert rig.store.get_session("sid-1") == before
    with pytest.raises(Exception) as err:
        rig.worker.status("app-c", "sid-1")
    assert getattr(err.value, "status", None) == 404


def test_wrong_sub_for_a_sid_is_rejected(rig):
    rig.login("sid-1", "user-1", "app-a")
    assert rig.report("app-a", sub="someone-else")["error"] == "unknown_session"
    assert rig.store.get_session("sid-1") is None


def test_only_counted_kinds_move_the_clock(rig, policy):
    rig.login()
    rig.report("app-a")
    start = rig.store.get_session("sid-1").last_activity_at
    for kind in ("poll", "heartbeat", "token_refresh"):
        rig.clock.advance(1000)
        r = rig.report("app-a", kind=kind)
        assert r["counted"] is False
    assert rig.store.get_session("sid-1").last_activity_at == start
    rig.clock.advance(1000)
    assert rig.report("app-a", kind="keypress")["counted"] is True
    s = rig.store.get_session("sid-1")
    assert s.last_activity_at == rig.clock.now_ms()
    assert s.deadline == s.last_activity_at + policy.idle_timeout_ms


def test_late_report_never_moves_the_clock_back(rig):
    rig.login()
    rig.clock.advance(10_000)
    rig.report("app-a")
    now = rig.clock.now_ms()
    rig.report("app-a", at=iso_ms(now - 5000))
    assert rig.store.get_session("sid-1").last_activity_at == now


def test_future_timestamps_within_skew_are_clamped_beyond_are_rejected(rig):
    rig.login()
    now = rig.clock.now_ms()
    rig.report("app-a", at=iso_ms(now + 4000))
    assert rig.store.get_session("sid-1").last_activity_at == now, "clamped to now"
    with pytest.raises(InvalidInput) as err:
        rig.report("app-a", at=iso_ms(now + 60_000))
    assert err.value.error == "future_timestamp"


def test_activity_after_the_deadline_does_not_revive(rig, policy):
    rig.login()
    rig.report("app-a")
    deadline = rig.store.get_session("sid-1").deadline
    rig.clock.set(deadline)
    r = rig.report("app-a")
    assert r["state"] == "terminating" and r["alive"] is False
    assert rig.store.get_session("sid-1").deadline == deadline
    # Even a report stamped before the deadline, arriving after it.
    r = rig.report("app-a", at=iso_ms(deadline - 1000))
    assert rig.store.get_session("sid-1").deadline == deadline


@pytest.mark.parametrize("payload, error", [
    ([], "invalid_request"), ({"events": "x"}, "invalid_request"),
    ({"events": []}, "invalid_request"), ({"events": [1]}, "invalid_request"),
    ({"events": [{"sid": "s", "sub": "u", "kind": "dance"}]}, "unknown_kind"),
    ({"events": [{"sid": "", "sub": "u", "kind": "click"}]}, "invalid_request"),
    ({"events": [{"sid": "s", "sub": 5, "kind": "click"}]}, "invalid_request"),
    ({"events": [{"sid": "s", "sub": "u", "kind": "click", "at": 123}]}, "invalid_request"),
    ({"events": [{"sid": "s", "sub": "u", "kind": "click", "at": "2026-01-01T00:00:00"}]},
     "invalid_request"),
    ({"events": [{"sid": "s" * 300, "sub": "u", "kind": "click"}]}, "invalid_request"),
    ({"events": [{"sid": "s", "sub": "u", "kind": "click"}] * 1001}, "invalid_request"),
])
def test_bad_batches_are_rejected_whole(payload, error):
    with pytest.raises(InvalidInput) as err:
        parse_batch(payload, T0, 5000)
    assert err.value.error == error and err.value.description


# -- properties ---------------------------------------------------------------

ops = st.lists(st.one_of(
    st.tuples(st.just("advance"), st.integers(0, 40_000)),
    st.tuples(st.just("report"), st.sampled_from(["app-a", "app-b"]),
              st.sampled_from(["click", "keypress", "poll", "token_refresh"]),
              st.integers(-30_000, 8_000)),
    st.tuples(st.just("sweep")),
    st.tuples(st.just("policy"), st.sampled_from([10_000, 30_000, 50_000])),
), max_size=40)


@settings(max_examples=60, deadline=None)
@given(ops=ops)
def test_no_session_outlives_its_deadline_or_revives_or_dies_twice(tmp_path_factory, ops):
    """Random interleavings of activity (late, out of order, skewed), policy
    changes and sweeps."""
    policy = Policy(idle_timeout_ms=30_000, warning_lead_ms=5_000, absolute_lifetime_ms=120_000)
    rig = Rig(tmp_path_factory.mktemp("prop"), policy)
    try:
        rig.login()
        rig.report("app-a")
        last_seen = rig.store.get_session("sid-1").last_activity_at
        deadline_seen = rig.store.get_session("sid-1").deadline
        for op in ops:
            if op[0] == "advance":
                rig.clock.advance(op[1])
            elif op[0] == "policy":
                rig.policy = Policy(idle_timeout_ms=op[1], warning_lead_ms=5_000,
                                    absolute_lifetime_ms=120_000)
                rig.worker.apply_policy(rig.policy)
            elif op[0] == "report":
                _, client, kind, offset = op
                now = rig.clock.now_ms()
                try:
                    rig.report(client, kind=kind, at=iso_ms(now + offset))
                except Exception as exc:  # beyond the skew: rejected, nothing changes
                    assert offset > 5000, exc
            else:
                rig.enforcer.sweep()
            s = rig.store.get_session("sid-1")
            now = rig.clock.now_ms()
            assert s.last_activity_at >= last_seen, "the clock moved back"
            if deadline_seen <= now:
                assert s.deadline == deadline_seen, "a dead session was revived"
            assert s.deadline <= s.started_at + rig.policy.absolute_lifetime_ms
            if s.state == "active" and s.deadline > now:
                assert s.deadline <= s.last_activity_at + rig.policy.idle_timeout_ms
            if s.state == "active" and s.deadline <= now:
                # Past its deadline and not yet swept: the API already calls it dead.
                assert rig.worker.status("app-a", "sid-1")["alive"] is False
            last_seen, deadline_seen = s.last_activity_at, s.deadline
        rig.clock.advance(200_000)
        rig.enforcer.sweep()
        rig.enforcer.sweep()
        terminations = [e for e in rig.store.audit_entries()
                        if e.record["event"] == "session.terminated"]
        assert len(terminations) == 1
        rec = terminations[0].record
        assert rec["deadline_ms"] == rig.store.get_session("sid-1").deadline
        assert rec["terminated_at_ms"] >= rec["deadline_ms"]
        assert rig.kc.deleted == ["sid-1"]
    finally:
        rig.close()


def test_a_policy_change_applies_to_live_sessions_at_the_next_sweep(rig):
    from oidc_idle.worker.service import PolicySource

    rig.kc.attributes = {"oidcIdle.idleTimeout": "60", "oidcIdle.warningLead": "10",
                         "oidcIdle.absoluteLifetime": "600"}
    source = PolicySource(rig.kc, on_change=rig.worker.apply_policy)
    rig.worker.policy = source
    rig.enforcer._policy = source
    rig.login("idle", "u1", "app-a")
    rig.login("busy", "u2", "app-a")
    rig.report("app-a", sid="idle", sub="u1")
    rig.report("app-a", sid="busy", sub="u2")
    rig.clock.advance(40_000)
    rig.report("app-a", sid="busy", sub="u2")
    # The realm's idle timeout drops from 60 s to 30 s.
    rig.kc.attributes["oidcIdle.idleTimeout"] = "30"
    source.refresh()
    assert source().idle_timeout_ms == 30_000
    assert rig.enforcer.sweep() == 1, "the session idle for 40 s dies at once"
    assert rig.store.get_session("idle").state == "terminated"
    busy = rig.store.get_session("busy")
    assert busy.state == "active" and busy.deadline == busy.last_activity_at + 30_000
    # A bad update is refused and the last good policy stays.
    rig.kc.attributes["oidcIdle.warningLead"] = "45"
    source.refresh()
    assert source().idle_timeout_ms == 30_000 and source().warning_lead_ms == 10_000


def test_the_worker_warns_when_keycloak_would_end_sessions_first(rig, caplog):
    from oidc_idle.worker.service import PolicySource

    rig.kc.attributes = {"oidcIdle.idleTimeout": "900", "ssoSessionIdleTimeout": 600}
    with caplog.at_level("WARNING"):
        PolicySource(rig.kc)
    assert "SSO Session Idle (600 s) is not above the policy's idle timeout (900 s)" in \
        caplog.text


def test_a_stricter_app_ends_on_its_own_clock_while_sso_goes_on(rig):
    from oidc_idle.keycloak import KcClient

    # app-b has a 20 s idle timeout in a 60 s realm.
    rig.kc.clients["app-b"] = KcClient("app-b", "http://rp/app-b/bcl", "sa-app-b", 20_000)
    rig.login()
    rig.report("app-a")
    r = rig.report("app-b")
    assert r["app_state"] == "active"
    assert r["deadline"] == iso_ms(rig.clock.now_ms() + 20_000), "app-b sees its own deadline"
    for _ in range(3):  # the user works in app-a only
        rig.clock.advance(10_000)
        rig.report("app-a")
    assert rig.enforcer.sweep() == 0
    ended = [e.record for e in rig.store.audit_entries()]
    assert len(ended) == 1 and ended[0]["type"] == "app_idle_timeout"
    rec = ended[0]
    assert rec["identity"]["clients"] == ["app-b"]
    assert rec["source"]["policy"]["client"] == "app-b"
    assert rec["source"]["policy"]["client_idle_timeout_s"] == 20
    assert rec["deadline_ms"] == T0 + 20_000
    assert [n.client_id for n in rig.store.notifications_for("sid-1")] == ["app-b"]
    assert rig.kc.deleted == [], "the SSO session goes on"
    assert rig.worker.status("app-a", "sid-1")["alive"] is True
    b = rig.worker.status("app-b", "sid-1")
    assert b["alive"] is False and b["app_state"] == "ended" and b["state"] == "active"
    # Activity in app-b without a new authentication does not bring it back...
    assert rig.report("app-b")["alive"] is False
    # ...a new authentication there (after the end) does.
    rig.clock.advance(1000)
    r = rig.worker.ingest("app-b", {"events": [{
        "sid": "sid-1", "sub": "user-1", "kind": "navigation",
        "auth_time": iso_ms(rig.clock.now_ms())}]})[0]
    assert r["alive"] is True and r["app_state"] == "active"
    # And the whole session still ends on the realm's clock, for everyone.
    rig.clock.advance(60_000)
    assert rig.enforcer.sweep() == 1
    assert rig.kc.deleted == ["sid-1"]


def test_a_per_app_timeout_may_only_be_stricter(rig):
    from oidc_idle.keycloak import KcClient

    rig.kc.clients["app-b"] = KcClient("app-b", "http://rp/app-b/bcl", "sa-app-b", 120_000)
    rig.login()
    r = rig.report("app-b")
    assert "app_state" not in r and r["idle_timeout_s"] == 60
