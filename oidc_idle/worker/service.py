"""The worker: composes store, tracker, enforcer and notifier, and schedules them.

Nothing here speaks HTTP (``worker.http`` does); tests drive it with a fake
clock and a fake Keycloak.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from .. import tracker
from ..audit import JsonlSink
from ..clients import ClientRegistry
from ..clock import Clock, iso_ms
from ..enforcer import Enforcer
from ..errors import KeycloakError, NotFound, PolicyError
from ..keycloak import Keycloak
from ..keys import SigningKeys
from ..metrics import Metrics
from ..notifier import Notifier
from ..policy import Policy
from ..store.base import ACTIVE, AppClock, SessionRecord, SessionStore

log = logging.getLogger("oidc_idle.worker")

NEGATIVE_CACHE_MS = 30_000
#: One batch may make at most this many Keycloak look-ups of sessions the worker
#: does not know yet: a client cannot turn one request into a flood on Keycloak.
MAX_VERIFICATIONS_PER_BATCH = 50


class PolicySource:
    """The realm's policy, re-read periodically; a bad update keeps the last good one."""

    def __init__(self, keycloak: Keycloak,
                 on_change: Callable[[Policy], object] = lambda p: None) -> None:
        self._kc = keycloak
        self._on_change = on_change
        self._policy = self._read()  # at start a bad or unreadable policy is fatal
        self._warn_backstop()

    def _read(self) -> Policy:
        self._attrs = self._kc.realm_attributes()
        return Policy.from_realm_attributes(self._attrs)

    def _warn_backstop(self) -> None:
        idle = self._attrs.get("ssoSessionIdleTimeout")
        if isinstance(idle, int) and 0 < idle * 1000 <= self._policy.idle_timeout_ms:
            log.warning("Keycloak's SSO Session Idle (%d s) is not above the policy's idle "
                        "timeout (%d s): Keycloak would end sessions first, without telling "
                        "any app", idle, self._policy.idle_timeout_ms // 1000)

    def __call__(self) -> Policy:
        return self._policy

    def refresh(self) -> None:
        try:
            policy = self._read()
        except (KeycloakError, PolicyError) as exc:
            log.error("keeping the current policy: %s", exc.description)
            return
        if policy != self._policy:
            log.info("policy changed: %s", policy.as_audit())
            self._policy = policy
            self._warn_backstop()
            self._on_change(policy)


class Worker:
    def __init__(self, *, store: SessionStore, keycloak: Keycloak, clock: Clock,
                 policy: Callable[[], Policy], keys: SigningKeys, clients: ClientRegistry,
                 enforcer: Enforcer, notifier: Notifier, sink: JsonlSink | None,
                 clock_skew_ms: int, metrics: Metrics | None = None) -> None:
        self.metrics = metrics or Metrics()
        self.store = store
        self.keycloak = keycloak
        self.clock = clock
        self.policy = policy
        self.keys = keys
        self.clients = clients
        self.enforcer = enforcer
        self.notifier = notifier
        self.sink = sink
        self.clock_skew_ms = clock_skew_ms
        self._rejected: dict[tuple[str, str], int] = {}
        self._rejected_lock = threading.Lock()
        self._scheduler: BackgroundScheduler | None = None
        self._logout_cursor: int | None = None
        self._logout_warned = False

    def apply_policy(self, policy: Policy) -> int:
        """A changed realm policy applies to live sessions at the next sweep
        (lower the idle timeout from 30 to 15 minutes: sessions already idle for
        15 minutes die at that sweep)."""
        changed = self.store.reapply_policy(policy.idle_timeout_ms,
                                            policy.absolute_lifetime_ms, self.clock.now_ms())
        log.info("policy applied to %d live session(s)", changed)
        return changed

    # -- API operations ---------------------------------------------------
    def ingest(self, client_id: str, payload: Any) -> list[dict[str, Any]]:
        """``POST /v1/activity``: validate the whole batch, then apply each event."""
        now = self.clock.now_ms()
        events = tracker.parse_batch(payload, now, self.clock_skew_ms)
        budget = [MAX_VERIFICATIONS_PER_BATCH]  # Keycloak look-ups one batch may cause
        return [self._apply(client_id, ev, now, budget) for ev in events]

    def _apply(self, client_id: str, ev: tracker.ActivityEvent, now: int,
               budget: list[int] | None = None) -> dict[str, Any]:
        try:
            session = self._member_session(client_id, ev.sid, ev.sub, now, budget)
        except NotFound as exc:
            return {"sid": ev.sid, "error": exc.error, "detail": exc.description}
        except KeycloakError as exc:
            return {"sid": ev.sid, "error": "keycloak_unavailable", "detail": exc.description}
        policy = self.policy()
        move = tracker.plan(session, ev, policy, now)
        self.metrics.inc("oidc_idle_activity_events_total", counted=str(move.counts).lower())
        if (move.deadline is not None and move.last_activity_at is not None
                and self.store.record_activity(ev.sid, move.last_activity_at, move.deadline,
                                               now)):
            session = replace(session, last_activity_at=move.last_activity_at,
                              deadline=move.deadline)
        alive = tracker.effective_state(session, now) == ACTIVE
        app, app_idle = self._app_clock(client_id, ev.sid, policy)
        if app_idle is not None and (move.counts or app is None) and alive:
            deadline = min(ev.at + app_idle, session.started_at + policy.absolute_lifetime_ms)
            app = self.store.touch_app_clock(ev.sid, client_id, ev.at, deadline, now,
                                             fresh_auth_at=ev.auth_time)
        view = tracker.view(session, policy, self.clock.now_ms(), app, app_idle)
        # "counted": a kind that counts, reported while the session was alive.
        return {**view, "counted": move.counts and alive}

    def _app_clock(self, client_id: str, sid: str,
                   policy: Policy) -> tuple[AppClock | None, int | None]:
        """The app's own clock in this session and its idle timeout, if it has one."""
        app_idle = self.app_idle_ms(client_id, policy)
        if app_idle is None:
            return None, None
        return self.store.get_app_clock(sid, client_id), app_idle

    def app_idle_ms(self, client_id: str, policy: Policy) -> int | None:
        """The app's own idle timeout, if it has a stricter one than the realm's
        (DESIGN.md: per-app overrides may only be stricter)."""
        try:
            rec = self.clients.get(client_id)
        except KeycloakError:
            rec = self.store.get_client(client_id)
        idle = rec.idle_timeout_ms if rec is not None else None
        return idle if idle is not None and idle < policy.idle_timeout_ms else None

    def _member_session(self, client_id: str, sid: str, sub: str | None,
                        now: int, budget: list[int] | None = None) -> SessionRecord:
        """The session, if ``client_id`` takes part in it; checked once against Keycloak.

        DESIGN.md: an unknown sid is verified against Keycloak once (the user has
        that session and the reporting client is part of it) before it is tracked.
        """
        session = self.store.get_session(sid)
        if session is not None and client_id in session.clients:
            if sub is not None and session.sub != sub:
                raise NotFound(f"no session {sid} for that sub", error="unknown_session")
            return session
        if session is not None and session.state != ACTIVE:
            raise NotFound(f"session {sid} is not known to client {client_id}",
                           error="unknown_session")
        if sub is None:
            raise NotFound(f"no session {sid} for client {client_id}", error="unknown_session")
        key = (sid, client_id)
        with self._rejected_lock:
            if self._rejected.get(key, 0) > now:
                raise NotFound(f"Keycloak has no session {sid} of {sub} with client {client_id}",
                               error="unknown_session")
        if budget is not None:
            if budget[0] <= 0:
                raise NotFound(f"too many new sessions in one batch; report {sid} again",
                               error="verification_deferred")
            budget[0] -= 1
        kc = self.keycloak.user_session(sub, sid)
        if kc is None or client_id not in kc.clients:
            with self._rejected_lock:
                if len(self._rejected) > 10_000:
                    self._rejected = {k: v for k, v in self._rejected.items() if v > now}
                self._rejected[key] = now + NEGATIVE_CACHE_MS
            raise NotFound(f"Keycloak has no session {sid} of {sub} with client {client_id}",
                           error="unknown_session")
        if session is None:
            policy = self.policy()
            # Login is the first counted activity; Keycloak's lastAccess is not used,
            # because token refreshes move it (NIST SP 800-63B §7.2).
            self.store.create_session(SessionRecord(
                sid=sid, sub=kc.sub, started_at=kc.started_at, last_activity_at=kc.started_at,
                deadline=policy.deadline(kc.started_at, kc.started_at), clients=(client_id,)))
        else:
            self.store.add_client(sid, client_id)
        created = self.store.get_session(sid)
        assert created is not None
        if created.sub != sub:
            raise NotFound(f"no session {sid} for that sub", error="unknown_session")
        return created

    def status(self, client_id: str, sid: str) -> dict[str, Any]:
        """``GET /v1/sessions/{sid}``: a read, never activity."""
        session = self.store.get_session(sid)
        if session is None or client_id not in session.clients:
            raise NotFound(f"no session {sid} visible to client {client_id}")
        policy = self.policy()
        app, app_idle = self._app_clock(client_id, sid, policy)
        return tracker.view(session, policy, self.clock.now_ms(), app, app_idle)

    def logout(self, client_id: str, sid: str) -> dict[str, Any]:
        """``DELETE /v1/sessions/{sid}``: the user logged out; end it everywhere now."""
        session = self.store.get_session(sid)
        if session is None or client_id not in session.clients:
            raise NotFound(f"no session {sid} visible to client {client_id}")
        session = self.store.request_termination(sid, "user_logout", self.clock.now_ms())
        assert session is not None
        self._sweep_soon()
        return tracker.view(session, self.policy(), self.clock.now_ms())

    def render_metrics(self) -> str:
        gauges: list[tuple[str, dict[str, str], float]] = [
            ("oidc_idle_sessions", {"state": state}, self.store.count_sessions(state))
            for state in ("active", "terminating", "terminated")]
        for client, st in self.store.outbox_stats().items():
            for state in ("pending", "delivered", "dead"):
                gauges.append(("oidc_idle_outbox", {"client": client, "state": state}, st[state]))
        return self.metrics.render(gauges)

    def watch_logouts(self) -> int:
        """Sessions ended at Keycloak itself (its account console, an app without
        this plugin) are ended here too: audited, and every app told with retries,
        where Keycloak's own back-channel logout went out once."""
        if self._logout_cursor is None:
            self._logout_cursor = self.clock.now_ms() - 60_000
        try:
            events = self.keycloak.logout_events(self._logout_cursor)
        except KeycloakError as exc:
            if not self._logout_warned:
                log.warning("cannot read Keycloak's logout events: %s", exc.description)
                self._logout_warned = True
            return 0
        ended = 0
        for at, sid in events:
            rec = self.store.get_session(sid)
            if rec is not None and rec.state == ACTIVE and rec.reason is None:
                self.store.request_termination(sid, "keycloak_logout", self.clock.now_ms())
                log.info("sid=%s was logged out at Keycloak at %s", sid, iso_ms(at))
                ended += 1
            self._logout_cursor = max(self._logout_cursor, at)
        if ended:
            self._sweep_soon()
        return ended

    # -- background -------------------------------------------------------
    def _sweep_soon(self) -> None:
        """Sweep now rather than at the next tick (a logout is due at once)."""
        if self._scheduler is not None:
            self._scheduler.modify_job("sweep", next_run_time=_now_dt())

    def sync_audit(self) -> None:
        if self.sink is not None:
            self.sink.sync()

    def start(self, *, sweep_interval_ms: int, policy_refresh_ms: int,
              policy_refresh: Callable[[], None] | None = None) -> None:
        self.sync_audit()  # the JSON-lines copy catches up after a crash
        sched = BackgroundScheduler(timezone="UTC", job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        sched.add_job(self._sweep_job, "interval", seconds=sweep_interval_ms / 1000,
                      id="sweep", next_run_time=_now_dt())
        self._stop = threading.Event()
        self._dispatcher = threading.Thread(target=self.notifier.run, args=(self._stop,),
                                            name="oidc-idle-dispatcher", daemon=True)
        self._dispatcher.start()
        sched.add_job(self.watch_logouts, "interval", seconds=2, id="logouts")
        if policy_refresh is not None:
            sched.add_job(policy_refresh, "interval", seconds=policy_refresh_ms / 1000,
                          id="policy")
        sched.start()
        self._scheduler = sched

    def _sweep_job(self) -> None:
        try:
            self.enforcer.sweep()
        except Exception:
            log.exception("sweep failed; the next one will try again")

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
            self._stop.set()
            self.notifier.wake()
            self._dispatcher.join(timeout=10)
        self.enforcer.close()
        self.notifier.close()
        self.sync_audit()


def _now_dt() -> datetime:
    return datetime.fromtimestamp(time.time(), tz=UTC)
