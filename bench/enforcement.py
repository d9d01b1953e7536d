"""Benchmarks of the worker's core (issue: the enforcement engine).

(a) ingest: activity events/s through `POST /v1/activity` served as `oidc-idle
    serve` serves it (waitress), batches of 1 and of 100, p50/p99 latency; and
    in the same run Keycloak's refresh-token grant rate on this machine.
(b) lag: 10,000 sessions whose deadlines fall within one minute, against the
    real Keycloak: termination time minus deadline, p50/p99/max.
(c) sweep: 1,000,000 tracked sessions of which 1% are due: time per sweep,
    and bytes per session in the store; the same with 100,000 sessions.

    python bench/enforcement.py [ingest|lag|sweep|all]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
import uuid
from pathlib import Path

import requests
from common import keycloak, seed, seeded_worker, summary, write

from oidc_idle.policy import Policy
from oidc_idle.store.sqlite import SQLiteStore

PORTAL = ("patient-portal", "patient-portal-demo-secret")
POLICY = Policy(idle_timeout_ms=900_000, warning_lead_ms=120_000, absolute_lifetime_ms=43_200_000)


# -- (a) ingestion --------------------------------------------------------------

def _load(args: tuple[str, str, list[str], int, float, int]) -> tuple[int, list[float]]:
    url, token, sids, batch, seconds, seed = args
    http = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    lat: list[float] = []
    sent = 0
    i = seed
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        events = []
        for _ in range(batch):
            sid = sids[i % len(sids)]
            i += 1
            events.append({"sid": sid, "sub": "user-0", "kind": "click"})
        t = time.perf_counter()
        r = http.post(url, json={"events": events}, headers=headers, timeout=30)
        lat.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text[:300]
        sent += batch
    return sent, lat


def _refresh(args: tuple[str, str, str, str, float]) -> int:
    token_url, client_id, secret, refresh_token, seconds = args
    http = requests.Session()
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r = http.post(token_url, data={"grant_type": "refresh_token", "client_id": client_id,
                                       "client_secret": secret,
                                       "refresh_token": refresh_token}, timeout=30)
        assert r.status_code == 200, r.text[:300]
        n += 1
    return n


def bench_ingest(kc_url: str, admin, seconds: float, procs: int) -> dict:
    far = int(time.time() * 1000) + 3_600_000
    # One user for all sessions: the load names sub "user-0".
    _, deadlines, worker, port = seeded_worker(
        kc_url, admin, "ingest", POLICY, 1000, lambda i: far, (PORTAL[0],),
        sub_of=lambda i: "user-0")
    sids = list(deadlines)
    token_url = f"{kc_url}/realms/demo/protocol/openid-connect/token"
    token = requests.post(token_url, data={"grant_type": "client_credentials",
                                           "client_id": PORTAL[0],
                                           "client_secret": PORTAL[1]}).json()["access_token"]
    out: dict = {}
    try:
        for batch in (1, 100):
            url = f"http://127.0.0.1:{port}/v1/activity"
            with mp.Pool(procs) as pool:
                t0 = time.monotonic()
                parts = pool.map(_load, [(url, token, sids, batch, seconds, k * 7919)
                                         for k in range(procs)])
                elapsed = time.monotonic() - t0
            events = sum(p[0] for p in parts)
            lat = [x for p in parts for x in p[1]]
            out[f"batch_{batch}"] = {"events_per_s": events / elapsed,
                                     "requests_per_s": len(lat) / elapsed,
                                     "latency_s": summary(lat)}
    finally:
        worker.stop()
    # Keycloak's refresh-token grant rate: what counting refreshes would cost.
    bench_client = f"bench-refresh-{uuid.uuid4().hex[:6]}"
    kadmin = admin._admin
    cid = kadmin.create_client({"clientId": bench_client, "publicClient": False,
                                "secret": "bench", "directAccessGrantsEnabled": True,
                                "standardFlowEnabled": False})
    try:
        r = requests.post(token_url, data={"grant_type": "password", "client_id": bench_client,
                                           "client_secret": "bench", "username": "alice",
                                           "password": "alice-demo-pw", "scope": "openid"})
        r.raise_for_status()
        refresh_token = r.json()["refresh_token"]
        with mp.Pool(procs) as pool:
            t0 = time.monotonic()
            counts = pool.map(_refresh, [(token_url, bench_client, "bench", refresh_token,
                                          seconds)] * procs)
            elapsed = time.monotonic() - t0
        out["keycloak_refresh_grants_per_s"] = sum(counts) / elapsed
    finally:
        kadmin.delete_client(cid)
    out["ratio_ingest_batch100_to_refresh"] = (out["batch_100"]["events_per_s"]
                                               / out["keycloak_refresh_grants_per_s"])
    out["load"] = {"client_processes": procs, "seconds_each": seconds}
    return out


# -- (b) enforcement lag ------------------------------------------------------------

def bench_lag(kc_url: str, admin, sessions: int, window_s: float) -> dict:
    start = int(time.time() * 1000) + 20_000
    run, _, worker, _ = seeded_worker(
        kc_url, admin, "lag", POLICY, sessions,
        lambda i: start + int(window_s * 1000 * i / sessions), ())
    try:
        end = time.time() + 20 + window_s + 120
        while time.time() < end:
            check = SQLiteStore(run / "worker.db")
            left = check.count_sessions("active") + check.count_sessions("terminating")
            check.close()
            if left == 0:
                break
            time.sleep(1)
    finally:
        worker.stop()
    store = SQLiteStore(run / "worker.db")
    recs = [e.record for e in store.audit_entries() if e.record["event"] == "session.terminated"]
    store.close()
    lags = [r["lag_ms"] / 1000 for r in recs]
    return {"sessions": sessions, "window_s": window_s, "terminated": len(recs),
            "lag_s": summary(lags),
            "keycloak_results": sorted({r["outcome"]["keycloak"]["result"] for r in recs})}


# -- (c) sweep cost ------------------------------------------------------------

def bench_sweep(totals: list[int], due: int) -> dict:
    out = {}
    now = 1_900_000_000_000

    def deadline_of(i: int) -> int:
        return now - 1000 - i if i < due else now + 1 + i % 3_600_000

    for total in totals:
        run = Path(tempfile.mkdtemp(prefix="oidc-idle-bench-sweep-"))
        store = SQLiteStore(run / "worker.db")
        t0 = time.monotonic()
        # `due` sessions past their deadline, the rest spread over the next hour.
        seed(store, total, deadline_of, ("app",))
        seed_s = time.monotonic() - t0
        db = store._db.conn()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        empties = []
        for _ in range(21):  # the sweep that finds nothing due, median of 21
            t = time.perf_counter()
            assert store.claim_due(now - 10_000_000, "bench", 30_000, 1000) == []
            empties.append(time.perf_counter() - t)
        empty_s = sorted(empties)[10]
        sweeps = []
        claimed = 0
        while True:  # sweeps of up to 1000, as the enforcer makes them
            t = time.perf_counter()
            got = store.claim_due(now, "bench", 30_000, 1000)
            if not got:
                break
            sweeps.append(time.perf_counter() - t)
            claimed += len(got)
        store.close()
        out[str(total)] = {"due": due, "claimed": claimed, "seed_s": seed_s,
                           "sweep_with_nothing_due_ms_median_of_21": empty_s * 1000,
                           "claim_1000_due_ms": summary([s * 1000 for s in sweeps]),
                           "all_due_claimed_ms": sum(sweeps) * 1000,
                           "bytes_per_session": pages * page_size / total}
        for p in run.iterdir():
            p.unlink()
        run.rmdir()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("which", nargs="?", default="all", choices=["ingest", "lag", "sweep", "all"])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--totals", default="100000,1000000")
    a = ap.parse_args()
    results: dict = {}
    if a.which in ("sweep", "all"):
        totals = [int(x) for x in a.totals.split(",")]
        results["sweep"] = bench_sweep(totals, due=totals[-1] // 100)
    if a.which in ("ingest", "lag", "all"):
        with keycloak() as (kc_url, admin):
            if a.which in ("ingest", "all"):
                results["ingest"] = bench_ingest(kc_url, admin, a.seconds, a.procs)
            if a.which in ("lag", "all"):
                results["lag"] = bench_lag(kc_url, admin, a.sessions, a.window)
    print()
    if "ingest" in results:
        r = results["ingest"]
        print("(a) activity ingestion through POST /v1/activity (waitress, "
              f"{r['load']['client_processes']} client processes on the same 2 cores)")
        print(f"    {'batch':>6} {'events/s':>10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
        for b in (1, 100):
            x = r[f"batch_{b}"]
            print(f"    {b:>6} {x['events_per_s']:>10.0f} {x['requests_per_s']:>8.0f} "
                  f"{x['latency_s']['p50'] * 1000:>8.1f} {x['latency_s']['p99'] * 1000:>8.1f}")
        print(f"    Keycloak refresh-token grants/s: {r['keycloak_refresh_grants_per_s']:.0f}; "
              f"ingestion (batch 100) / refresh = {r['ratio_ingest_batch100_to_refresh']:.1f}x")
    if "lag" in results:
        r = results["lag"]
        s = r["lag_s"]
        print(f"(b) enforcement lag, {r['sessions']} sessions due within {r['window_s']:g} s: "
              f"p50 {s['p50']:.3f} s, p99 {s['p99']:.3f} s, max {s['max']:.3f} s "
              f"({r['terminated']} terminated)")
    if "sweep" in results:
        print("(c) sweep cost (SQLite, claims of up to 1000 due sessions)")
        for total, x in results["sweep"].items():
            c = x["claim_1000_due_ms"]
            print(f"    {int(total):>9} sessions, {x['due']} due: nothing-due sweep "
                  f"{x['sweep_with_nothing_due_ms_median_of_21']:.2f} ms, claim of 1000 due p50 "
                  f"{c['p50']:.1f} ms (max {c['max']:.1f}), {x['bytes_per_session']:.0f} "
                  "bytes/session")
    path = write("enforcement", {"params": vars(a), **results})
    print(f"written: {path}")
    os._exit(0)


if __name__ == "__main__":
    main()
