"""The relying-party plugin with Flask's test client and fakes (no network)."""

from __future__ import annotations

import socket

import pytest
from flask import Flask, jsonify, session
from joserfc import jwt
from joserfc.jwk import RSAKey
from test_logout_token import StaticKeys

from oidc_idle.logout_token import BCL_EVENT, TrustedIssuer
from oidc_idle.rp import OidcIdle
from oidc_idle.rp.store import Deadline

ISSUER = "http://idp.test/realms/demo"
WORKER = "http://worker.test"
NOW_MS = 1_800_000_000_000


class FakeClock:
    def __init__(self):
        self.now = NOW_MS

    def now_ms(self):
        return self.now


class Recorder:
    def __init__(self):
        self.events = []

    def report(self, sid, sub, kind, at=None, auth_time=None):
        self.events.append((sid, sub, kind))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rp(tmp_path):
    app = Flask("t")
    port = closed_port()
    app.config.update(OIDC_IDLE_ISSUER=ISSUER, OIDC_IDLE_CLIENT_ID="rp",
                      OIDC_IDLE_CLIENT_SECRET="s", OIDC_IDLE_WORKER_URL=f"http://127.0.0.1:{port}",
                      OIDC_IDLE_WORKER_ISSUER=WORKER, OIDC_IDLE_SESSION_DB=str(tmp_path / "s.db"),
                      OIDC_IDLE_PASSIVE_ENDPOINTS=["poll"], OIDC_IDLE_PUBLIC_ENDPOINTS=["health"],
                      OIDC_IDLE_WORKER_TIMEOUT="300ms")
    clock = FakeClock()
    OidcIdle(app, clock=clock)
    st = app.extensions["oidc_idle"]
    st.reporter.stop()
    st.reporter = Recorder()
    realm_key = RSAKey.generate_key(2048, parameters={"kid": "realm"})
    worker_key = RSAKey.generate_key(2048, parameters={"kid": "worker"})
    st.trusted = {ISSUER: TrustedIssuer(ISSUER, StaticKeys(realm_key)),
                  WORKER: TrustedIssuer(WORKER, StaticKeys(worker_key), speaks_for=ISSUER)}

    @app.get("/")
    def index():
        return jsonify(session["oidc_idle"])

    @app.get("/poll")
    def poll():
        return "ok"

    @app.get("/health")
    def health():
        return "ok"

    class RP:
        pass

    r = RP()
    r.app, r.st, r.clock, r.realm_key, r.worker_key = app, st, clock, realm_key, worker_key
    return r


def login(rp, sid="s1", sub="u1"):
    client = rp.app.test_client()
    with client.session_transaction() as sess:
        sess["oidc_idle"] = {"sid": sid, "sub": sub, "iss": ISSUER, "name": sub,
                             "login_at": rp.clock.now}
    rp.st.store.set_deadline(Deadline(sid, "active", rp.clock.now + 60_000,
                                      rp.clock.now + 50_000, rp.clock.now))
    return client


def logout_token(key, iss, **over):
    c = {"iss": iss, "aud": "rp", "iat": NOW_MS // 1000, "exp": NOW_MS // 1000 + 60,
         "jti": over.pop("jti", "j-" + str(id(over))), "sid": "s1", "sub": "u1",
         "events": {BCL_EVENT: {}}}
    c.update(over)
    c = {k: v for k, v in c.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "logout+jwt"}, c, key)


def test_unauthenticated_requests_go_to_login_public_ones_do_not(rp):
    c = rp.app.test_client()
    r = c.get("/")
    assert r.status_code == 302 and r.headers["Location"].startswith("/oidc-idle/login")
    assert c.get("/health").status_code == 200


def test_cookie_holds_only_an_opaque_id_and_the_store_holds_the_session(rp):
    c = login(rp)
    r = c.get("/")
    assert r.status_code == 200 and r.json["sid"] == "s1"
    cookie = c.get_cookie("oidc_idle_rp")
    assert cookie is not None and "s1" not in cookie.value and cookie.http_only
    assert rp.st.store.count_for_sid("s1") == 1


