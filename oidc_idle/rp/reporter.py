"""Activity reporting that never blocks a request.

Requests put events on a bounded in-memory queue and return; a background
thread batches them to the worker's ``POST /v1/activity`` with the app's
service-account token (client credentials, RFC 6749 §4.4). While the worker
is slow or down, events wait (bounded: the oldest passive ones are dropped
first, then the oldest counted ones) and go out later. Each answer updates the
shared deadline cache, which the fail-closed check reads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from ..clock import Clock, iso_ms, parse_iso_ms
from ..errors import OidcIdleError, Unauthorized

log = logging.getLogger("oidc_idle.rp.reporter")


@dataclass(frozen=True)
class Report:
    sid: str
    sub: str
    kind: str
    at: int
    auth_time: int | None = None


class ServiceToken:
    """The app's own access token from Keycloak by client credentials, cached."""

    def __init__(self, token_url: Callable[[], str], client_id: str, client_secret: str,
                 http: requests.Session, timeout_s: float) -> None:
        self._token_url = token_url
        self._client_id = client_id
        self._secret = client_secret
        self._http = http
        self._timeout = timeout_s
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def get(self, *, force: bool = False) -> str:
        with self._lock:
            if force or self._token is None or time.monotonic() >= self._expires:
                resp = self._http.post(self._token_url(), data={
                    "grant_type": "client_credentials", "client_id": self._client_id,
                    "client_secret": self._secret}, timeout=self._timeout)
                if resp.status_code != 200:
                    raise Unauthorized(f"client credentials grant failed: {resp.status_code} "
                                       f"{resp.text[:200]}")
                body = resp.json()
                self._token = body["access_token"]
                self._expires = time.monotonic() + max(5, int(body.get("expires_in", 60)) - 10)
            assert self._token is not None
            return self._token


class WorkerClient:
    """Calls to the worker API with the service token (one retry on 401)."""

    def __init__(self, base_url: str, token: ServiceToken, http: requests.Session,
                 timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._http = http
        self._timeout = timeout_s

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        for attempt in (0, 1):
            headers = {"Authorization": f"Bearer {self._token.get(force=attempt == 1)}"}
            resp = self._http.request(method, self.base_url + path, headers=headers,
                                      timeout=self._timeout, **kwargs)
            if resp.status_code != 401:
                return resp
        return resp


class Reporter:
    def __init__(self, client: WorkerClient, clock: Clock,
                 on_result: Callable[[dict[str, Any], int], None],
                 *, max_queue: int = 10_000,
                 batch_size: int = 100, interval_s: float = 0.2) -> None:
        self._client = client
        self._clock = clock
        self._on_result = on_result
        self._queue: deque[Report] = deque()
        self._max = max_queue
        self._batch = batch_size
        self._interval = interval_s
        self._cond = threading.Condition()
        self._stopped = False
        self.dropped = 0
        self.sent = 0
        self._deferred: list[Report] = []  # events the worker asked to be sent again
        self._thread = threading.Thread(target=self._run, name="oidc-idle-reporter", daemon=True)
        self._thread.start()

    def report(self, sid: str, sub: str, kind: str, at: int | None = None,
               auth_time: int | None = None) -> None:
        """Queue an event; O(1), never blocks on the network."""
        with self._cond:
            if len(self._queue) >= self._max:
                self._drop_one()
            self._queue.append(Report(sid, sub, kind, self._clock.now_ms() if at is None else at,
                                      auth_time))
            self._cond.notify()

    def _drop_one(self) -> None:
        for i, r in enumerate(self._queue):
            if r.kind in ("poll", "heartbeat", "token_refresh"):
                del self._queue[i]
                break
        else:
            self._queue.popleft()
        self.dropped += 1

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until the queue is empty (for tests and shutdown)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._cond.notify()
            while self._queue or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    _in_flight = False

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = self._interval
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                batch = [self._queue[i] for i in range(min(self._batch, len(self._queue)))]
                self._in_flight = True
            ok = self._send(batch)
            with self._cond:
                if ok:
                    # Drops made while the batch was in flight may have removed some
                    # of its events; what is left of it is still the queue's prefix.
                    sent = {id(r) for r in batch}
                    while self._queue and id(self._queue[0]) in sent:
                        self._queue.popleft()
                    self.sent += len(batch) - len(self._deferred)
                    self._queue.extend(self._deferred)  # to be sent again
                    self._deferred = []
                self._in_flight = False
                self._cond.notify_all()
                if not ok and not self._stopped:
                    self._cond.wait(backoff)  # the worker is down: wait, keep the events
            backoff = self._interval if ok else min(backoff * 2, 5.0)

    def _send(self, batch: list[Report]) -> bool:
        body = {"events": [{"sid": r.sid, "sub": r.sub, "kind": r.kind, "at": iso_ms(r.at),
                            **({"auth_time": iso_ms(r.auth_time)} if r.auth_time else {})}
                           for r in batch]}
        try:
            resp = self._client.call("POST", "/v1/activity", json=body)
        except (requests.RequestException, OidcIdleError) as exc:
            log.warning("worker unreachable, %d events kept for later: %s", len(batch), exc)
            return False
        if resp.status_code >= 500:
            log.warning("worker answered %d; %d events kept", resp.status_code, len(batch))
            return False
        now = self._clock.now_ms()
        if resp.status_code != 200:
            # A 4xx is our fault and will not get better by retrying: log and drop.
            log.error("worker rejected a batch of %d: %d %s", len(batch), resp.status_code,
                      resp.text[:300])
            return True
        deferred = []
        for report, result in zip(batch, resp.json().get("results", []), strict=False):
            if result.get("error") == "verification_deferred":
                deferred.append(report)  # the worker checks a few new sessions per batch
            else:
                self._on_result(result, now)
        self._deferred = deferred
        return True


def result_deadline(result: dict[str, Any]) -> tuple[int, int] | None:
    try:
        return parse_iso_ms(result["deadline"]), parse_iso_ms(result["warn_at"])
    except (KeyError, TypeError, ValueError):
        return None
