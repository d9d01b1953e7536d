"""The worker: HTTP API plus sweeper, run as a sidecar (``oidc-idle serve``)."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from functools import partial
from typing import Any

from flask import Flask

from ..audit import JsonlSink
from ..clients import ClientRegistry
from ..clock import Clock, SystemClock
from ..config import WorkerSettings
from ..enforcer import Enforcer
from ..keycloak import AdminKeycloak, Keycloak
from ..keys import RemoteKeySet, SigningKeys
from ..metrics import Metrics
from ..notifier import Notifier
from ..store.sqlite import SQLiteStore
from .auth import BearerAuth
from .http import create_app
from .service import PolicySource, Worker

log = logging.getLogger("oidc_idle.worker")

__all__ = ["Built", "PolicySource", "Worker", "build", "create_app", "serve"]


@dataclass
class Built:
    worker: Worker
    app: Flask
    policy: PolicySource


def _after_termination(sink: JsonlSink, notifier: Notifier) -> None:
    sink.sync()  # the JSON-lines copy for the SIEM
    notifier.wake()  # the owed logouts go out now, not at a tick


def build(settings: WorkerSettings, *, clock: Clock | None = None,
          keycloak: Keycloak | None = None) -> Built:
    """Wire a worker from its settings (nothing started yet)."""
    clock = clock or SystemClock()
    kc = keycloak or AdminKeycloak(settings.keycloak_url, settings.realm, settings.client_id,
                                   settings.client_secret)
    store = SQLiteStore(settings.db_path)
    holder: list[Worker] = []
    policy = PolicySource(kc, on_change=lambda p: holder[0].apply_policy(p) if holder else 0)
    sink = JsonlSink(store, settings.audit_log)
    clients = ClientRegistry(store, kc, clock)
    keys = SigningKeys(store, clock)
    metrics = Metrics()
    notifier = Notifier(store=store, keys=keys, issuer=settings.public_url, clock=clock,
                        timeout_ms=settings.delivery_timeout_ms,
                        backoff_base_ms=settings.delivery_backoff_base_ms,
                        backoff_max_ms=settings.delivery_backoff_max_ms,
                        parallelism=settings.delivery_parallelism, on_audit=sink.sync,
                        metrics=metrics)
    enforcer = Enforcer(store=store, keycloak=kc, clients=clients, policy=policy, clock=clock,
                        owner=settings.instance, realm=settings.realm, issuer=settings.public_url,
                        lease_ms=settings.lease_ms, notification_ttl_ms=settings.delivery_ttl_ms,
                        on_audit=partial(_after_termination, sink, notifier),
                        parallelism=settings.terminate_parallelism,
                        metrics=metrics)
    worker = Worker(store=store, keycloak=kc, clock=clock, policy=policy, keys=keys,
                    clients=clients, enforcer=enforcer, notifier=notifier, sink=sink,
                    clock_skew_ms=settings.clock_skew_ms, metrics=metrics)
    holder.append(worker)
    certs = f"{settings.keycloak_url}/realms/{settings.realm}/protocol/openid-connect/certs"
    auth = BearerAuth(keys=RemoteKeySet(certs),
                      issuer=settings.issuer, audience=settings.audience, clients=clients,
                      clock=clock, skew_ms=settings.clock_skew_ms)
    return Built(worker, create_app(worker, auth), policy)


def serve(settings: WorkerSettings, *, ready: threading.Event | None = None) -> None:
    """Run the worker until SIGINT/SIGTERM: waitress serves the API, APScheduler sweeps."""
    from waitress.server import create_server

    built = build(settings)
    built.worker.start(sweep_interval_ms=settings.sweep_interval_ms,
                       policy_refresh_ms=settings.policy_refresh_ms,
                       policy_refresh=built.policy.refresh)
    server: Any = create_server(built.app, host=settings.host, port=settings.port,
                                threads=settings.threads, ident="oidc-idle")
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()
        server.close()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    p = built.policy()
    log.info("oidc-idle worker %s on http://%s:%d for realm %s; idle timeout %d s, sweep every "
             "%d ms", settings.instance, settings.host, settings.port, settings.realm,
             p.idle_timeout_ms // 1000, settings.sweep_interval_ms)
    if ready is not None:
        ready.set()
    try:
        server.run()
    except OSError:
        if not stop.is_set():
            raise
    finally:
        built.worker.stop()
        built.worker.store.close()