def test_user_requests_count_passive_ones_do_not(rp):
    c = login(rp)
    c.get("/")
    c.get("/poll")
    c.get("/", headers={"X-OIDC-Idle-Passive": "1"})
    c.get("/oidc-idle/status")
    assert [e[2] for e in rp.st.reporter.events] == ["request", "poll", "poll", "poll"]


@pytest.mark.parametrize("issuer_attr", ["realm", "worker"])
def test_backchannel_logout_by_sid_ends_that_session(rp, issuer_attr):
    c = login(rp)
    other = login(rp, sid="s2", sub="u1")
    key, iss = (rp.realm_key, ISSUER) if issuer_attr == "realm" else (rp.worker_key, WORKER)
    r = rp.app.test_client().post("/oidc-idle/backchannel-logout",
                                  data={"logout_token": logout_token(key, iss)})
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert c.get("/").status_code == 302, "the killed cookie gets the login page"
    assert other.get("/").status_code == 200, "other sessions of the user live on"


def test_backchannel_logout_with_only_sub_ends_all_of_the_users_sessions(rp):
    a, b = login(rp, sid="s1"), login(rp, sid="s2")
    bystander = login(rp, sid="s3", sub="u2")
    r = rp.app.test_client().post("/oidc-idle/backchannel-logout", data={
        "logout_token": logout_token(rp.worker_key, WORKER, sid=None)})
    assert r.status_code == 200 and r.json["ended"] == 2
    assert a.get("/").status_code == 302 and b.get("/").status_code == 302
    assert bystander.get("/").status_code == 200


def test_logout_for_a_session_already_gone_is_success_and_replay_is_not(rp):
    token = logout_token(rp.worker_key, WORKER, jti="once")
    c = rp.app.test_client()
    assert c.post("/oidc-idle/backchannel-logout", data={"logout_token": token}).status_code == 200
    r = c.post("/oidc-idle/backchannel-logout", data={"logout_token": token})
    assert r.status_code == 400 and "replay" in r.json["error_description"]


def test_store_failure_answers_400_so_the_sender_retries(rp, monkeypatch):
    from oidc_idle.errors import StoreError

    def broken(sid):
        raise StoreError("disk full")

    monkeypatch.setattr(rp.st.store, "kill_sid", broken)
    r = rp.app.test_client().post("/oidc-idle/backchannel-logout", data={
        "logout_token": logout_token(rp.worker_key, WORKER)})
    assert r.status_code == 400 and r.headers["Cache-Control"] == "no-store"


def test_a_request_that_loaded_a_session_cannot_resurrect_it(rp):
    c = login(rp)

    @rp.app.get("/slow")
    def slow():
        # The back-channel logout lands while this request is being served...
        rp.st.store.kill_sid("s1")
        session["touched"] = True  # ...and the request then writes its session.
        return "done"

    assert c.get("/slow").status_code == 200
    assert rp.st.store.count_for_sid("s1") == 0
    assert c.get("/").status_code == 302


def test_past_deadline_fails_closed_when_the_worker_cannot_confirm(rp):
    c = login(rp)
    rp.clock.now += 61_000  # past the cached deadline; no logout arrived
    r = c.get("/")
    assert r.status_code == 503 and b"cannot be verified" in r.data
    assert rp.st.reporter.events == [], "nothing served, nothing reported"


def test_known_dead_session_goes_to_login_without_asking(rp):
    c = login(rp)
    rp.st.store.set_deadline(Deadline("s1", "terminated", rp.clock.now, rp.clock.now,
                                      rp.clock.now + 1))
    assert c.get("/").status_code == 302
    assert rp.st.store.count_for_sid("s1") == 0


def test_dead_state_is_never_revived_by_a_late_answer(rp):
    store = rp.st.store
    store.set_deadline(Deadline("s9", "terminated", 10, 5, 100))
    store.set_deadline(Deadline("s9", "active", 10_000, 9_000, 200))
    assert store.deadline("s9").state == "terminated"


def test_activity_endpoint_takes_only_interaction_kinds(rp):
    c = login(rp)
    assert c.post("/oidc-idle/activity", json={"kinds": ["click", "keypress"]}).status_code == 204
    for bad in ({"kinds": ["poll"]}, {"kinds": ["request"]}, {"kinds": []}, {"x": 1}, None):
        assert c.post("/oidc-idle/activity", json=bad).status_code == 400
    assert [e[2] for e in rp.st.reporter.events] == ["click", "keypress"]


