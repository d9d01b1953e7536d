"""Fakes for the unit ring: Keycloak and HTTP, driven by a FakeClock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from oidc_idle.errors import KeycloakError
from oidc_idle.keycloak import KcClient, KcSession


@dataclass
class FakeKeycloak:
    sessions: dict[str, KcSession] = field(default_factory=dict)
    clients: dict[str, KcClient] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    down: bool = False
    logouts: list[tuple[int, str]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    lookups: int = 0

    def add_session(self, sid: str, sub: str, started_at: int, *clients: str) -> None:
        self.sessions[sid] = KcSession(sid, sub, started_at, started_at, tuple(sorted(clients)))

    def add_client(self, client_id: str, url: str | None = None, sa: str | None = None) -> None:
        self.clients[client_id] = KcClient(client_id, url or f"http://rp/{client_id}/bcl",
                                           sa or f"sa-{client_id}")

    def _check(self) -> None:
        if self.down:
            raise KeycloakError("Keycloak unreachable (fake)")

    def user_session(self, sub: str, sid: str) -> KcSession | None:
        self._check()
        self.lookups += 1
        s = self.sessions.get(sid)
        return s if s is not None and s.sub == sub else None

    def delete_session(self, sid: str) -> str:
        self._check()
        self.deleted.append(sid)
        return "deleted" if self.sessions.pop(sid, None) else "already_gone"

    def client(self, client_id: str) -> KcClient | None:
        self._check()
        return self.clients.get(client_id)

    def realm_attributes(self) -> dict[str, Any]:
        self._check()
        return dict(self.attributes)

    def logout_events(self, since_ms: int) -> list[tuple[int, str]]:
        self._check()
        return sorted(e for e in self.logouts if e[0] >= since_ms)

    def ping(self) -> None:
        self._check()


class FakeResponse:
    def __init__(self, status: int, text: str = "") -> None:
        self.status_code = status
        self.text = text


class FakeHttp:
    """Records POSTs; answers per URL from a script (status codes or exceptions)."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Any]] = {}
        self.posts: list[dict[str, Any]] = []

    def post(self, url: str, **kwargs: Any) -> FakeResponse:
        self.posts.append({"url": url, **kwargs})
        script = self.answers.get(url, [])
        answer = script.pop(0) if len(script) > 1 else (script[0] if script else 200)
        if isinstance(answer, Exception):
            raise answer
        return FakeResponse(answer)
