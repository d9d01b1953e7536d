"""The idle policy, read from the realm (one source of truth).

HIPAA 45 CFR 164.312(a)(2)(iii) (automatic logoff) leaves the time to the
covered entity; typical healthcare policy is 15 minutes or less. NIST SP 800-53
AC-12(3) asks for a warning before termination; NIST SP 800-63B §7.2 says
only session *activity* resets the inactivity timer.

The policy is stored as realm attributes so that Keycloak holds the one policy
every app honours::

    oidcIdle.idleTimeout       seconds (default 900)
    oidcIdle.warningLead       seconds before the deadline to warn (default 120)
    oidcIdle.absoluteLifetime  seconds from login (default 43200)
    oidcIdle.countedKinds      comma-separated subset of COUNTED_KINDS

Everything here is pure: parsing, validation, deadlines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import PolicyError

#: Activity that shows a person is at the keyboard (NIST SP 800-63B §7.2).
COUNTED_KINDS = frozenset({"keypress", "click", "scroll", "touch", "navigation", "request"})
#: Traffic a tab makes on its own; it never resets the clock.
PASSIVE_KINDS = frozenset({"poll", "heartbeat", "token_refresh"})
ALL_KINDS = COUNTED_KINDS | PASSIVE_KINDS

ATTR_IDLE = "oidcIdle.idleTimeout"
ATTR_WARN = "oidcIdle.warningLead"
ATTR_ABSOLUTE = "oidcIdle.absoluteLifetime"
ATTR_KINDS = "oidcIdle.countedKinds"


@dataclass(frozen=True)
class Policy:
    """Durations in milliseconds."""

    idle_timeout_ms: int = 15 * 60_000
    warning_lead_ms: int = 2 * 60_000
    absolute_lifetime_ms: int = 12 * 3_600_000
    counted_kinds: frozenset[str] = field(default=COUNTED_KINDS)

    def __post_init__(self) -> None:
        if self.idle_timeout_ms <= 0:
            raise PolicyError(f"{ATTR_IDLE} must be > 0 seconds", attribute=ATTR_IDLE)
        if not 0 <= self.warning_lead_ms < self.idle_timeout_ms:
            raise PolicyError(
                f"{ATTR_WARN} must be >= 0 and shorter than {ATTR_IDLE} "
                f"({self.warning_lead_ms} ms >= {self.idle_timeout_ms} ms)",
                attribute=ATTR_WARN,
            )
        if self.absolute_lifetime_ms < self.idle_timeout_ms:
            raise PolicyError(
                f"{ATTR_ABSOLUTE} must not be shorter than {ATTR_IDLE}", attribute=ATTR_ABSOLUTE
            )
        unknown = set(self.counted_kinds) - COUNTED_KINDS
        if unknown or not self.counted_kinds:
            raise PolicyError(
                f"{ATTR_KINDS}: unknown or passive kinds {sorted(unknown)}; "
                f"allowed: {sorted(COUNTED_KINDS)}",
                attribute=ATTR_KINDS,
            )

    def deadline(self, started_at: int, last_activity_at: int) -> int:
        """The moment of death: idle deadline, capped by the absolute lifetime."""
        return min(last_activity_at + self.idle_timeout_ms, started_at + self.absolute_lifetime_ms)

    def warn_at(self, deadline: int) -> int:
        return deadline - self.warning_lead_ms

    def counts(self, kind: str) -> bool:
        return kind in self.counted_kinds

    def as_audit(self) -> dict[str, object]:
        return {
            "idle_timeout_s": self.idle_timeout_ms / 1000,
            "warning_lead_s": self.warning_lead_ms / 1000,
            "absolute_lifetime_s": self.absolute_lifetime_ms / 1000,
            "counted_kinds": sorted(self.counted_kinds),
        }

    @classmethod
    def from_realm_attributes(cls, attributes: Mapping[str, object]) -> Policy:
        """Build from Keycloak realm attributes; a bad value names its attribute."""
        defaults = cls()

        def seconds(attr: str, default_ms: int) -> int:
            raw = attributes.get(attr)
            if raw is None or raw == "":
                return default_ms
            try:
                value = float(str(raw))
            except ValueError:
                raise PolicyError(f"{attr}: expected seconds, got {raw!r}",
                                  attribute=attr) from None
            if value != value or value in (float("inf"), float("-inf")):
                raise PolicyError(f"{attr}: expected seconds, got {raw!r}", attribute=attr)
            return round(value * 1000)

        kinds_raw = attributes.get(ATTR_KINDS)
        kinds = defaults.counted_kinds
        if kinds_raw not in (None, ""):
            kinds = frozenset(k.strip() for k in str(kinds_raw).split(",") if k.strip())
        return cls(
            idle_timeout_ms=seconds(ATTR_IDLE, defaults.idle_timeout_ms),
            warning_lead_ms=seconds(ATTR_WARN, defaults.warning_lead_ms),
            absolute_lifetime_ms=seconds(ATTR_ABSOLUTE, defaults.absolute_lifetime_ms),
            counted_kinds=kinds,
        )

    def to_realm_attributes(self) -> dict[str, str]:
        def s(ms: int) -> str:
            return str(ms // 1000) if ms % 1000 == 0 else str(ms / 1000)

        return {
            ATTR_IDLE: s(self.idle_timeout_ms),
            ATTR_WARN: s(self.warning_lead_ms),
            ATTR_ABSOLUTE: s(self.absolute_lifetime_ms),
            ATTR_KINDS: ",".join(sorted(self.counted_kinds)),
        }
