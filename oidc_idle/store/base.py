"""The session store interface. Backends: ``sqlite`` (embedded default).

A backend keeps, per SSO session, the idle clock and its state machine
(``active`` → ``terminating`` → ``terminated``), the durable logout outbox, the
hash-chained audit trail, the worker's signing keys and what the worker knows
of each relying party. Every state change that must happen exactly once
(claiming a due session, finishing its termination together with its audit
record and outbox rows) is one atomic operation of the backend.

The sweep reads only what is due (an index on the deadline), never the table.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

ACTIVE = "active"
TERMINATING = "terminating"
TERMINATED = "terminated"


@dataclass(frozen=True)
class SessionRecord:
    sid: str
    sub: str
    started_at: int
    last_activity_at: int
    deadline: int
    state: str = ACTIVE
    clients: tuple[str, ...] = ()
    reason: str | None = None
    lease_owner: str | None = None
    lease_until: int | None = None
    attempts: int = 0
    terminated_at: int | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class ClientRecord:
    client_id: str
    backchannel_url: str | None
    service_account_sub: str | None
    fetched_at: int
    idle_timeout_ms: int | None = None  # a stricter per-app idle timeout, if any


@dataclass(frozen=True)
class AppClock:
    """One app's own idle clock inside an SSO session (a stricter per-app policy)."""

    sid: str
    client_id: str
    last_activity_at: int
    deadline: int
    state: str = ACTIVE  # active | ended
    ended_at: int | None = None


@dataclass(frozen=True)
class Notification:
    """One back-channel logout owed to one relying party for one session."""

    id: int
    sid: str
    sub: str
    client_id: str
    url: str
    created_at: int
    expires_at: int
    next_attempt_at: int
    attempts: int = 0
    state: str = "pending"
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: int | None = None
    history: tuple[dict[str, Any], ...] = ()  # failed attempts so far


@dataclass(frozen=True)
class NewNotification:
    client_id: str
    url: str


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    record: dict[str, Any] = field(default_factory=dict)


class SessionStore(abc.ABC):
    """Abstract store. All instants are epoch milliseconds (UTC)."""

    # -- sessions ---------------------------------------------------------
    @abc.abstractmethod
    def get_session(self, sid: str) -> SessionRecord | None: ...

    @abc.abstractmethod
    def create_session(self, record: SessionRecord) -> bool:
        """Insert if no session with that sid exists; False if one did."""

    @abc.abstractmethod
    def add_client(self, sid: str, client_id: str) -> None: ...

    @abc.abstractmethod
    def record_activity(self, sid: str, at: int, deadline: int, now: int) -> bool:
        """Move the clock forward, atomically, only if the session is still alive.

        Applies iff state is active, ``now < current deadline`` (activity after
        the deadline never revives) and ``at > last_activity_at`` (the clock
        only moves forward). Returns whether it applied.
        """

    @abc.abstractmethod
    def claim_due(self, now: int, owner: str, lease_ms: int, limit: int) -> list[SessionRecord]:
        """Atomically move due sessions to ``terminating`` under a lease.

        Due: active with ``deadline <= now``, or terminating whose lease ran out
        (a crashed sweep, or a Keycloak retry whose backoff has passed).
        """

    @abc.abstractmethod
    def reapply_policy(self, idle_timeout_ms: int, absolute_lifetime_ms: int, now: int) -> int:
        """Recompute the deadline of every live session under a changed policy.

        Sessions still alive at ``now`` get ``min(last activity + idle, start +
        absolute)``; one that the new policy puts in the past is due at the next
        sweep. A session already past its deadline is never revived. Returns how
        many deadlines changed.
        """

    @abc.abstractmethod
    def request_termination(self, sid: str, reason: str, now: int) -> SessionRecord | None:
        """Make an active session due now (user logout). Returns the record."""

    @abc.abstractmethod
    def defer_termination(self, sid: str, owner: str, retry_at: int, error: str) -> None:
        """Keycloak failed: keep ``terminating`` and try again at ``retry_at``."""

    @abc.abstractmethod
    def finish_termination(
        self,
        sid: str,
        owner: str,
        now: int,
        audit: dict[str, Any],
        notifications: Iterable[NewNotification],
        notification_ttl_ms: int,
    ) -> int | None:
        """Mark terminated, append the audit record and the outbox rows, atomically.

        Only the lease holder may finish; returns the audit seq, or None if the
        lease was lost (another replica finished it: exactly once).
        """

    @abc.abstractmethod
    def count_sessions(self, state: str | None = None) -> int: ...

    # -- per-app clocks -----------------------------------------------------
    @abc.abstractmethod
    def get_app_clock(self, sid: str, client_id: str) -> AppClock | None: ...

    @abc.abstractmethod
    def touch_app_clock(self, sid: str, client_id: str, at: int, deadline: int, now: int,
                        fresh_auth_at: int | None = None) -> AppClock:
        """Start, move forward, or (after a re-authentication newer than its end)
        restart an app's clock; never revive one whose deadline passed otherwise."""

    @abc.abstractmethod
    def end_due_app_clocks(
        self, now: int, limit: int,
        build: Callable[[AppClock, SessionRecord, int],
                        tuple[dict[str, Any], NewNotification | None]],
        notification_ttl_ms: int,
    ) -> int:
        """End every due app clock of a live session, each with its audit record and
        its one outbox row, in one transaction (exactly once). Returns how many."""

    # -- outbox -----------------------------------------------------------
    @abc.abstractmethod
    def claim_notifications(self, now: int, lease_ms: int, limit: int) -> list[Notification]: ...

    @abc.abstractmethod
    def notification_delivered(self, nid: int, now: int, status: int,
                               audit: dict[str, Any]) -> bool: ...

    @abc.abstractmethod
    def notification_retry(self, nid: int, next_at: int, status: int | None, error: str,
                           attempt: dict[str, Any]) -> None:
        """Record a failed attempt (kept in the row's history) and when to try again."""

    @abc.abstractmethod
    def notification_dead(
        self, nid: int, now: int, status: int | None, error: str, audit: dict[str, Any]
    ) -> bool: ...

    @abc.abstractmethod
    def notifications_for(self, sid: str) -> list[Notification]: ...

    # -- audit ------------------------------------------------------------
    @abc.abstractmethod
    def append_audit(self, record: dict[str, Any]) -> int: ...

    @abc.abstractmethod
    def audit_entries(self, after_seq: int = 0) -> Iterator[AuditEntry]: ...

    # -- relying parties --------------------------------------------------
    @abc.abstractmethod
    def get_client(self, client_id: str) -> ClientRecord | None: ...

    @abc.abstractmethod
    def put_client(self, record: ClientRecord) -> None: ...

    # -- signing keys -----------------------------------------------------
    @abc.abstractmethod
    def signing_keys(self) -> list[dict[str, Any]]:
        """All keys, newest first: ``{kid, private_jwk, created_at, active}``."""

    @abc.abstractmethod
    def add_signing_key(self, kid: str, private_jwk: dict[str, Any], now: int,
                        keep: int = 2) -> None:
        """Add a key; only the ``keep`` newest stay published (active)."""

    @abc.abstractmethod
    def outbox_stats(self) -> dict[str, dict[str, Any]]:
        """Per client: ``pending``, ``delivered``, ``dead``, ``last_delivered_at``."""

    # -- health -----------------------------------------------------------
    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StoreError when the store cannot serve."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""
