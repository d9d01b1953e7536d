"""Signing keys of the worker, and key sets fetched from issuers.

The worker signs logout tokens with RSA keys kept in its store, so a restart
does not change them; the public halves are served at
``/.well-known/jwks.json``. :class:`RemoteKeySet` fetches an issuer's JWKS and
refreshes it once when a token names an unknown ``kid`` (how Keycloak and the
worker rotate keys without breaking tokens in flight).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import requests
from joserfc.jwk import KeySet, RSAKey

from .clock import Clock
from .errors import InvalidInput, KeycloakError
from .store.base import SessionStore


class SigningKeys:
    """The worker's keys: the newest active one signs, all are published."""

    def __init__(self, store: SessionStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._imported: dict[str, RSAKey] = {}  # importing an RSA private key costs ~35 ms
        if not store.signing_keys():
            self.rotate()

    def rotate(self) -> str:
        """Sign with a new key from now on. The previous key stays published, so a
        token signed just before the rotation still validates; older ones are
        withdrawn from the JWKS."""
        with self._lock:
            kid = f"oidc-idle-{uuid.uuid4().hex[:16]}"
            key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})
            self._store.add_signing_key(kid, key.as_dict(private=True), self._clock.now_ms())
            return kid

    def current(self) -> RSAKey:
        """The newest active key (read from the store each time: a rotation made by
        `oidc-idle keys rotate` in another process applies at once)."""
        return self._key(next(k for k in self._store.signing_keys() if k["active"]))

    def _key(self, row: dict[str, Any]) -> RSAKey:
        key = self._imported.get(row["kid"])
        if key is None:
            key = RSAKey.import_key(row["private_jwk"])
            self._imported[row["kid"]] = key
        return key

    def jwks(self) -> dict[str, Any]:
        out = []
        for k in self._store.signing_keys():
            if k["active"]:
                pub = self._key(k).as_dict(private=False)
                pub.update({"kid": k["kid"], "use": "sig", "alg": "RS256"})
                out.append(pub)
        return {"keys": out}


class RemoteKeySet:
    """An issuer's published JWKS, cached for ``max_age_s`` (so a withdrawn key stops
    being trusted), refetched early on an unknown ``kid`` at most every
    ``min_refresh_s`` (so random kids cannot make us hammer the issuer)."""

    def __init__(self, jwks_url: str, *, timeout_s: float = 5.0, min_refresh_s: float = 10.0,
                 max_age_s: float = 300.0, session: requests.Session | None = None) -> None:
        self._max_age = max_age_s
        self.jwks_url = jwks_url
        self._timeout = timeout_s
        self._min_refresh = min_refresh_s
        self._http = session or requests.Session()
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched = 0.0

    def _fetch(self) -> KeySet:
        try:
            resp = self._http.get(self.jwks_url, timeout=self._timeout)
        except requests.RequestException as exc:
            raise KeycloakError(f"cannot fetch keys from {self.jwks_url}: {exc}") from exc
        if resp.status_code != 200:
            raise KeycloakError(f"keys at {self.jwks_url} answered {resp.status_code}",
                                keycloak_status=resp.status_code, keycloak_body=resp.text[:500])
        try:
            data = resp.json()
            keys = [k for k in data["keys"] if k.get("use", "sig") == "sig"]
            return KeySet.import_key_set({"keys": keys})
        except (ValueError, KeyError, TypeError) as exc:
            raise KeycloakError(f"keys at {self.jwks_url} are not a JWKS: {exc}") from exc

    def key_for(self, kid: str | None) -> Any:
        """The key with that ``kid`` (refetching once if unknown)."""
        with self._lock:
            if self._keys is None or time.monotonic() - self._fetched >= self._max_age:
                self._keys, self._fetched = self._fetch(), time.monotonic()
            key = self._find(kid)
            if key is None and time.monotonic() - self._fetched >= self._min_refresh:
                self._keys, self._fetched = self._fetch(), time.monotonic()
                key = self._find(kid)
            if key is None:
                raise InvalidInput(f"no published key with kid {kid!r} at {self.jwks_url}",
                                   error="unknown_key")
            return key

    def _find(self, kid: str | None) -> Any:
        assert self._keys is not None
        if kid is None:
            return self._keys.keys[0] if len(self._keys.keys) == 1 else None
        for key in self._keys.keys:
            if key.kid == kid:
                return key
        return None
