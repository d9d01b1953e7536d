"""Benchmark: from a session's deadline to each app's receipt of its logout.

1,000 sessions, each with 5 apps, whose deadlines fall within one minute; one
app answers 500 for the first 30 s. The worker runs as `oidc-idle serve` does
(waitress, APScheduler sweep) against a real Keycloak. Sessions are seeded
into the worker's store (their sids are not live Keycloak sessions, so each
deletion is Keycloak's real "404 already gone" round trip); the apps are real
HTTP servers on loopback that verify nothing and record the time of receipt.

    python bench/delivery.py          # prints a table, writes bench/results/delivery.json
"""

from __future__ import annotations

import argparse
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from common import free_port, keycloak, seeded_worker, summary, write

from oidc_idle.jose import unverified
from oidc_idle.policy import Policy


class Receiver:
    def __init__(self, name: str, fail_until: float = 0.0) -> None:
        self.name = name
        self.fail_until = fail_until
        self.port = free_port()
        self.received: dict[str, float] = {}
        self.failures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                now = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                token = parse_qs(body)["logout_token"][0]
                sid = unverified(token)[1]["sid"]  # timing only: no need to verify here
                status = 500 if now < receiver.fail_until else 200
                with receiver.lock:
                    if status == 200:
                        receiver.received.setdefault(sid, now)
                    else:
                        receiver.failures += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--apps", type=int, default=5)
    ap.add_argument("--window", type=float, default=60.0, help="deadlines spread over (s)")
    ap.add_argument("--flap", type=float, default=30.0, help="one app answers 500 this long")
    a = ap.parse_args()
    with keycloak() as (kc_url, admin):
        start = time.time() + 15  # time to start the worker first
        apps = [Receiver(f"bench-app-{i}", fail_until=start + a.flap if i == 0 else 0)
                for i in range(a.apps)]
        for app in apps:
            admin.register_client(app.name, app.url)
        _, deadlines, worker, _ = seeded_worker(
            kc_url, admin, "delivery",
            Policy(idle_timeout_ms=600_000, warning_lead_ms=60_000,
                   absolute_lifetime_ms=3_600_000),
            a.sessions, lambda i: int((start + a.window * i / a.sessions) * 1000),
            tuple(x.name for x in apps))
        try:
            end = start + a.window + a.flap + 120
            total = a.sessions * a.apps
            while time.time() < end:
                got = sum(len(x.received) for x in apps)
                if got >= total:
                    break
                time.sleep(1)
        finally:
            worker.stop()
    rows = {}
    for app in apps:
        lat = [app.received[s] * 1000 - d for s, d in deadlines.items() if s in app.received]
        rows[app.name] = {**summary([v / 1000 for v in lat]),
                          "delivered": len(app.received), "of": a.sessions,
                          "failures_answered": app.failures}
    healthy = [v for k, v in rows.items() if k != apps[0].name]
    flap = rows[apps[0].name]
    flap_times = sorted(apps[0].received.values())
    flap["first_receipt_after_start_s"] = (flap_times[0] - start) if flap_times else None
    flap["last_receipt_after_start_s"] = (flap_times[-1] - start) if flap_times else None
    print(f"\nDelivery: {a.sessions} sessions x {a.apps} apps, deadlines within {a.window:g} s,"
          f" {apps[0].name} answers 500 for the first {a.flap:g} s")
    print(f"{'app':14} {'delivered':>10} {'p50 s':>8} {'p99 s':>8} {'max s':>8}")
    for name, r in rows.items():
        print(f"{name:14} {r['delivered']:>6}/{r['of']:<4}"
              f"{r['p50']:>8.3f} {r['p99']:>8.3f} {r['max']:>8.3f}")
    worst = max(r["p99"] for r in healthy)
    print(f"healthy apps' worst p99: {worst:.3f} s (goal <= 1.5 s); flapping app: "
          f"{flap['failures_answered']} 500s answered, first logout received "
          f"{flap['first_receipt_after_start_s']:.1f} s after the first deadline, last "
          f"{flap['last_receipt_after_start_s']:.1f} s after")
    path = write("delivery", {"params": vars(a), "apps": rows,
                              "healthy_worst_p99_s": worst})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
