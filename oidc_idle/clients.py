"""What the worker knows of each relying party, learned from Keycloak.

Keycloak's client representation is the one source of an app's back-channel
logout URL (``attributes["backchannel.logout.url"]``) and of its service
account (whose access tokens the app uses to call the worker).
"""

from __future__ import annotations

from .clock import Clock
from .keycloak import Keycloak
from .store.base import ClientRecord, SessionStore


class ClientRegistry:
    def __init__(self, store: SessionStore, keycloak: Keycloak, clock: Clock,
                 ttl_ms: int = 300_000) -> None:
        self._store = store
        self._kc = keycloak
        self._clock = clock
        self._ttl = ttl_ms
        self._memo: dict[str, ClientRecord] = {}  # read on every API call: keep it in memory

    def get(self, client_id: str, *, fresh: bool = False) -> ClientRecord | None:
        """The client, from the store while fresh, else from Keycloak (KeycloakError if down).

        When Keycloak is down a stale record is still returned: a logout must
        still reach the app.
        """
        now = self._clock.now_ms()
        rec = self._memo.get(client_id)
        if rec is not None and not fresh and now - rec.fetched_at < self._ttl:
            return rec
        rec = self._store.get_client(client_id)
        if rec is not None and not fresh and now - rec.fetched_at < self._ttl:
            self._memo[client_id] = rec
            return rec
        try:
            kc = self._kc.client(client_id)
        except Exception:
            if rec is not None:
                return rec
            raise
        if kc is None:
            return None
        rec = ClientRecord(client_id, kc.backchannel_url, kc.service_account_sub, now,
                           kc.idle_timeout_ms)
        self._store.put_client(rec)
        self._memo[client_id] = rec
        return rec
