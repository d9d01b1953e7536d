"""One configuration path: ``OIDC_IDLE_*`` environment variables.

The worker's settings are a frozen, validated :class:`WorkerSettings` built by
:func:`WorkerSettings.from_env`. Bad configuration fails at start with a
:class:`~oidc_idle.errors.ConfigError` that names the key. The relying-party
plugin reads the same ``OIDC_IDLE_*`` names from ``app.config`` (see
``oidc_idle.rp``). The idle *policy* is not here: it lives in the realm
(``oidc_idle.policy``), so that every app and the worker share one source.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from .errors import ConfigError

PREFIX = "OIDC_IDLE_"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}


def parse_duration_ms(text: str | int | float, *, key: str = "duration") -> int:
    """``"30s"``, ``"15m"``, ``"1h"``, ``"250ms"`` or bare seconds to milliseconds."""
    if isinstance(text, bool):
        raise ConfigError(f"{key}: expected a duration like 30s or 15m, got {text!r}", key=key)
    if isinstance(text, int | float):
        return round(float(text) * 1000)
    m = _DURATION.match(str(text))
    if not m:
        raise ConfigError(f"{key}: expected a duration like 30s or 15m, got {text!r}", key=key)
    return round(float(m.group(1)) * _UNIT_MS[m.group(2)])


def _url(env: Mapping[str, str], key: str, default: str | None = None) -> str:
    value = env.get(PREFIX + key, default)
    if not value:
        raise ConfigError(f"{PREFIX}{key} is required (a http(s) URL)", key=PREFIX + key)
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{PREFIX}{key}: not a http(s) URL: {value!r}", key=PREFIX + key)
    return value.rstrip("/")


def _dur(env: Mapping[str, str], key: str, default: str, minimum_ms: int = 1) -> int:
    value = parse_duration_ms(env.get(PREFIX + key, default), key=PREFIX + key)
    if value < minimum_ms:
        raise ConfigError(
            f"{PREFIX}{key} must be at least {minimum_ms} ms, got {value} ms", key=PREFIX + key
        )
    return value


def _int(env: Mapping[str, str], key: str, default: int, minimum: int = 1) -> int:
    raw = env.get(PREFIX + key, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{key}: expected an integer, got {raw!r}",
                          key=PREFIX + key) from None
    if value < minimum:
        raise ConfigError(f"{PREFIX}{key} must be >= {minimum}, got {value}", key=PREFIX + key)
    return value


@dataclass(frozen=True)
class WorkerSettings:
    """Everything ``oidc-idle serve`` needs; documented in README (Configuration)."""

    keycloak_url: str
    realm: str
    client_id: str
    client_secret: str = field(repr=False)
    public_url: str
    host: str = "127.0.0.1"
    port: int = 8780
    db_path: str = "oidc-idle.db"
    audit_log: str = "oidc-idle-audit.jsonl"
    audience: str = "oidc-idle-worker"
    instance: str = field(default_factory=socket.gethostname)
    sweep_interval_ms: int = 500
    clock_skew_ms: int = 5_000
    policy_refresh_ms: int = 60_000
    lease_ms: int = 30_000
    delivery_timeout_ms: int = 5_000
    delivery_ttl_ms: int = 6 * 3_600_000
    delivery_backoff_base_ms: int = 500
    delivery_backoff_max_ms: int = 60_000
    delivery_parallelism: int = 8
    terminate_parallelism: int = 4
    threads: int = 8
    issuer_url: str = ""

    @property
    def issuer(self) -> str:
        """The realm issuer, as Keycloak puts it into the apps' tokens. It differs
        from ``keycloak_url`` when the worker reaches Keycloak by an internal
        address (a sidecar network) while tokens name the public one."""
        return self.issuer_url or f"{self.keycloak_url}/realms/{self.realm}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        env = os.environ if env is None else env
        keycloak_url = _url(env, "KEYCLOAK_URL")
        realm = env.get(PREFIX + "REALM", "")
        if not re.fullmatch(r"[A-Za-z0-9._-]+", realm):
            raise ConfigError(f"{PREFIX}REALM is required (a realm name), got {realm!r}",
                              key=PREFIX + "REALM")
        client_id = env.get(PREFIX + "CLIENT_ID", "")
        secret = env.get(PREFIX + "CLIENT_SECRET", "")
        if not client_id:
            raise ConfigError(f"{PREFIX}CLIENT_ID is required (the worker's service-account "
                              "client)", key=PREFIX + "CLIENT_ID")
        if not secret:
            raise ConfigError(f"{PREFIX}CLIENT_SECRET is required", key=PREFIX + "CLIENT_SECRET")
        bind = env.get(PREFIX + "BIND", "127.0.0.1:8780")
        host, _, port_text = bind.rpartition(":")
        try:
            port = int(port_text)
            if not (0 < port < 65536) or not host:
                raise ValueError
        except ValueError:
            raise ConfigError(f"{PREFIX}BIND: expected host:port, got {bind!r}",
                              key=PREFIX + "BIND") from None
        public_url = _url(env, "PUBLIC_URL", f"http://{host}:{port}")
        settings = cls(
            keycloak_url=keycloak_url,
            realm=realm,
            client_id=client_id,
            client_secret=secret,
            public_url=public_url,
            host=host,
            port=port,
            db_path=env.get(PREFIX + "DB", "oidc-idle.db"),
            audit_log=env.get(PREFIX + "AUDIT_LOG", "oidc-idle-audit.jsonl"),
            audience=env.get(PREFIX + "AUDIENCE", "oidc-idle-worker"),
            instance=env.get(PREFIX + "INSTANCE", socket.gethostname()),
            sweep_interval_ms=_dur(env, "SWEEP_INTERVAL", "500ms", 50),
            clock_skew_ms=_dur(env, "CLOCK_SKEW", "5s", 0),
            policy_refresh_ms=_dur(env, "POLICY_REFRESH", "60s", 1000),
            lease_ms=_dur(env, "LEASE", "30s", 1000),
            delivery_timeout_ms=_dur(env, "DELIVERY_TIMEOUT", "5s", 100),
            delivery_ttl_ms=_dur(env, "DELIVERY_TTL", "6h", 1000),
            delivery_backoff_base_ms=_dur(env, "DELIVERY_BACKOFF_BASE", "500ms", 10),
            delivery_backoff_max_ms=_dur(env, "DELIVERY_BACKOFF_MAX", "60s", 10),
            delivery_parallelism=_int(env, "DELIVERY_PARALLELISM", 8),
            terminate_parallelism=_int(env, "TERMINATE_PARALLELISM", 4),
            threads=_int(env, "THREADS", 8),
            issuer_url=_url(env, "ISSUER", f"{keycloak_url}/realms/{realm}"),
        )
        for path_key, path in (("DB", settings.db_path), ("AUDIT_LOG", settings.audit_log)):
            parent = Path(path).expanduser().resolve().parent
            if not parent.is_dir():
                raise ConfigError(f"{PREFIX}{path_key}: directory {parent} does not exist",
                                  key=PREFIX + path_key)
        return settings
