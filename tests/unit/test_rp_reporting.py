"""A slow or down worker never slows an app's requests; reports wait and arrive.

The worker (and the token endpoint) is a small fake HTTP server on loopback.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from flask import Flask

from oidc_idle.clock import parse_iso_ms
from oidc_idle.rp import OidcIdle
from stack import free_port, wait_for


class FakeWorker:
    def __init__(self, port: int) -> None:
        self.port = port
        self.delay = 0.0
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.up()

    def up(self) -> None:
        fake = self
        base = f"http://127.0.0.1:{self.port}"

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, body, status=200):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.endswith("/.well-known/openid-configuration"):
                    self._json({"issuer": base, "token_endpoint": f"{base}/token",
                                "authorization_endpoint": f"{base}/auth",
                                "jwks_uri": f"{base}/certs"})
                else:
                    self._json({}, 404)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if self.path == "/token":
                    self._json({"access_token": "t", "expires_in": 300})
                    return
                time.sleep(fake.delay)
                events = json.loads(body)["events"]
                with fake.lock:
                    fake.events.extend(events)
                self._json({"results": [{"sid": e["sid"], "state": "active",
                                         "deadline": "2099-01-01T00:00:00Z",
                                         "warn_at": "2098-12-31T23:59:00Z"} for e in events]})

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        self.server = None


@pytest.fixture
def app_and_worker(tmp_path):
    port = free_port()
    worker = FakeWorker(port)
    app = Flask("slow")
    url = f"http://127.0.0.1:{port}"
    app.config.update(OIDC_IDLE_ISSUER=url, OIDC_IDLE_CLIENT_ID="rp",
                      OIDC_IDLE_CLIENT_SECRET="s", OIDC_IDLE_WORKER_URL=url,
                      OIDC_IDLE_SESSION_DB=str(tmp_path / "s.db"),
                      OIDC_IDLE_WORKER_TIMEOUT="10s", OIDC_IDLE_REPORT_INTERVAL="100ms")
    OidcIdle(app)

    @app.get("/")
    def index():
        return "ok"

    client = app.test_client()
    with client.session_transaction() as sess:
        sess["oidc_idle"] = {"sid": "s1", "sub": "u1", "iss": url, "name": "u1",
                             "login_at": int(time.time() * 1000)}
    yield app, client, worker
    app.extensions["oidc_idle"].reporter.stop()
    if worker.server is not None:
        worker.down()


def test_a_slow_worker_adds_no_latency_to_requests(app_and_worker):
    _, client, worker = app_and_worker
    worker.delay = 3.0  # every call to the worker takes 3 s
    slowest = 0.0
    for _ in range(5):
        t = time.monotonic()
        assert client.get("/").status_code == 200
        slowest = max(slowest, time.monotonic() - t)
    # A request that waited for the worker would take at least 3 s.
    assert slowest < 1.0, f"a request took {slowest:.2f} s"
    wait_for(lambda: len(worker.events) >= 5, 20, "the batched reports")


def test_reports_made_while_the_worker_is_down_arrive_later(app_and_worker):
    app, client, worker = app_and_worker
    worker.down()
    sent = []
    for _ in range(5):
        before = int(time.time() * 1000)
        t = time.monotonic()
        assert client.get("/").status_code == 200
        assert time.monotonic() - t < 1.0
        sent.append(before)
        time.sleep(0.05)
    reporter = app.extensions["oidc_idle"].reporter
    assert reporter.pending() == 5
    worker.up()
    events = wait_for(lambda: len(worker.events) >= 5 and list(worker.events), 20,
                      "the kept reports")
    ats = sorted(parse_iso_ms(e["at"]) for e in events)
    # Each report keeps the time of its request, not the time it was finally sent.
    for made, at in zip(sent, ats, strict=True):
        assert made <= at < made + 1000
    assert all(e["kind"] == "request" and e["sid"] == "s1" for e in events)


def test_the_queue_is_bounded_and_drops_passive_reports_first():
    from oidc_idle.clock import FakeClock
    from oidc_idle.rp.reporter import Reporter

    class NeverUp:
        def call(self, *a, **k):
            raise OSError("down")

    r = Reporter(NeverUp(), FakeClock(), lambda *a: None,  # type: ignore[arg-type]
                 max_queue=3, interval_s=60)
    try:
        r.report("s", "u", "click")
        r.report("s", "u", "poll")
        r.report("s", "u", "keypress")
        r.report("s", "u", "scroll")  # full: the poll goes first
        r.report("s", "u", "touch")   # then the oldest counted one
        assert r.pending() == 3 and r.dropped == 2
        kinds = [x.kind for x in r._queue]
        assert kinds == ["keypress", "scroll", "touch"]
    finally:
        r.stop()


def test_reports_the_worker_deferred_are_sent_again():
    from oidc_idle.clock import FakeClock
    from oidc_idle.rp.reporter import Reporter

    class Worker:
        def __init__(self):
            self.batches = []

        def call(self, method, path, json):
            self.batches.append([e["sid"] for e in json["events"]])
            first = len(self.batches) == 1

            class R:
                status_code = 200

                def json(self_inner):
                    return {"results": [
                        {"sid": e["sid"], "error": "verification_deferred"}
                        if first and i > 0 else {"sid": e["sid"], "state": "active"}
                        for i, e in enumerate(json["events"])]}
            return R()

    w = Worker()
    seen = []
    r = Reporter(w, FakeClock(), lambda res, now: seen.append(res["sid"]),
                 interval_s=0.01)
    try:
        for sid in ("a", "b", "c"):
            r.report(sid, "u", "click")
        assert r.flush(5)
    finally:
        r.stop()
    assert sorted(seen) == ["a", "b", "c"]
    assert any(b[-2:] == ["b", "c"] for b in w.batches[1:]), w.batches
