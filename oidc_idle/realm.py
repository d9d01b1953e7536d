"""Operator actions on the realm through the Admin API (python-keycloak).

``apply_policy`` writes the idle policy into the realm's attributes (the one
source of truth every app and the worker read) and keeps Keycloak's own SSO
Session Idle/Max as backstops *above* it: if Keycloak's timer fired first it
would end the session silently, with no back-channel logout and no audit.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlparse

from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakError as _PkcError

from .errors import ConfigError, KeycloakError, PolicyError
from .keycloak import CLIENT_IDLE_ATTR
from .policy import Policy

BACKSTOP_FACTOR = 2
USER_EVENTS = frozenset({"LOGIN", "LOGIN_ERROR", "LOGOUT", "CODE_TO_TOKEN", "REFRESH_TOKEN"})
#: What the worker calls: read the realm (policy), list a user's sessions and
#: read clients (membership, back-channel URLs), delete sessions (manage-users),
#: read LOGOUT events (sessions ended at Keycloak itself).
WORKER_ROLES = frozenset({"view-realm", "view-users", "manage-users", "view-clients",
                          "view-events"})
log = logging.getLogger("oidc_idle.realm")


def _body(exc: Exception) -> str:
    body = getattr(exc, "response_body", b"") or b""
    return body.decode(errors="replace")[:300] if isinstance(body, bytes) else str(body)[:300]


class RealmAdmin:
    def __init__(self, server_url: str, realm: str, username: str, password: str,
                 user_realm: str = "master") -> None:
        self.realm = realm
        try:
            self._admin = KeycloakAdmin(server_url=server_url, username=username,
                                        password=password, realm_name=realm,
                                        user_realm_name=user_realm, timeout=10)
            self._admin.connection.get_token()  # fail here, clearly, not at first use
        except _PkcError as exc:
            raise KeycloakError(f"cannot sign in to Keycloak at {server_url} as {username}: "
                                f"{exc}") from exc

    def apply(self, policy: Policy, *, client_idle_timeouts: dict[str, int] | None = None,
              worker_client_id: str | None = None) -> dict[str, Any]:
        """``oidc-idle realm apply``: the policy, per-app stricter timeouts, the user
        events, and the worker's service account; returns what changed."""
        changes = self.apply_policy(policy)
        changes.update(self.enable_events())
        for client_id, ms in (client_idle_timeouts or {}).items():
            changes.update(self.set_client_idle_timeout(client_id, ms, policy))
        if worker_client_id:
            changes.update(self.ensure_worker_client(worker_client_id))
        return changes

    def realm_policy(self) -> Policy:
        try:
            return Policy.from_realm_attributes(
                self._admin.get_realm(self.realm).get("attributes") or {})
        except _PkcError as exc:
            raise KeycloakError(f"cannot read realm {self.realm}: {exc}") from exc

    def enable_events(self) -> dict[str, Any]:
        """Record the user events an auditor will correlate with our records (login,
        logout, failed login, code exchange, refresh); Keycloak keeps them for 7 days."""
        try:
            rep = self._admin.get_realm(self.realm)
            have = set(rep.get("enabledEventTypes") or [])
            want = have | USER_EVENTS
            if rep.get("eventsEnabled") and want == have:
                return {}
            self._admin.update_realm(self.realm, {
                "eventsEnabled": True, "enabledEventTypes": sorted(want),
                "eventsExpiration": rep.get("eventsExpiration") or 7 * 86400})
            return {"eventsEnabled/enabledEventTypes": [sorted(have), sorted(want)]}
        except _PkcError as exc:
            raise KeycloakError(f"Keycloak refused the events update: {exc}") from exc

    def set_client_idle_timeout(self, client_id: str, ms: int,
                                policy: Policy) -> dict[str, Any]:
        """A stricter idle timeout for one app (client attribute oidcIdle.idleTimeout)."""
        if not 1000 <= ms < policy.idle_timeout_ms:
            raise PolicyError(
                f"{CLIENT_IDLE_ATTR} of {client_id}: a per-app idle timeout must be at least "
                f"1 s and shorter than the realm's ({ms / 1000:g} s, realm "
                f"{policy.idle_timeout_ms / 1000:g} s)",
                attribute=CLIENT_IDLE_ATTR)
        try:
            uuid = self._admin.get_client_id(client_id)
            if uuid is None:
                raise KeycloakError(f"no client {client_id!r} in realm {self.realm}")
            rep = self._admin.get_client(uuid)
            attrs = dict(rep.get("attributes") or {})
            value = str(ms // 1000) if ms % 1000 == 0 else str(ms / 1000)
            if attrs.get(CLIENT_IDLE_ATTR) == value:
                return {}
            old = attrs.get(CLIENT_IDLE_ATTR)
            attrs[CLIENT_IDLE_ATTR] = value
            self._admin.update_client(uuid, {"attributes": attrs})
            return {f"{client_id}/{CLIENT_IDLE_ATTR}": [old, value]}
        except _PkcError as exc:
            raise KeycloakError(f"Keycloak refused the client update: {exc}") from exc

    def ensure_worker_client(self, client_id: str) -> dict[str, Any]:
        """The worker's confidential service-account client, holding only the
        realm-management roles it uses (least privilege)."""
        changes: dict[str, Any] = {}
        try:
            uuid = self._admin.get_client_id(client_id)
            if uuid is None:
                uuid = self._admin.create_client({
                    "clientId": client_id, "enabled": True, "protocol": "openid-connect",
                    "publicClient": False, "serviceAccountsEnabled": True,
                    "standardFlowEnabled": False, "implicitFlowEnabled": False,
                    "directAccessGrantsEnabled": False})
                changes[f"client {client_id}"] = [None, "created"]
            user = self._admin.get_client_service_account_user(uuid)
            rm = self._admin.get_client_id("realm-management")
            if rm is None:
                raise KeycloakError(f"realm {self.realm} has no realm-management client")
            have = {r["name"] for r in self._admin.get_client_roles_of_user(user["id"], rm)}
            missing = sorted(WORKER_ROLES - have)
            if missing:
                roles = [self._admin.get_client_role(rm, name) for name in missing]
                self._admin.assign_client_role(user["id"], rm, roles)
                changes[f"{client_id} roles"] = [sorted(have), sorted(have | WORKER_ROLES)]
            extra = sorted(have - WORKER_ROLES)
            if extra:
                log.warning("the worker's service account also holds %s; it needs only %s",
                            extra, sorted(WORKER_ROLES))
            return changes
        except _PkcError as exc:
            raise KeycloakError(f"Keycloak refused the worker client setup: {exc}") from exc

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

    def register_client(self, client_id: str, base_url: str, *,
                        audience: str = "oidc-idle-worker") -> dict[str, Any]:
        """Create or update an app's client so that it works with oidc-idle.

        Confidential, authorization code with PKCE S256 (RFC 7636), its redirect
        URI, its back-channel logout URL with ``sid`` required (BCL 1.0 §2.2,
        "backchannel_logout_session_required"), a service account (the app calls
        the worker with its client-credentials token) and an audience mapper so
        those tokens are meant for the worker. Idempotent.
        """
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query:
            raise ConfigError(f"--url: not an http(s) base URL: {base_url!r}", key="--url")
        if not re.fullmatch(r"[A-Za-z0-9._:-]{1,255}", client_id):
            raise ConfigError(f"--client-id: not a valid client id: {client_id!r}",
                              key="--client-id")
        base = base_url.rstrip("/")
        attributes = {
            "pkce.code.challenge.method": "S256",
            "backchannel.logout.url": f"{base}/oidc-idle/backchannel-logout",
            "backchannel.logout.session.required": "true",
            "backchannel.logout.revoke.offline.tokens": "false",
            "post.logout.redirect.uris": f"{base}/*",
        }
        redirect_uri = f"{base}/oidc-idle/callback"
        rep: dict[str, Any] = {
            "clientId": client_id, "enabled": True, "protocol": "openid-connect",
            "publicClient": False, "clientAuthenticatorType": "client-secret",
            "standardFlowEnabled": True, "implicitFlowEnabled": False,
            "directAccessGrantsEnabled": False, "serviceAccountsEnabled": True,
            "frontchannelLogout": False, "rootUrl": base, "baseUrl": "/",
            "redirectUris": [redirect_uri], "webOrigins": [base], "attributes": attributes,
        }
        mapper = {"name": "oidc-idle worker audience", "protocol": "openid-connect",
                  "protocolMapper": "oidc-audience-mapper",
                  "config": {"included.custom.audience": audience,
                             "access.token.claim": "true", "id.token.claim": "false",
                             "introspection.token.claim": "true"}}
        try:
            uuid = self._admin.get_client_id(client_id)
            if uuid is None:
                uuid = self._admin.create_client({**rep, "protocolMappers": [mapper]})
                action = "created"
            else:
                current = self._admin.get_client(uuid)
                attrs = {**(current.get("attributes") or {}), **attributes}
                self._admin.update_client(uuid, {**rep, "attributes": attrs})
                mappers = {m["name"]: m for m in self._admin.get_mappers_from_client(uuid)}
                if mapper["name"] in mappers:
                    existing = mappers[mapper["name"]]
                    self._admin.update_client_mapper(uuid, existing["id"],
                                                     {**mapper, "id": existing["id"]})
                else:
                    self._admin.add_mapper_to_client(uuid, mapper)
                action = "updated"
            secret = self._admin.get_client_secrets(uuid).get("value")
        except _PkcError as exc:
            code = getattr(exc, "response_code", None)
            hint = " (the admin user lacks the manage-clients role)" if code == 403 else ""
            raise KeycloakError(f"Keycloak refused to register {client_id}: {code} "
                                f"{_body(exc)}{hint}", keycloak_status=code) from exc
        return {"action": action, "uuid": uuid, "secret": secret,
                "redirect_uri": redirect_uri,
                "backchannel_url": attributes["backchannel.logout.url"]}
