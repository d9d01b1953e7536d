"""The plugin's configuration: ``OIDC_IDLE_*`` keys of ``app.config``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from ..config import parse_duration_ms
from ..errors import ConfigError

P = "OIDC_IDLE_"


@dataclass(frozen=True)
class RpSettings:
    issuer: str
    client_id: str
    client_secret: str
    worker_url: str
    worker_issuer: str
    session_db: str
    session_cookie: str
    cookie_secure: bool
    public_endpoints: frozenset[str]
    passive_endpoints: frozenset[str]
    clock_skew_ms: int
    worker_timeout_ms: int
    report_interval_ms: int
    report_queue_max: int
    logout_token_max_age_ms: int
    fail_closed_after_ms: int
    clear_storage_keys: tuple[str, ...]
    keys_max_age_ms: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any], instance_path: str) -> RpSettings:
        def req(key: str) -> str:
            value = config.get(P + key)
            if not value or not isinstance(value, str):
                raise ConfigError(f"app.config[{P + key!r}] is required", key=P + key)
            return value

        def url(key: str, value: str) -> str:
            parsed = urlparse(value)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ConfigError(f"app.config[{P + key!r}]: not a http(s) URL: {value!r}",
                                  key=P + key)
            return value.rstrip("/")

        def dur(key: str, default: str) -> int:
            return parse_duration_ms(config.get(P + key, default), key=P + key)

        def names(key: str) -> frozenset[str]:
            value = config.get(P + key, ())
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            return frozenset(value)

        client_id = req("CLIENT_ID")
        worker_url = url("WORKER_URL", req("WORKER_URL"))
        return cls(
            issuer=url("ISSUER", req("ISSUER")),
            client_id=client_id,
            client_secret=req("CLIENT_SECRET"),
            worker_url=worker_url,
            worker_issuer=url("WORKER_ISSUER", config.get(P + "WORKER_ISSUER") or worker_url),
            session_db=config.get(P + "SESSION_DB")
            or os.path.join(instance_path, "oidc-idle-sessions.db"),
            # Browsers do not isolate cookies by port: two apps on one host need two names.
            session_cookie=config.get(P + "SESSION_COOKIE") or f"oidc_idle_{client_id}",
            cookie_secure=bool(config.get("SESSION_COOKIE_SECURE", False)),
            public_endpoints=names("PUBLIC_ENDPOINTS"),
            passive_endpoints=names("PASSIVE_ENDPOINTS"),
            clock_skew_ms=dur("CLOCK_SKEW", "30s"),
            worker_timeout_ms=dur("WORKER_TIMEOUT", "2s"),
            report_interval_ms=dur("REPORT_INTERVAL", "200ms"),
            report_queue_max=int(config.get(P + "REPORT_QUEUE_MAX", 10_000)),
            logout_token_max_age_ms=dur("LOGOUT_TOKEN_MAX_AGE", "10m"),
            fail_closed_after_ms=dur("FAIL_CLOSED_AFTER", "15m"),
            clear_storage_keys=tuple(names("CLEAR_STORAGE_KEYS")),
            keys_max_age_ms=dur("KEYS_MAX_AGE", "5m"),
        )
