"""The enforcer: a sweep that ends every due session, exactly once.

HIPAA 45 CFR 164.312(a)(2)(iii) asks for automatic logoff; NIST SP 800-53
AC-12 for *termination* of the session, not hiding a page. So a due session is
deleted at Keycloak (its refresh tokens die), audited, and each of its apps is
owed a back-channel logout (the outbox; see ``notifier``).

Exactly once: ``claim_due`` moves due sessions to ``terminating`` under a
lease, atomically; only the lease holder can ``finish_termination``, which
writes the state, the audit record and the outbox rows in one transaction. A
sweep that dies mid-way leaves ``terminating`` rows whose lease runs out and
which the next sweep claims again. Keycloak deletion is idempotent (404 is
success), so a repeat after a crash is harmless.

If Keycloak is down the session stays ``terminating`` with a backed-off
lease; the API reports it dead meanwhile (fail closed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .clients import ClientRegistry
from .clock import Clock, iso_ms
from .errors import KeycloakError
from .keycloak import CLIENT_IDLE_ATTR, Keycloak
from .metrics import Metrics
from .policy import Policy
from .store.base import AppClock, NewNotification, SessionRecord, SessionStore

log = logging.getLogger("oidc_idle.enforcer")

REASON_TYPES = {
    "idle_timeout": "automatic_logoff",
    "app_idle_timeout": "app_idle_timeout",
    "absolute_timeout": "absolute_timeout",
    "user_logout": "user_logout",
    "admin_logout": "admin_logout",
    "keycloak_logout": "user_logout",
}


def termination_reason(rec: SessionRecord, policy: Policy) -> str:
    if rec.reason:
        return rec.reason
    if rec.deadline >= rec.started_at + policy.absolute_lifetime_ms:
        return "absolute_timeout"
    return "idle_timeout"


def keycloak_retry_delay_ms(attempts: int) -> int:
    """Backoff for Keycloak deletion: 1 s, 2 s, 4 s, then every 5 s, so that a
    session is deleted within seconds of Keycloak's return (it is reported dead
    to every app meanwhile)."""
    return min(5_000, 1000 * 2 ** max(0, attempts - 1))


class Enforcer:
    def __init__(self, *, store: SessionStore, keycloak: Keycloak, clients: ClientRegistry,
                 policy: Callable[[], Policy], clock: Clock, owner: str, realm: str,
                 issuer: str, lease_ms: int, notification_ttl_ms: int,
                 on_audit: Callable[[], Any] = lambda: None, parallelism: int = 4,
                 metrics: Metrics | None = None) -> None:
        self._metrics = metrics or Metrics()
        self._store = store
        self._kc = keycloak
        self._clients = clients
        self._policy = policy
        self._clock = clock
        self._owner = owner
        self._realm = realm
        self._issuer = issuer
        self._lease = lease_ms
        self._ttl = notification_ttl_ms
        self._on_audit = on_audit
        self._parallelism = parallelism
        self._pool = ThreadPoolExecutor(parallelism, thread_name_prefix="oidc-idle-terminate")

    def sweep(self, limit: int = 1000) -> int:
        """Terminate what is due, in small claims, until nothing is due; returns how
        many were finished. Claiming a little at a time keeps the lag of a session
        that falls due during a long sweep to one claim, not one sweep interval."""
        ended_apps = self._store.end_due_app_clocks(self._clock.now_ms(), limit,
                                                    self._app_termination, self._ttl)
        if ended_apps:  # counted only once the transaction holding them committed
            self._metrics.inc("oidc_idle_terminations_total", ended_apps,
                              reason="app_idle_timeout")
            self._on_audit()
        finished, chunk = 0, self._parallelism * 4
        for _ in range(max(1, limit // chunk)):
            claimed = self._store.claim_due(self._clock.now_ms(), self._owner, self._lease,
                                            chunk)
            if not claimed:
                break
            finished += sum(1 for ok in self._pool.map(self._terminate, claimed) if ok)
        return finished

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _app_termination(self, clock: AppClock, session: SessionRecord, now: int
                         ) -> tuple[dict[str, Any], NewNotification | None]:
        """The audit record and the one logout of an app whose own, stricter idle
        timeout ran out; the SSO session and the other apps go on. Runs inside the
        store's transaction: builds, has no side effects."""
        policy = self._policy()
        client = self._store.get_client(clock.client_id)
        note = (NewNotification(clock.client_id, client.backchannel_url)
                if client is not None and client.backchannel_url else None)
        app_idle = client.idle_timeout_ms if client is not None else None
        return self._record(
            event="session.app_terminated", reason="app_idle_timeout", deadline=clock.deadline,
            now=now, last_activity_at=clock.last_activity_at, session=session,
            policy={**policy.as_audit(), "client": clock.client_id,
                    "client_attribute": CLIENT_IDLE_ATTR,
                    "client_idle_timeout_s": (app_idle or 0) / 1000},
            outcome={"keycloak": {"result": "kept: the SSO session goes on"},
                     "notify": [note.client_id] if note else [],
                     "no_backchannel_url": [] if note else [clock.client_id]},
            clients=[clock.client_id]), note

    def _record(self, *, event: str, reason: str, deadline: int, now: int,
                last_activity_at: int, session: SessionRecord, policy: dict[str, Any],
                outcome: dict[str, Any], clients: list[str]) -> dict[str, Any]:
        """An audit record with the content NIST SP 800-53 AU-3 asks for: what type
        of event, when (deadline and termination, UTC ms), where, source (the
        policy), outcome, and identity."""
        return {
            "event": event,
            "type": REASON_TYPES.get(reason, reason),
            "reason": reason,
            "deadline": iso_ms(deadline),
            "deadline_ms": deadline,
            "terminated_at": iso_ms(now),
            "terminated_at_ms": now,
            "lag_ms": now - deadline,
            "last_activity_at": iso_ms(last_activity_at),
            "started_at": iso_ms(session.started_at),
            "where": {"realm": self._realm, "issuer": self._issuer, "worker": self._owner},
            "source": {"policy": policy},
            "outcome": outcome,
            "identity": {"sub": session.sub, "sid": session.sid, "clients": clients},
        }

    def _terminate(self, rec: SessionRecord) -> bool:
        try:
            return self._terminate_one(rec)
        except Exception:  # one bad session must not stop the sweep; its lease will run out
            log.exception("termination of sid=%s failed; it will be retried", rec.sid)
            return False

    def _terminate_one(self, rec: SessionRecord) -> bool:
        policy = self._policy()
        kc_clients: tuple[str, ...] = ()
        try:
            # Read the session's clients *before* deleting it: afterwards Keycloak
            # no longer knows who took part, and every app must be told.
            kc_session = self._kc.user_session(rec.sub, rec.sid)
            if kc_session is not None:
                kc_clients = kc_session.clients
            result = self._kc.delete_session(rec.sid)
        except KeycloakError as exc:
            retry_at = self._clock.now_ms() + keycloak_retry_delay_ms(rec.attempts)
            self._store.defer_termination(rec.sid, self._owner, retry_at, exc.description)
            self._metrics.inc("oidc_idle_keycloak_failures_total")
            log.warning("Keycloak refused or unreachable for sid=%s (attempt %d): %s; "
                        "retry at %s", rec.sid, rec.attempts, exc.description, iso_ms(retry_at))
            return False
        now = self._clock.now_ms()
        clients = sorted(set(rec.clients) | set(kc_clients))
        notifications, unreachable = [], []
        for client_id in clients:
            try:
                info = self._clients.get(client_id)
            except Exception as exc:  # registry unreachable and nothing cached
                info = None
                log.warning("no record of client %s: %s", client_id, exc)
            if info is not None and info.backchannel_url:
                notifications.append(NewNotification(client_id, info.backchannel_url))
            else:
                unreachable.append(client_id)
        reason = termination_reason(rec, policy)
        record = self._record(
            event="session.terminated", reason=reason, deadline=rec.deadline, now=now,
            last_activity_at=rec.last_activity_at, session=rec, policy=policy.as_audit(),
            outcome={"keycloak": {"result": result, "attempts": rec.attempts},
                     "notify": [n.client_id for n in notifications],
                     "no_backchannel_url": unreachable},
            clients=clients)
        seq = self._store.finish_termination(rec.sid, self._owner, now, record, notifications,
                                             self._ttl)
        if seq is None:
            log.info("sid=%s was finished by another sweep; nothing written", rec.sid)
            return False
        self._on_audit()  # the JSON-lines copy, and the notifier: owed logouts go out now
        self._metrics.inc("oidc_idle_terminations_total", reason=reason)
        self._metrics.observe("oidc_idle_termination_lag_seconds", (now - rec.deadline) / 1000)
        log.info("terminated sid=%s sub=%s reason=%s deadline=%s lag_ms=%d keycloak=%s",
                 rec.sid, rec.sub, reason, iso_ms(rec.deadline), now - rec.deadline, result)
        return True
