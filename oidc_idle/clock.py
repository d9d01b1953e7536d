"""Clocks. The core takes time as an argument or from an injected ``Clock``.

All instants inside oidc-idle are integers: milliseconds since the Unix epoch,
UTC. Integer arithmetic keeps "deadline = last activity + idle timeout" exact,
which the audit trail must prove (45 CFR 164.312(b), NIST AU-3 "when").
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the epoch, UTC."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class FakeClock:
    """A clock the tests move by hand."""

    def __init__(self, start_ms: int = 1_800_000_000_000) -> None:
        self._now = start_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            return self._now

    def advance(self, ms: int) -> None:
        with self._lock:
            self._now += ms

    def set(self, ms: int) -> None:
        with self._lock:
            self._now = ms


def iso_ms(ms: int) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-12-03T16:00:00.123Z``."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_iso_ms(text: str) -> int:
    """Parse an RFC 3339 timestamp (with offset or ``Z``) to epoch milliseconds."""
    if not isinstance(text, str) or "T" not in text:
        raise ValueError("not an RFC 3339 timestamp")
    dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("timestamp has no time zone offset")
    return round(dt.timestamp() * 1000)
