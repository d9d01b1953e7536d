"""Shared pieces of the benchmarks: a Keycloak (booted or given), a worker
process served as in production, percentiles, results."""

from __future__ import annotations

import json
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oidc_idle import devkeycloak  # noqa: E402
from oidc_idle.cli import realm_files  # noqa: E402
from oidc_idle.demo.stack import Proc, start_worker, worker_env  # noqa: E402
from oidc_idle.policy import Policy  # noqa: E402
from oidc_idle.realm import RealmAdmin  # noqa: E402
from oidc_idle.store.sqlite import SQLiteStore  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def keycloak() -> Iterator[tuple[str, RealmAdmin]]:
    """$OIDC_IDLE_BENCH_KEYCLOAK_URL (admin/admin, demo realm) or a fresh one."""
    url = os.environ.get("OIDC_IDLE_BENCH_KEYCLOAK_URL")
    if url:
        yield url, RealmAdmin(url, "demo", "admin", "admin")
        return
    http, mgmt = free_port(), free_port()
    t0 = time.monotonic()
    inst = devkeycloak.start(name=f"bench-{http}", http_port=http, management_port=mgmt,
                             realm_files=realm_files(None))
    print(f"Keycloak {devkeycloak.KEYCLOAK_VERSION} ready in {time.monotonic() - t0:.1f} s")
    try:
        yield inst.base_url, RealmAdmin(inst.base_url, "demo", "admin", "admin")
    finally:
        devkeycloak.stop(inst.name)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": pct(values, 50), "p99": pct(values, 99),
            "max": max(values) if values else float("nan"),
            "mean": statistics.fmean(values) if values else float("nan")}


def write(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    # Parts run separately (ingest, lag, sweep) add to what is there.
    old = json.loads(path.read_text()) if path.exists() else {}
    data = {**old, "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **data}
    path.write_text(json.dumps(data, indent=2))
    return path


def seed(store: SQLiteStore, n: int, deadline_of: Callable[[int], int],
         clients: tuple[str, ...], sub_of: Callable[[int], str] = lambda i: f"user-{i}"
         ) -> dict[str, int]:
    """``n`` tracked sessions written straight into a worker store: sid -> deadline."""
    deadlines = {f"bench-{uuid.uuid4().hex}": deadline_of(i) for i in range(n)}
    rows = [(sid, sub_of(i), d - 600_000, d - 600_000, d, "active", json.dumps(list(clients)))
            for i, (sid, d) in enumerate(deadlines.items())]
    db = store._db.conn()
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO sessions (sid, sub, started_at, last_activity_at, deadline, "
                   "state, clients) VALUES (?,?,?,?,?,?,?)", rows)
    db.execute("COMMIT")
    return deadlines


def seeded_worker(kc_url: str, admin: RealmAdmin, name: str, policy: Policy, n: int,
                  deadline_of: Callable[[int], int], clients: tuple[str, ...],
                  sub_of: Callable[[int], str] = lambda i: f"user-{i}",
                  ) -> tuple[Path, dict[str, int], Proc, int]:
    """A worker served as `oidc-idle serve` serves it, over a store seeded with ``n``
    sessions, under ``policy`` written into the realm: (run dir, deadlines, process, port)."""
    admin.apply_policy(policy)
    run = Path(tempfile.mkdtemp(prefix=f"oidc-idle-bench-{name}-"))
    store = SQLiteStore(run / "worker.db")
    deadlines = seed(store, n, deadline_of, clients, sub_of)
    store.close()
    port = free_port()
    worker = start_worker(worker_env(keycloak_url=kc_url, realm="demo", port=port, run_dir=run,
                                     OIDC_IDLE_LOG_LEVEL="WARNING"), run / "worker.log")
    return run, deadlines, worker, port
