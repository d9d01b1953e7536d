"""The Keycloak adapter: the only place that talks to Keycloak's Admin API.

python-keycloak has no "delete one user session" call, so termination uses its
connection's raw DELETE on ``admin/realms/{realm}/sessions/{sid}``
(Keycloak Admin REST API, "Remove a specific user session"). That call also
makes Keycloak send its own one-shot back-channel logout; ours is the one
that retries. 404 means the session is already gone, which is success.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import requests
from keycloak import KeycloakOpenIDConnection
from keycloak.exceptions import KeycloakError as _PkcError

from .errors import KeycloakError

CLIENT_IDLE_ATTR = "oidcIdle.idleTimeout"


@dataclass(frozen=True)
class KcSession:
    sid: str
    sub: str
    started_at: int
    last_access: int
    clients: tuple[str, ...]  # client ids (not UUIDs)


@dataclass(frozen=True)
class KcClient:
    client_id: str
    backchannel_url: str | None
    service_account_sub: str | None
    idle_timeout_ms: int | None = None  # client attribute oidcIdle.idleTimeout (seconds)


def client_idle_timeout_ms(rep: dict[str, Any]) -> int | None:
    """A client's stricter idle timeout (attribute ``oidcIdle.idleTimeout``, seconds)."""
    raw = (rep.get("attributes") or {}).get(CLIENT_IDLE_ATTR)
    try:
        value = float(raw) if raw not in (None, "") else None
    except (TypeError, ValueError):
        value = None
    return round(value * 1000) if value and value >= 1 else None


class Keycloak(Protocol):
    """What the worker needs from Keycloak; tests of the core use a fake."""

    def user_session(self, sub: str, sid: str) -> KcSession | None: ...

    def delete_session(self, sid: str) -> str: ...

    def client(self, client_id: str) -> KcClient | None: ...

    def realm_attributes(self) -> dict[str, Any]: ...

    def logout_events(self, since_ms: int) -> list[tuple[int, str]]: ...

    def ping(self) -> None: ...


class AdminKeycloak:
    """Keycloak through python-keycloak, as the worker's service account."""

    def __init__(self, server_url: str, realm: str, client_id: str, client_secret: str,
                 timeout_s: float = 5.0) -> None:
        self.server_url = server_url.rstrip("/")
        self.realm = realm
        self._conn = KeycloakOpenIDConnection(
            server_url=self.server_url, realm_name=realm, client_id=client_id,
            client_secret_key=client_secret, timeout=int(max(1, timeout_s)),
        )
        self._lock = threading.Lock()  # python-keycloak's token refresh is not thread-safe
        self._admin = f"admin/realms/{quote(realm, safe='')}"

    def _call(self, method: str, path: str, **params: Any) -> requests.Response:
        fn = {"GET": self._conn.raw_get, "DELETE": self._conn.raw_delete}[method]
        try:
            with self._lock:
                return fn(f"{self._admin}/{path}" if path else self._admin, **params)
        except (_PkcError, requests.RequestException, AttributeError) as exc:
            raise KeycloakError(f"Keycloak unreachable for {method} {path or 'realm'}: {exc}",
                                keycloak_status=None) from exc

    def _json(self, resp: requests.Response, what: str) -> Any:
        if resp.status_code != 200:
            raise KeycloakError(
                f"Keycloak answered {resp.status_code} to {what}",
                keycloak_status=resp.status_code, keycloak_body=resp.text[:500])
        return resp.json()

    def user_session(self, sub: str, sid: str) -> KcSession | None:
        resp = self._call("GET", f"users/{quote(sub, safe='')}/sessions")
        if resp.status_code == 404:
            return None
        for s in self._json(resp, "list user sessions"):
            if s.get("id") == sid:
                return KcSession(sid=sid, sub=s.get("userId", sub), started_at=int(s["start"]),
                                 last_access=int(s["lastAccess"]),
                                 clients=tuple(sorted((s.get("clients") or {}).values())))
        return None

    def delete_session(self, sid: str) -> str:
        resp = self._call("DELETE", f"sessions/{quote(sid, safe='')}")
        if resp.status_code in (200, 204):
            return "deleted"
        if resp.status_code == 404:
            return "already_gone"
        raise KeycloakError(f"Keycloak answered {resp.status_code} to delete session {sid}",
                            keycloak_status=resp.status_code, keycloak_body=resp.text[:500])

    def client(self, client_id: str) -> KcClient | None:
        found = self._json(self._call("GET", "clients", clientId=client_id), "find client")
        match = [c for c in found if c.get("clientId") == client_id]
        if not match:
            return None
        rep = match[0]
        url = (rep.get("attributes") or {}).get("backchannel.logout.url") or None
        sa_sub = None
        if rep.get("serviceAccountsEnabled"):
            resp = self._call("GET", f"clients/{rep['id']}/service-account-user")
            if resp.status_code == 200:
                sa_sub = resp.json().get("id")
        return KcClient(client_id, url, sa_sub, client_idle_timeout_ms(rep))

    def logout_events(self, since_ms: int) -> list[tuple[int, str]]:
        """(time, session id) of LOGOUT user events since ``since_ms``, oldest first:
        sessions ended at Keycloak itself (account console, another app's logout)."""
        resp = self._call("GET", "events", type="LOGOUT", dateFrom=str(since_ms), max=500)
        if resp.status_code == 403:
            raise KeycloakError("the worker's service account lacks the realm-management "
                                "role view-events (oidc-idle realm apply grants it)",
                                keycloak_status=403)
        events = self._json(resp, "read logout events")
        return sorted((int(e["time"]), str(e["sessionId"])) for e in events
                      if e.get("sessionId") and int(e.get("time", 0)) >= since_ms)

    def realm_attributes(self) -> dict[str, Any]:
        rep = self._json(self._call("GET", ""), "read realm")
        attrs = dict(rep.get("attributes") or {})
        attrs["ssoSessionIdleTimeout"] = rep.get("ssoSessionIdleTimeout")
        attrs["ssoSessionMaxLifespan"] = rep.get("ssoSessionMaxLifespan")
        return attrs

    def ping(self) -> None:
        try:
            resp = requests.get(f"{self.server_url}/realms/{quote(self.realm, safe='')}",
                                timeout=3)
        except requests.RequestException as exc:
            raise KeycloakError(f"Keycloak unreachable: {exc}") from exc
        if resp.status_code != 200:
            raise KeycloakError(f"Keycloak realm endpoint answered {resp.status_code}",
                                keycloak_status=resp.status_code)
