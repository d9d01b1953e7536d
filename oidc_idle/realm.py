"""Operator actions on the realm through the Admin API (python-keycloak).

``apply_policy`` writes the idle policy into the realm's attributes (the one
source of truth every app and the worker read) and keeps Keycloak's own SSO
Session Idle/Max as backstops *above* it: if Keycloak's timer fired first it
would end the session silently, with no back-channel logout and no audit.
"""

from __future__ import annotations

from typing import Any

from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakError as _PkcError

from .errors import KeycloakError
from .policy import Policy

BACKSTOP_FACTOR = 2


class RealmAdmin:
    def __init__(self, server_url: str, realm: str, username: str, password: str,
                 user_realm: str = "master") -> None:
        self.realm = realm
        try:
            self._admin = KeycloakAdmin(server_url=server_url, username=username,
                                        password=password, realm_name=realm,
                                        user_realm_name=user_realm, timeout=10)
        except _PkcError as exc:
            raise KeycloakError(f"cannot sign in to Keycloak admin as {username}: {exc}") from exc

    def apply_policy(self, policy: Policy) -> dict[str, Any]:
        """Write the policy; returns what changed (attribute -> [old, new])."""
        try:
            rep = self._admin.get_realm(self.realm)
            attrs = dict(rep.get("attributes") or {})
            wanted = policy.to_realm_attributes()
            idle_s = policy.idle_timeout_ms // 1000
            abs_s = policy.absolute_lifetime_ms // 1000
            backstop_idle = max(int(rep.get("ssoSessionIdleTimeout") or 0),
                                idle_s * BACKSTOP_FACTOR)
            backstop_max = max(int(rep.get("ssoSessionMaxLifespan") or 0), abs_s + 60)
            changes: dict[str, Any] = {k: [attrs.get(k), v] for k, v in wanted.items()
                                       if attrs.get(k) != v}
            payload: dict[str, Any] = {"attributes": {**attrs, **wanted}}
            if rep.get("ssoSessionIdleTimeout") != backstop_idle:
                changes["ssoSessionIdleTimeout"] = [rep.get("ssoSessionIdleTimeout"),
                                                    backstop_idle]
                payload["ssoSessionIdleTimeout"] = backstop_idle
            if rep.get("ssoSessionMaxLifespan") != backstop_max:
                changes["ssoSessionMaxLifespan"] = [rep.get("ssoSessionMaxLifespan"),
                                                    backstop_max]
                payload["ssoSessionMaxLifespan"] = backstop_max
            if changes:
                self._admin.update_realm(self.realm, payload)
            return changes
        except _PkcError as exc:
            raise KeycloakError(f"Keycloak refused the realm update: {exc}") from exc

    def point_client_at(self, client_id: str, base_url: str) -> None:
        """Set an app's redirect URI and back-channel logout URL to ``base_url``."""
        base = base_url.rstrip("/")
        try:
            uuid = self._admin.get_client_id(client_id)
            if uuid is None:
                raise KeycloakError(f"no client {client_id!r} in realm {self.realm}")
            rep = self._admin.get_client(uuid)
            attrs = dict(rep.get("attributes") or {})
            attrs.update({"backchannel.logout.url": f"{base}/oidc-idle/backchannel-logout",
                          "backchannel.logout.session.required": "true",
                          "post.logout.redirect.uris": f"{base}/*"})
            self._admin.update_client(uuid, {
                "rootUrl": base, "redirectUris": [f"{base}/oidc-idle/callback"],
                "webOrigins": [base], "attributes": attrs})
        except _PkcError as exc:
            raise KeycloakError(f"Keycloak refused the client update: {exc}") from exc

    def user_sessions(self, username: str) -> list[dict[str, Any]]:
        uid = self._admin.get_user_id(username)
        return list(self._admin.get_sessions(uid)) if uid else []

    def user_id(self, username: str) -> str | None:
        return self._admin.get_user_id(username)
