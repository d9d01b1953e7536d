"""Who is calling the worker: a relying party's service-account access token.

A relying party gets an access token from its own Keycloak client by the
client-credentials grant (RFC 6749 §4.4) and sends it as a bearer token
(RFC 6750). The worker checks it against the realm's published keys and
takes the client from ``azp``. It must be the *service account's* token (its
``sub`` is that client's service-account user): a user's access token for the
same app must not let a browser report activity for other people's sessions.
"""

from __future__ import annotations

from typing import Any

from ..clients import ClientRegistry
from ..clock import Clock
from ..errors import KeycloakError, OidcIdleError, Unauthorized
from ..jose import unverified, verified_claims
from ..keys import RemoteKeySet


class BearerAuth:
    def __init__(self, *, keys: RemoteKeySet, issuer: str, audience: str,
                 clients: ClientRegistry, clock: Clock, skew_ms: int) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._clients = clients
        self._clock = clock
        self._skew_s = skew_ms / 1000

    def client_id(self, authorization: str | None) -> str:
        """The calling relying party's client id, or Unauthorized."""
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized("missing bearer token: send 'Authorization: Bearer <access token "
                               "of your client's service account>'")
        token = authorization[len("Bearer "):].strip()
        try:
            header, _ = unverified(token)
        except (ValueError, UnicodeDecodeError):
            raise Unauthorized("bearer token is not a JWT") from None
        if header.get("alg") != "RS256":
            raise Unauthorized(f"bearer token alg {header.get('alg')!r} not accepted")
        try:
            key = self._keys.key_for(header.get("kid"))
            claims = verified_claims(token, key, ["RS256"])
        except KeycloakError:
            raise
        except (OidcIdleError, ValueError) as exc:
            raise Unauthorized(f"bearer token rejected: {exc}") from None
        return self._check(claims)

    def _check(self, claims: dict[str, Any]) -> str:
        now = self._clock.now_ms() / 1000
        if claims.get("iss") != self._issuer:
            raise Unauthorized(f"bearer token issuer {claims.get('iss')!r} is not {self._issuer}")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= now - self._skew_s:
            raise Unauthorized("bearer token expired")
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self._audience not in auds:
            raise Unauthorized(f"bearer token audience {aud!r} does not include "
                               f"{self._audience!r} (add the audience mapper to the client)")
        if claims.get("typ") not in (None, "Bearer"):
            raise Unauthorized(f"token typ {claims.get('typ')!r} is not an access token")
        client_id = claims.get("azp") or claims.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise Unauthorized("bearer token names no client (azp)")
        client = self._clients.get(client_id)
        if client is None or client.service_account_sub is None:
            raise Unauthorized(f"client {client_id!r} is unknown or has no service account")
        if claims.get("sub") != client.service_account_sub:
            raise Unauthorized("bearer token is not the client's service-account token")
        return client_id