def test_activity_is_dated_by_the_interaction_not_by_its_receipt(rp):
    c = login(rp)
    rp.st.reporter = Recorder()
    ats = []
    rp.st.reporter.report = lambda sid, sub, kind, at=None: ats.append(at)
    assert c.post("/oidc-idle/activity", json={"kinds": ["click"], "ago_ms": 4000}).status_code \
        == 204
    assert c.post("/oidc-idle/activity", json={"kinds": ["click"], "ago_ms": 10**9}).status_code \
        == 204
    assert c.post("/oidc-idle/activity", json={"kinds": ["click"], "ago_ms": -5}).status_code \
        == 204
    assert ats == [rp.clock.now - 4000, rp.clock.now - 30_000, rp.clock.now]


def test_login_next_is_never_an_open_redirect():
    from oidc_idle.rp.extension import _safe_next

    for bad in ("https://evil", "//evil", "/\\evil", "javascript:x", None, ""):
        assert _safe_next(bad) == "/"
    assert _safe_next("/records?id=4") == "/records?id=4"


def test_missing_config_names_the_key(tmp_path):
    from oidc_idle.errors import ConfigError

    app = Flask("x")
    app.config["OIDC_IDLE_ISSUER"] = ISSUER
    with pytest.raises(ConfigError, match="OIDC_IDLE_CLIENT_ID"):
        OidcIdle(app)


def test_silent_sso_login_onto_a_dead_session_opens_nothing_and_does_not_loop(rp, monkeypatch):
    # The worker's sweep has not yet deleted the Keycloak session, so Keycloak
    # signs the user in silently with the dead sid.
    rp.st.store.set_deadline(Deadline("s1", "terminating", rp.clock.now - 10, 0, rp.clock.now))
    monkeypatch.setattr(rp.st.oidc, "authorize_access_token", lambda: {
        "access_token": "a", "refresh_token": "r", "id_token": "i",
        "userinfo": {"sid": "s1", "sub": "u1", "iss": ISSUER}})
    c = rp.app.test_client()
    r = c.get("/oidc-idle/callback?code=x&state=y")
    assert r.status_code == 302 and "/oidc-idle/signed-out" in r.headers["Location"]
    assert rp.st.store.count_for_sid("s1") == 0
    assert c.get("/").headers["Location"].startswith("/oidc-idle/login")
    # A live sid logs in normally.
    monkeypatch.setattr(rp.st.oidc, "authorize_access_token", lambda: {
        "access_token": "a", "refresh_token": "r", "id_token": "i",
        "userinfo": {"sid": "s2", "sub": "u1", "iss": ISSUER}})
    r = c.get("/oidc-idle/callback?code=x&state=y")
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert rp.st.store.count_for_sid("s2") == 1
    assert ("s2", "u1", "navigation") in rp.st.reporter.events


def test_deadline_news_older_than_the_idle_timeout_is_rechecked_and_fails_closed(rp):
    c = login(rp)
    rp.st.on_result({"sid": "s1", "state": "active", "deadline": "2027-02-01T00:00:00Z",
                     "warn_at": "2027-01-31T23:59:00Z", "idle_timeout_s": 30}, rp.clock.now)
    assert rp.st.fail_closed_after_ms == 30_000
    assert c.get("/").status_code == 200
    # No word from the worker for longer than the idle timeout (it is down):
    # the far deadline cached earlier is not trusted any more.
    rp.clock.now += 31_000
    assert c.get("/").status_code == 503


# -- the back-channel endpoint, case by case (BCL 1.0 §2.4-§2.8 + errata) ------------

def _b64(d):
    import base64
    import json
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


