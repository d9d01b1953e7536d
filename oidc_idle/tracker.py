"""The tracker: which activity resets the idle clock, and how. Pure.

Rules (DESIGN.md, Tracker; NIST SP 800-63B §7.2: only session *activity*
resets the inactivity timer, and a token is no evidence that a user is present):

- only counted kinds move the clock; passive kinds (``poll``, ``heartbeat``,
  ``token_refresh``) are accepted and never do; an unknown kind is rejected;
- ``last_activity_at`` only moves forward;
- a timestamp beyond the allowed clock skew in the future is rejected; one
  within it is clamped to now (never trusted to lengthen the session);
- activity that arrives at or after the deadline never revives the session:
  the deadline, not the sweep, is the moment of death.

The store applies the move with a compare-and-set (``record_activity``), so
the rules hold under concurrent reports and sweeps as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .clock import iso_ms, parse_iso_ms
from .errors import InvalidInput
from .policy import ALL_KINDS, Policy
from .store.base import ACTIVE, TERMINATED, TERMINATING, AppClock, SessionRecord

MAX_BATCH = 1000
MAX_ID_LEN = 256


@dataclass(frozen=True)
class ActivityEvent:
    sid: str
    sub: str
    kind: str
    at: int  # epoch ms, already clamped to <= now
    auth_time: int | None = None  # when the user last authenticated in this app (login)


def parse_batch(payload: Any, now: int, clock_skew_ms: int) -> list[ActivityEvent]:
    """Validate a whole ``POST /v1/activity`` body; any bad event rejects the batch.

    Rejecting the whole batch keeps "bad input changes nothing" simple to
    reason about: nothing is applied unless everything parsed.
    """
    if not isinstance(payload, dict):
        raise InvalidInput("body must be a JSON object with an 'events' array")
    events = payload.get("events")
    if not isinstance(events, list):
        raise InvalidInput("'events' must be an array of {sid, sub, kind, at}")
    if not events:
        raise InvalidInput("'events' is empty")
    if len(events) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} events per batch, got {len(events)}")
    return [_parse_event(i, e, now, clock_skew_ms) for i, e in enumerate(events)]


def _parse_event(i: int, raw: Any, now: int, skew: int) -> ActivityEvent:
    where = f"events[{i}]"
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: must be an object", pointer=f"/events/{i}")
    for key in ("sid", "sub", "kind"):
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            raise InvalidInput(f"{where}.{key}: required, a non-empty string",
                               pointer=f"/events/{i}/{key}")
        if len(value) > MAX_ID_LEN:
            raise InvalidInput(f"{where}.{key}: longer than {MAX_ID_LEN} characters",
                               pointer=f"/events/{i}/{key}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: not text anyone can store
            raise InvalidInput(f"{where}.{key}: not valid Unicode text",
                               pointer=f"/events/{i}/{key}") from None
    kind = raw["kind"]
    if kind not in ALL_KINDS:
        raise InvalidInput(
            f"{where}.kind: unknown activity kind {kind!r}; known: {sorted(ALL_KINDS)}",
            error="unknown_kind", pointer=f"/events/{i}/kind")
    at_raw = raw.get("at")
    if at_raw is None:
        at = now
    else:
        try:
            at = parse_iso_ms(at_raw)
        except (ValueError, TypeError, OverflowError):
            raise InvalidInput(f"{where}.at: expected an RFC 3339 timestamp with offset, "
                               f"got {at_raw!r}", pointer=f"/events/{i}/at") from None
        if at > now + skew:
            raise InvalidInput(
                f"{where}.at: {at_raw} is {at - now} ms in the future, beyond the allowed "
                f"clock skew of {skew} ms", error="future_timestamp", pointer=f"/events/{i}/at")
        at = min(at, now)
    auth_time = None
    if raw.get("auth_time") is not None:
        try:
            auth_time = min(parse_iso_ms(raw["auth_time"]), now)
        except (ValueError, TypeError, OverflowError):
            raise InvalidInput(f"{where}.auth_time: expected an RFC 3339 timestamp, got "
                               f"{raw['auth_time']!r}", pointer=f"/events/{i}/auth_time") from None
    return ActivityEvent(raw["sid"], raw["sub"], kind, at, auth_time)


@dataclass(frozen=True)
class Move:
    """What an event would do to a session: ``None`` deadline means no change."""

    counts: bool
    last_activity_at: int | None = None
    deadline: int | None = None


def plan(session: SessionRecord, event: ActivityEvent, policy: Policy, now: int) -> Move:
    """The clock move an event asks for, or none. The store re-checks atomically."""
    if not policy.counts(event.kind):
        return Move(counts=False)
    if effective_state(session, now) != ACTIVE or event.at <= session.last_activity_at:
        return Move(counts=True)
    return Move(True, event.at, policy.deadline(session.started_at, event.at))


def effective_state(session: SessionRecord, now: int) -> str:
    """Fail closed: an active session past its deadline is already dead to the apps."""
    if session.state == ACTIVE and now >= session.deadline:
        return TERMINATING
    return session.state


def view(session: SessionRecord, policy: Policy, now: int,
         app: AppClock | None = None, app_idle_ms: int | None = None) -> dict[str, Any]:
    """The session as the worker API shows it to one app.

    With a stricter per-app policy, that app sees its own deadline (the earlier
    of its own and the session's) and ``app_state``; ``state`` stays the SSO
    session's.
    """
    state = effective_state(session, now)
    deadline, idle_ms, app_state = session.deadline, policy.idle_timeout_ms, None
    if app is not None:
        app_state = "ended" if app.state != ACTIVE or app.deadline <= now else ACTIVE
        deadline = min(deadline, app.deadline)
        idle_ms = app_idle_ms or idle_ms
    alive = state == ACTIVE and app_state in (None, ACTIVE)
    return {
        "sid": session.sid,
        "state": state,
        **({"app_state": app_state} if app_state else {}),
        "alive": alive,
        "last_activity_at": iso_ms(session.last_activity_at),
        "deadline": iso_ms(deadline),
        "warn_at": iso_ms(deadline - min(policy.warning_lead_ms, idle_ms // 2)),
        "seconds_left": max(0.0, (deadline - now) / 1000) if alive else 0.0,
        "idle_timeout_s": idle_ms / 1000,
        **({"terminated_at": iso_ms(session.terminated_at)}
           if state == TERMINATED and session.terminated_at else {}),
    }


__all__ = [
    "TERMINATED",
    "TERMINATING",
    "ActivityEvent",
    "Move",
    "effective_state",
    "parse_batch",
    "plan",
    "view",
]
