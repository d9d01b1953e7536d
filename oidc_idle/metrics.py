"""Prometheus metrics in the text exposition format (no extra dependency).

Counters and histograms are kept in process; gauges of stored state (sessions
per state, outbox per app) are read from the store at scrape time, so every
replica reports the same truth.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)

HELP = {
    "oidc_idle_terminations_total": ("counter", "Sessions terminated, by reason."),
    "oidc_idle_keycloak_failures_total": ("counter", "Failed Keycloak deletions (retried)."),
    "oidc_idle_activity_events_total": ("counter", "Activity events ingested, by counted."),
    "oidc_idle_deliveries_total": ("counter",
                                   "Back-channel logout attempts, by client and outcome."),
    "oidc_idle_delivery_latency_seconds": ("histogram",
                                           "Termination to acknowledged logout, per client."),
    "oidc_idle_termination_lag_seconds": ("histogram", "Termination time minus deadline."),
    "oidc_idle_sessions": ("gauge", "Tracked sessions, by state."),
    "oidc_idle_outbox": ("gauge", "Back-channel notifications, by client and state."),
}

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._hist: dict[str, dict[Labels, list[float]]] = defaultdict(dict)

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters[name]
            series[key] = series.get(key, 0.0) + value

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._hist[name]
            # buckets..., +Inf count, sum
            data = series.setdefault(key, [0.0] * (len(LATENCY_BUCKETS) + 2))
            for i, bound in enumerate(LATENCY_BUCKETS):
                if value <= bound:
                    data[i] += 1
            data[-2] += 1
            data[-1] += value

    def render(self, gauges: Iterable[tuple[str, dict[str, str], float]] = ()) -> str:
        lines: list[str] = []
        seen: set[str] = set()

        def head(name: str) -> None:
            if name not in seen:
                seen.add(name)
                kind, text = HELP.get(name, ("untyped", name))
                lines.append(f"# HELP {name} {text}")
                lines.append(f"# TYPE {name} {kind}")

        with self._lock:
            for name, series in sorted(self._counters.items()):
                head(name)
                for key, value in sorted(series.items()):
                    lines.append(f"{name}{_labels(key)} {value:g}")
            for name, hseries in sorted(self._hist.items()):
                head(name)
                for key, data in sorted(hseries.items()):
                    for bound, count in zip(LATENCY_BUCKETS, data, strict=False):
                        lk = (*key, ("le", f"{bound:g}"))
                        lines.append(f"{name}_bucket{_labels(lk)} {count:g}")
                    lines.append(f"{name}_bucket{_labels((*key, ('le', '+Inf')))} {data[-2]:g}")
                    lines.append(f"{name}_count{_labels(key)} {data[-2]:g}")
                    lines.append(f"{name}_sum{_labels(key)} {data[-1]:g}")
        for name, labels, value in gauges:
            head(name)
            lines.append(f"{name}{_labels(tuple(sorted(labels.items())))} {value:g}")
        return "\n".join(lines) + "\n"
