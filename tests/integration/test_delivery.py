"""Back-channel delivery to real HTTP servers on loopback: an app that answers
500, one that times out, one that redirects, one that is down then up, one that
answers 400, and a healthy one that none of them delays. Real SQLite store,
real HTTP; Keycloak is the unit ring's fake (this is about the notifier)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from fakes import FakeKeycloak
from oidc_idle.audit import JsonlSink
from oidc_idle.clients import ClientRegistry
from oidc_idle.clock import SystemClock
from oidc_idle.enforcer import Enforcer
from oidc_idle.keys import SigningKeys
from oidc_idle.notifier import Notifier
from oidc_idle.policy import Policy
from oidc_idle.store.base import SessionRecord
from oidc_idle.store.sqlite import SQLiteStore
from stack import free_port, wait_for


class App:
    """A relying party's back-channel endpoint with a scripted behaviour."""

    def __init__(self, mode: str, port: int | None = None) -> None:
        self.mode = mode
        self.port = port or free_port()
        self.hits: list[float] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bcl"

    def start(self) -> App:
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                app.hits.append(time.time())
                if app.mode == "slow":
                    time.sleep(3)
                status = {"ok": 200, "500": 500, "400": 400, "slow": 200,
                          "redirect": 302}[app.mode]
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", redirect_target.url)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


redirect_target = App("ok")


@pytest.fixture
def delivery(tmp_path: Path):
    redirect_target.start()
    apps = {"healthy": App("ok").start(), "err500": App("500").start(),
            "slow": App("slow").start(), "redirect": App("redirect").start(),
            "rejects": App("400").start(), "flaky": App("ok")}  # flaky starts down
    clock = SystemClock()
    kc = FakeKeycloak()
    for name, app in apps.items():
        kc.add_client(name, app.url)
    store = SQLiteStore(tmp_path / "w.db")
    sink = JsonlSink(store, tmp_path / "audit.jsonl")
    clients = ClientRegistry(store, kc, clock)
    keys = SigningKeys(store, clock)
    policy = Policy(idle_timeout_ms=1000, warning_lead_ms=100, absolute_lifetime_ms=60_000)
    enforcer = Enforcer(store=store, keycloak=kc, clients=clients, policy=lambda: policy,
                        clock=clock, owner="w1", realm="demo", issuer="http://worker",
                        lease_ms=30_000, notification_ttl_ms=60_000, on_audit=sink.sync)
    notifier = Notifier(store=store, keys=keys, issuer="http://worker", clock=clock,
                        timeout_ms=1000, backoff_base_ms=100, backoff_max_ms=400,
                        parallelism=8, on_audit=sink.sync, http=requests.Session())
    now = clock.now_ms()
    store.create_session(SessionRecord("sid-1", "user-1", now - 5000, now - 5000, now - 10,
                                       clients=tuple(apps)))
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            enforcer.sweep()
            notifier.deliver_due()
            stop.wait(0.05)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield store, apps
    stop.set()
    t.join()
    enforcer.close()
    notifier.close()
    for app in [*apps.values(), redirect_target]:
        app.stop()
    store.close()


def _note(store, client):
    return next(n for n in store.notifications_for("sid-1") if n.client_id == client)


def test_every_app_gets_its_treatment_and_healthy_apps_are_not_delayed(delivery):
    store, apps = delivery
    wait_for(lambda: store.notifications_for("sid-1"), 5, "the outbox rows")
    term = next(e.record for e in store.audit_entries()
                if e.record["event"] == "session.terminated")
    healthy = wait_for(lambda: (n := _note(store, "healthy")).state == "delivered" and n, 5,
                       "the healthy app's delivery")
    # Not held up by the app that hangs for 3 s, nor by the failing ones.
    assert healthy.delivered_at - term["terminated_at_ms"] < 1000
    assert healthy.attempts == 1

    # 500: retried with backoff, still pending.
    wait_for(lambda: _note(store, "err500").attempts >= 3, 10, "retries of the 500 app")
    n500 = _note(store, "err500")
    assert n500.state == "pending" and n500.last_status == 500
    gaps = [b - a for a, b in zip(apps["err500"].hits, apps["err500"].hits[1:], strict=False)]
    assert all(g >= 0.04 for g in gaps), "retries are spaced by a backoff"

    # Redirect: not followed, not counted as delivered.
    wait_for(lambda: _note(store, "redirect").attempts >= 2, 10, "retries of the redirect")
    assert _note(store, "redirect").state == "pending"
    assert _note(store, "redirect").last_status == 302
    assert redirect_target.hits == [], "a redirect was followed"

    # Timeout: the slow app's answer comes too late; retried.
    wait_for(lambda: _note(store, "slow").attempts >= 2, 15, "retries of the slow app")
    slow = _note(store, "slow")
    assert slow.state == "pending" and "Timeout" in (slow.last_error or "")

    # 400: a few tries, then a dead letter with the app's answer kept.
    dead = wait_for(lambda: (n := _note(store, "rejects")).state == "dead" and n, 10,
                    "the dead letter")
    assert dead.attempts == 3 and dead.last_status == 400

    # Down, then up: delivered once it is back.
    wait_for(lambda: _note(store, "flaky").attempts >= 2, 10, "attempts at the down app")
    assert _note(store, "flaky").state == "pending"
    apps["flaky"].start()
    flaky = wait_for(lambda: (n := _note(store, "flaky")).state == "delivered" and n, 10,
                     "delivery once the app is back")
    assert len(apps["flaky"].hits) == 1

    # The audit trail shows every attempt of each finished delivery.
    records = [e.record for e in store.audit_entries()]
    by_client = {r["identity"]["client_id"]: r for r in records
                 if r["event"].startswith("logout.")}
    assert by_client["rejects"]["event"] == "logout.dead_lettered"
    log = by_client["rejects"]["outcome"]["attempt_log"]
    assert [a["status"] for a in log] == [400, 400, 400]
    flaky_log = by_client["flaky"]["outcome"]["attempt_log"]
    assert len(flaky_log) == flaky.attempts
    assert flaky_log[-1]["status"] == 200 and all(a["status"] is None for a in flaky_log[:-1])
    assert by_client["healthy"]["outcome"]["attempt_log"][0]["status"] == 200
