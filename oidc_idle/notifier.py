"""The notifier: delivers every owed back-channel logout, retrying until it lands.

Keycloak sends its own back-channel logout once, one app after another, and
never retries; on idle expiry it sends none (DESIGN.md). The worker's outbox
rows are written in the same transaction as the termination, so nothing owed
is lost to a crash; each attempt mints a fresh logout token (new ``jti``,
``exp`` ≤ 2 min, BCL 1.0 §2.4) and POSTs it form-encoded (§2.5), without
following redirects (a redirect is not an acknowledgement), with a bounded
timeout, several apps in parallel.

200/204 delivered (§2.8). 400 means the app rejected the token: retried a few
times, then dead-lettered with the app's answer kept (a configuration fault).
Anything else (timeouts, refused connections, 5xx, redirects) is retried with
exponential backoff and jitter until the time-to-live, then dead-lettered.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from . import logout_token
from .clock import Clock, iso_ms
from .keys import SigningKeys
from .metrics import Metrics
from .store.base import Notification, SessionStore

log = logging.getLogger("oidc_idle.notifier")

MAX_REJECTED_ATTEMPTS = 3


def backoff_ms(attempts: int, base_ms: int, max_ms: int, rng: random.Random) -> int:
    """Exponential backoff with jitter: between half and all of base·2^(n-1), capped."""
    ceiling = min(max_ms, base_ms * 2 ** max(0, attempts - 1))
    return int(ceiling / 2 + rng.random() * ceiling / 2)


class Notifier:
    def __init__(self, *, store: SessionStore, keys: SigningKeys, issuer: str, clock: Clock,
                 timeout_ms: int, backoff_base_ms: int, backoff_max_ms: int, parallelism: int,
                 on_audit: Callable[[], Any] = lambda: None,
                 http: requests.Session | None = None, metrics: Metrics | None = None) -> None:
        self._metrics = metrics or Metrics()
        self._store = store
        self._keys = keys
        self._issuer = issuer
        self._clock = clock
        self._timeout = timeout_ms
        self._base = backoff_base_ms
        self._max = backoff_max_ms
        self._on_audit = on_audit
        self._http = http or requests.Session()
        self._rng = random.Random()
        self._parallelism = parallelism
        self._pool = ThreadPoolExecutor(parallelism, thread_name_prefix="oidc-idle-deliver")
        self._wake = threading.Event()
        self._inflight = 0  # attempts claimed and not finished; at most `parallelism`
        self._idle = threading.Condition()

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until no attempt is in flight (shutdown, tests)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout_s)

    def wake(self) -> None:
        """Something may be due now (a termination finished, an attempt ended)."""
        self._wake.set()

    def run(self, stop: threading.Event, idle_wait_s: float = 0.25) -> None:
        """The dispatcher loop: claim what is due whenever a slot is free.

        Woken by terminations and by finished attempts, so a notice goes out as
        soon as it is owed; otherwise it looks again every ``idle_wait_s`` for
        retries whose backoff has passed.
        """
        while not stop.is_set():
            try:
                started = self.deliver_due()
            except Exception:
                log.exception("claiming due notifications failed; trying again")
                started = 0
            if not started:
                self._wake.wait(idle_wait_s)
                self._wake.clear()

    def deliver_due(self) -> int:
        """Start attempts for due notifications; never waits for slow apps."""
        with self._idle:  # reserve the free slots
            free = self._parallelism - self._inflight
            if free <= 0:
                return 0
            self._inflight += free
        due: list[Notification] = []
        try:
            lease = self._timeout * 2 + 1000  # no one else takes it while this attempt runs
            due = self._store.claim_notifications(self._clock.now_ms(), lease, free)
        finally:  # give back what was not used, also when the store failed
            self._finished(free - len(due))
        for n in due:
            self._pool.submit(self._attempt_guarded, n)
        return len(due)

    def _finished(self, slots: int) -> None:
        if slots:
            with self._idle:
                self._inflight -= slots
                self._idle.notify_all()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _attempt_guarded(self, n: Notification) -> None:
        try:
            self._attempt(n)
        except Exception:
            log.exception("delivery attempt %d to %s for sid=%s crashed; its lease will expire",
                          n.attempts, n.client_id, n.sid)
        finally:
            self._finished(1)
            self._wake.set()

    def _audit(self, n: Notification, outcome: str, status: int | None, error: str | None,
               now: int) -> dict[str, Any]:
        final = {"at": iso_ms(now), "attempt": n.attempts, "status": status, "error": error}
        return {
            "event": f"logout.{outcome}",
            "type": "backchannel_logout_delivery",
            "at": iso_ms(now),
            "at_ms": now,
            "identity": {"sid": n.sid, "sub": n.sub, "client_id": n.client_id},
            "outcome": {"result": outcome, "attempts": n.attempts, "http_status": status,
                        "error": error, "url": n.url,
                        "since_termination_ms": now - n.created_at,
                        "attempt_log": [*n.history, final]},
        }

    def _attempt(self, n: Notification) -> None:
        now = self._clock.now_ms()
        if now >= n.expires_at:
            self._dead(n, None, "time-to-live passed", now)
            return
        token = logout_token.mint(key=self._keys.current(), issuer=self._issuer,
                                  audience=n.client_id, sub=n.sub, sid=n.sid,
                                  now_s=now // 1000)
        status: int | None = None
        try:
            resp = self._http.post(
                n.url, data={"logout_token": token}, timeout=self._timeout / 1000,
                allow_redirects=False,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            status = resp.status_code
            error = None if status in (200, 204) else f"HTTP {status}: {resp.text[:300]}"
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        now = self._clock.now_ms()
        if error is None:
            if self._store.notification_delivered(n.id, now, status or 200,
                                                  self._audit(n, "delivered", status, None, now)):
                self._metrics.inc("oidc_idle_deliveries_total", client=n.client_id,
                                  outcome="delivered")
                self._metrics.observe("oidc_idle_delivery_latency_seconds",
                                      (now - n.created_at) / 1000, client=n.client_id)
                self._on_audit()
            log.info("logout delivered to %s for sid=%s (attempt %d)", n.client_id, n.sid,
                     n.attempts)
            return
        if status == 400 and n.attempts >= MAX_REJECTED_ATTEMPTS:
            self._dead(n, status, error, now)
            return
        next_at = now + backoff_ms(n.attempts, self._base, self._max, self._rng)
        if next_at >= n.expires_at:
            next_at = max(now + 1, n.expires_at - 1)  # a last try just inside the time-to-live
        self._metrics.inc("oidc_idle_deliveries_total", client=n.client_id, outcome="retried")
        self._store.notification_retry(n.id, next_at, status, error, {
            "at": iso_ms(now), "attempt": n.attempts, "status": status, "error": error})
        log.warning("logout to %s for sid=%s failed (attempt %d): %s; retry at %s",
                    n.client_id, n.sid, n.attempts, error, iso_ms(next_at))

    def _dead(self, n: Notification, status: int | None, error: str, now: int) -> None:
        if self._store.notification_dead(n.id, now, status, error,
                                         self._audit(n, "dead_lettered", status, error, now)):
            self._metrics.inc("oidc_idle_deliveries_total", client=n.client_id,
                              outcome="dead_lettered")
            self._on_audit()
        log.error("logout to %s for sid=%s dead-lettered after %d attempts: %s",
                  n.client_id, n.sid, n.attempts, error)