def _bad_tokens(rp):
    k, w = rp.worker_key, WORKER
    now = NOW_MS // 1000
    hs_input = _b64({"alg": "HS256", "kid": "worker"}) + "." + _b64(
        {"iss": w, "aud": "rp", "iat": now, "exp": now + 60, "jti": "hs", "sid": "s1",
         "events": {BCL_EVENT: {}}})
    return {
        "alg none": _b64({"alg": "none"}) + "." + _b64(
            {"iss": w, "aud": "rp", "iat": now, "exp": now + 60, "jti": "n", "sid": "s1",
             "events": {BCL_EVENT: {}}}) + ".",
        "wrong alg with a published key": hs_input + ".c2lnbmF0dXJl",
        "no events": logout_token(k, w, events=None),
        "wrong event": logout_token(k, w, events={"http://schemas.openid.net/event/x": {}}),
        "event member not an object": logout_token(k, w, events={BCL_EVENT: []}),
        "nonce present": logout_token(k, w, nonce="abc"),
        "wrong aud": logout_token(k, w, aud="other-app"),
        "wrong iss": logout_token(k, "http://evil.test"),
        "realm token signed by the worker key": logout_token(k, ISSUER),
        "iat in the future": logout_token(k, w, iat=now + 3600, exp=now + 3700),
        "iat too old": logout_token(k, w, iat=now - 3600),
        "no exp": logout_token(k, w, exp=None),
        "expired": logout_token(k, w, iat=now - 200, exp=now - 100),
        "no jti": logout_token(k, w, jti=None),
        "neither sid nor sub": logout_token(k, w, sid=None, sub=None),
        "typ of an ID token": jwt.encode(
            {"alg": "RS256", "kid": "worker", "typ": "id+jwt"},
            {"iss": w, "aud": "rp", "iat": now, "exp": now + 60, "jti": "t", "sid": "s1",
             "events": {BCL_EVENT: {}}}, k),
        "unknown kid": logout_token(RSAKey.generate_key(2048, parameters={"kid": "zz"}), w),
        "garbage": "garbage",
    }


def test_backchannel_endpoint_refuses_every_bad_case_and_ends_nothing(rp):
    c = login(rp)
    bcl = rp.app.test_client()
    for name, token in _bad_tokens(rp).items():
        r = bcl.post("/oidc-idle/backchannel-logout", data={"logout_token": token})
        assert r.status_code == 400, name
        assert r.headers["Cache-Control"] == "no-store", name
        assert r.json["error"] == "invalid_request" and r.json["error_description"], name
        assert rp.st.store.count_for_sid("s1") == 1, f"{name} ended a session"
    r = bcl.post("/oidc-idle/backchannel-logout", json={"logout_token": "x"})
    assert r.status_code == 400, "not a form POST"
    assert c.get("/").status_code == 200


def test_backchannel_endpoint_ignores_extra_parameters_and_unknown_claims(rp):
    login(rp)
    token = logout_token(rp.worker_key, WORKER, something_new="x", typ="Logout")
    r = rp.app.test_client().post("/oidc-idle/backchannel-logout",
                                  data={"logout_token": token, "state": "ignored"})
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert rp.st.store.count_for_sid("s1") == 0


def test_odd_activity_bodies_are_400s_not_500s(rp):
    c = login(rp)
    for body in ({"kinds": [["click"]]}, {"kinds": [{}]}, {"kinds": [None]}):
        assert c.post("/oidc-idle/activity", json=body).status_code == 400
    r = c.post("/oidc-idle/activity", data='{"kinds":["click"],"ago_ms":NaN}',
               content_type="application/json")
    assert r.status_code == 204
    r = c.post("/oidc-idle/activity", data="[" * 100_000, content_type="application/json")
    assert r.status_code == 400


def test_backchannel_endpoint_odd_requests(rp):
    import base64

    c = rp.app.test_client()
    head = base64.urlsafe_b64encode(b"[" * 100_000).rstrip(b"=").decode()
    r = c.post("/oidc-idle/backchannel-logout", data={"logout_token": f"{head}.e30.x"})
    assert r.status_code == 400 and r.headers["Cache-Control"] == "no-store"
    assert c.get("/oidc-idle/backchannel-logout").status_code == 405
    r = c.post("/oidc-idle/backchannel-logout", data={"logout_token": "x" * 600_000})
    assert r.status_code == 413 and r.headers["Cache-Control"] == "no-store" and r.is_json


def test_control_characters_in_next_fall_back_to_home():
    from oidc_idle.rp.extension import _safe_next

    assert _safe_next("/%0d%0aX:1") == "/%0d%0aX:1"  # still encoded: harmless
    assert _safe_next("/\r\nX: 1") == "/"
    assert _safe_next("/a\tb") == "/"
