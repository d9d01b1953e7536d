"""Fixtures of the integration and e2e rings: a real Keycloak (booted once per
session), real worker and app processes on loopback, real SQLite. No mock of
Keycloak here.

Set ``OIDC_IDLE_TEST_KEYCLOAK_URL`` (admin/admin, realm imported) to reuse a
running Keycloak instead of booting one.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from httpbrowser import Browser
from oidc_idle import devkeycloak
from oidc_idle.cli import realm_files
from oidc_idle.demo.stack import Proc, start_app, start_worker, worker_env
from oidc_idle.policy import Policy
from oidc_idle.realm import RealmAdmin
from oidc_idle.rp.store import RpStore
from oidc_idle.store.sqlite import SQLiteStore

REALM = "demo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str,
             interval_s: float = 0.1) -> Any:
    """Poll until ``predicate()`` is truthy: awaiting an observable event, not a fixed sleep."""
    end = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


class TcpProxy:
    """A loopback TCP forwarder whose path can be cut: a network outage between
    one client (the worker) and a server (Keycloak) that keeps its state."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        lsock = socket.socket()
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", self.port))
        lsock.listen(64)
        self._listener = lsock
        threading.Thread(target=self._accept, args=(lsock,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and break the open ones."""
        with self._lock:
            if self._listener is not None:
                # shutdown() wakes the thread blocked in accept(); close() alone
                # would leave the port listening until that call returns.
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for c in self._conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                    c.close()
            self._conns.clear()

    def _accept(self, lsock: socket.socket) -> None:
        while True:
            try:
                client, _ = lsock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


@dataclass
class KeycloakHandle:
    base_url: str
    admin: RealmAdmin
    admin_user: str = "admin"
    admin_password: str = "admin"

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/realms/{REALM}"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    def new_user(self) -> tuple[str, str, str]:
        name = f"u{uuid.uuid4().hex[:10]}"
        password = f"pw-{uuid.uuid4().hex}"
        kc = self.admin._admin
        uid = kc.create_user({"username": name, "enabled": True, "email": f"{name}@t.example",
                              "emailVerified": True, "firstName": "Test", "lastName": name,
                              "credentials": [{"type": "password", "value": password,
                                               "temporary": False}]})
        return name, password, uid

    def sessions_of(self, user_id: str) -> list[dict[str, Any]]:
        return list(self.admin._admin.get_sessions(user_id))

    def client_token(self, client_id: str, secret: str) -> str:
        r = requests.post(self.token_url, data={"grant_type": "client_credentials",
                                                "client_id": client_id,
                                                "client_secret": secret}, timeout=10)
        r.raise_for_status()
        return str(r.json()["access_token"])


@pytest.fixture(scope="session")
def keycloak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeycloakHandle]:
    url = os.environ.get("OIDC_IDLE_TEST_KEYCLOAK_URL")
    if url:
        yield KeycloakHandle(url, RealmAdmin(url, REALM, "admin", "admin"))
        return
    http, mgmt = free_port(), free_port()
    t0 = time.monotonic()
    inst = devkeycloak.start(name=f"pytest-{http}", http_port=http, management_port=mgmt,
                             realm_files=realm_files(None))
    print(f"\nKeycloak {devkeycloak.KEYCLOAK_VERSION} ready in {time.monotonic() - t0:.1f} s "
          f"at {inst.base_url}")
    try:
        yield KeycloakHandle(inst.base_url, RealmAdmin(inst.base_url, REALM, inst.admin_user,
                                                       inst.admin_password))
    finally:
        devkeycloak.stop(inst.name)


APP_SECRETS = {"patient-portal": "patient-portal-demo-secret",
               "admin-console": "admin-console-demo-secret"}


@dataclass
class Stack:
    kc: KeycloakHandle
    run_dir: Path
    policy: Policy
    worker: Proc
    worker_url: str
    apps: dict[str, Proc] = field(default_factory=dict)
    app_ports: dict[str, int] = field(default_factory=dict)

    def url(self, client_id: str, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.app_ports[client_id]}{path}"

    def store(self) -> SQLiteStore:
        return SQLiteStore(self.run_dir / "worker.db")

    def rp_store(self, client_id: str) -> RpStore:
        return RpStore(self.run_dir / f"{client_id}.db")

    def start_app(self, client_id: str) -> Proc:
        proc = start_app(client_id, port=self.app_ports[client_id], issuer=self.kc.issuer,
                         worker_url=self.worker_url,
                         session_db=self.run_dir / f"{client_id}.db",
                         log=self.run_dir / f"{client_id}.log",
                         extra_env={"OIDC_IDLE_APP_KEYS_MAX_AGE": "2s"})
        self.apps[client_id] = proc
        return proc

    def login_both(self, username: str, password: str) -> tuple[Browser, str]:
        """Log in to the portal through Keycloak's form, then to the console by SSO."""
        b = Browser()
        r = b.go("GET", self.url("patient-portal", "/whoami"))
        assert Browser.is_login_page(r), r.text[:500]
        r = b.login_form(r, username, password)
        assert r.status_code == 200, r.text[:500]
        sid_a = r.json()["sid"]
        r = b.go("GET", self.url("admin-console", "/whoami"))
        assert r.status_code == 200 and not Browser.is_login_page(r), r.text[:500]
        assert r.json()["sid"] == sid_a
        return b, sid_a

    def audit(self, event: str | None = None) -> list[dict[str, Any]]:
        """The worker's audit records, in order; only those of ``event`` if given."""
        store = self.store()
        try:
            return [e.record for e in store.audit_entries()
                    if event is None or e.record.get("event") == event]
        finally:
            store.close()

    def terminated_record(self, sid: str) -> dict[str, Any] | None:
        recs = [r for r in self.audit("session.terminated") if r["identity"]["sid"] == sid]
        return recs[0] if recs else None

    def session(self, sid: str) -> Any:
        store = self.store()
        try:
            return store.get_session(sid)
        finally:
            store.close()

    def notifications(self, sid: str) -> list[Any]:
        store = self.store()
        try:
            return store.notifications_for(sid)
        finally:
            store.close()

    def kill_worker(self) -> None:
        self.worker.kill()

    def restart_worker(self) -> Proc:
        self.worker = start_worker(self.worker.env, self.run_dir / "worker.log")
        return self.worker

    def stop(self) -> None:
        for p in self.apps.values():
            p.stop()
        self.worker.stop()


@pytest.fixture
def make_stack(keycloak: KeycloakHandle, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(idle_s: float = 6, warn_s: float = 2, **worker_extra: str) -> Stack:
        policy = Policy(idle_timeout_ms=int(idle_s * 1000), warning_lead_ms=int(warn_s * 1000),
                        absolute_lifetime_ms=3_600_000)
        keycloak.admin.apply_policy(policy)
        ports = {c: free_port() for c in APP_SECRETS}
        for client_id, port in ports.items():
            keycloak.admin.register_client(client_id, f"http://127.0.0.1:{port}")
        wport = free_port()
        env = worker_env(keycloak_url=keycloak.base_url, realm=REALM, port=wport,
                         run_dir=tmp_path, OIDC_IDLE_SWEEP_INTERVAL="200ms",
                         OIDC_IDLE_DELIVERY_BACKOFF_BASE="200ms",
                         OIDC_IDLE_DELIVERY_BACKOFF_MAX="2s", OIDC_IDLE_DELIVERY_TIMEOUT="2s",
                         **worker_extra)
        worker = start_worker(env, tmp_path / "worker.log")
        stack = Stack(keycloak, tmp_path, policy, worker, f"http://127.0.0.1:{wport}",
                      app_ports=ports)
        stacks.append(stack)
        for client_id in APP_SECRETS:
            stack.start_app(client_id)
        return stack

    yield make
    for s in stacks:
        s.stop()
