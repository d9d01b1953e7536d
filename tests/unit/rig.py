"""A worker wired with fakes, for the unit ring."""

from __future__ import annotations

from pathlib import Path

from fakes import FakeHttp, FakeKeycloak
from oidc_idle.audit import JsonlSink
from oidc_idle.clients import ClientRegistry
from oidc_idle.clock import FakeClock
from oidc_idle.enforcer import Enforcer
from oidc_idle.keys import SigningKeys
from oidc_idle.notifier import Notifier
from oidc_idle.policy import Policy
from oidc_idle.store.sqlite import SQLiteStore
from oidc_idle.worker.service import Worker

T0 = 1_800_000_000_000


class Rig:
    """A worker wired with fakes: FakeClock, FakeKeycloak, FakeHttp, real SQLite."""

    def __init__(self, tmp: Path, policy: Policy) -> None:
        self.clock = FakeClock(T0)
        self.kc = FakeKeycloak()
        self.http = FakeHttp()
        self.policy = policy
        self.store = SQLiteStore(tmp / "w.db")
        self.sink = JsonlSink(self.store, tmp / "audit.jsonl")
        self.clients = ClientRegistry(self.store, self.kc, self.clock)
        self.keys = SigningKeys(self.store, self.clock)
        self.enforcer = Enforcer(store=self.store, keycloak=self.kc, clients=self.clients,
                                 policy=lambda: self.policy, clock=self.clock, owner="w1",
                                 realm="demo", issuer="http://worker", lease_ms=30_000,
                                 notification_ttl_ms=3_600_000, on_audit=self.sink.sync)
        self.notifier = Notifier(store=self.store, keys=self.keys, issuer="http://worker",
                                 clock=self.clock, timeout_ms=1000, backoff_base_ms=500,
                                 backoff_max_ms=4000, parallelism=4, on_audit=self.sink.sync,
                                 http=self.http)  # type: ignore[arg-type]
        self.worker = Worker(store=self.store, keycloak=self.kc, clock=self.clock,
                             policy=lambda: self.policy, keys=self.keys, clients=self.clients,
                             enforcer=self.enforcer, notifier=self.notifier, sink=self.sink,
                             clock_skew_ms=5000)
        for c in ("app-a", "app-b", "app-c"):
            self.kc.add_client(c)

    def login(self, sid: str = "sid-1", sub: str = "user-1", *clients: str) -> None:
        self.kc.add_session(sid, sub, self.clock.now_ms(), *(clients or ("app-a", "app-b")))

    def report(self, client: str, sid: str = "sid-1", sub: str = "user-1",
               kind: str = "click", at: str | None = None) -> dict:
        ev = {"sid": sid, "sub": sub, "kind": kind}
        if at is not None:
            ev["at"] = at
        return self.worker.ingest(client, {"events": [ev]})[0]

    def close(self) -> None:
        self.enforcer.close()
        self.notifier.close()
        self.store.close()
