"""``oidc-idle demo``: everything on loopback, stopped by Ctrl-C."""

from __future__ import annotations

import signal
import tempfile
import threading
from pathlib import Path

from .. import devkeycloak
from ..cli import realm_files
from ..policy import Policy
from ..realm import RealmAdmin
from .apps import APPS
from .stack import Proc, start_app, start_worker, worker_env

WORKER_PORT = 8780


def run_demo(*, idle_timeout_ms: int, realm_dir: str | None, keycloak_port: int) -> int:
    files = realm_files(realm_dir)
    run_dir = Path(tempfile.mkdtemp(prefix="oidc-idle-demo-"))
    print(f"Starting Keycloak {devkeycloak.KEYCLOAK_VERSION} on 127.0.0.1:{keycloak_port} "
          "(the first run fetches it with Maven and takes a minute or two)...", flush=True)
    kc = devkeycloak.start(name="demo", http_port=keycloak_port,
                           management_port=keycloak_port + 920, realm_files=files)
    procs: list[Proc] = []
    try:
        lead = min(120_000, max(1000, idle_timeout_ms // 3 // 1000 * 1000))
        policy = Policy(idle_timeout_ms=idle_timeout_ms, warning_lead_ms=lead,
                        absolute_lifetime_ms=max(12 * 3_600_000, idle_timeout_ms))
        admin = RealmAdmin(kc.base_url, "demo", kc.admin_user, kc.admin_password)
        admin.apply_policy(policy)
        issuer = f"{kc.base_url}/realms/demo"
        worker_url = f"http://127.0.0.1:{WORKER_PORT}"
        procs.append(start_worker(
            worker_env(keycloak_url=kc.base_url, realm="demo", port=WORKER_PORT,
                       run_dir=run_dir), run_dir / "worker.log"))
        for client_id, meta in APPS.items():
            admin.register_client(client_id, f"http://127.0.0.1:{meta['port']}")
            procs.append(start_app(client_id, port=meta["port"], issuer=issuer,
                                   worker_url=worker_url,
                                   session_db=run_dir / f"{client_id}.db",
                                   log=run_dir / f"{client_id}.log"))
        print(f"""
oidc-idle demo is running (idle timeout {idle_timeout_ms / 1000:g} s,
warning {lead / 1000:g} s before the deadline).

  Patient portal  http://127.0.0.1:{APPS['patient-portal']['port']}/
  Admin console   http://127.0.0.1:{APPS['admin-console']['port']}/
  Worker          {worker_url}/readyz
  Keycloak        {kc.base_url}/  (admin console: {kc.admin_user} / {kc.admin_password})

  Sign in as  alice / alice-demo-pw   (also bob, carol, dave: <name>-demo-pw)

Open both apps, work in one, then leave both alone: at the deadline the worker
ends the Keycloak session and both apps show the signed-out page.
Audit trail: {run_dir / 'audit.jsonl'}   Logs: {run_dir}
Press Ctrl-C to stop everything.
""", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        # A shell's background job starts with SIGINT ignored; Ctrl-C must stop us.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            while not stop.wait(1.0):
                for p in procs:
                    if p.popen.poll() is not None:
                        print(f"{p.name} exited ({p.popen.returncode}); see {p.log}")
                        stop.set()
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        print("stopping...", flush=True)
        for p in reversed(procs):
            p.stop()
        devkeycloak.stop("demo")
