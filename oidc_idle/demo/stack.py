"""Processes of a local stack (worker, demo apps), shared by the demo and the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from ..errors import ServiceError


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def wait_http(url: str, proc: subprocess.Popen[bytes] | None, log: Path | None,
              timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise ServiceError(f"process for {url} exited with {proc.returncode}:\n{tail}")
        try:
            if requests.get(url, timeout=1, allow_redirects=False).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise ServiceError(f"{url} did not answer within {timeout_s:.0f} s")


def _spawn(name: str, args: list[str], env: dict[str, str], log: Path, url: str,
           health: str) -> Proc:
    # The children run this very package (not whatever another install points at).
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    with open(log, "ab") as fh:
        popen = subprocess.Popen([sys.executable, *args],
                                 env={**os.environ, "PYTHONPATH": path, **env},
                                 stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wait_http(health, popen, log)
    return Proc(name, popen, url, log, env)


def worker_env(*, keycloak_url: str, realm: str, port: int, run_dir: Path,
               **extra: str) -> dict[str, str]:
    env = {
        "OIDC_IDLE_KEYCLOAK_URL": keycloak_url,
        "OIDC_IDLE_REALM": realm,
        "OIDC_IDLE_CLIENT_ID": "oidc-idle-worker",
        "OIDC_IDLE_CLIENT_SECRET": "worker-demo-secret",
        "OIDC_IDLE_BIND": f"127.0.0.1:{port}",
        "OIDC_IDLE_DB": str(run_dir / "worker.db"),
        "OIDC_IDLE_AUDIT_LOG": str(run_dir / "audit.jsonl"),
        "OIDC_IDLE_INSTANCE": "worker-1",
    }
    env.update(extra)
    return env


def start_worker(env: dict[str, str], log: Path) -> Proc:
    port = env["OIDC_IDLE_BIND"].rsplit(":", 1)[1]
    url = f"http://127.0.0.1:{port}"
    return _spawn("worker", ["-m", "oidc_idle", "serve"], env, log, url, f"{url}/healthz")


def start_app(client_id: str, *, port: int, issuer: str, worker_url: str, session_db: Path,
              log: Path, extra_env: dict[str, str] | None = None) -> Proc:
    url = f"http://127.0.0.1:{port}"
    args = ["-m", "oidc_idle.demo.serve_app", client_id, "--port", str(port),
            "--issuer", issuer, "--worker-url", worker_url, "--session-db", str(session_db)]
    return _spawn(client_id, args, extra_env or {}, log, url,
                  f"{url}/oidc-idle/static/oidc-idle.js")
