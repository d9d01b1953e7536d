"""The one exception tree of oidc-idle.

Every error the package raises on purpose derives from :class:`OidcIdleError`,
which carries a machine-readable ``error`` code and a human ``description``
(the shape Authlib uses, and the fields of an RFC 9457 problem document)::

    OidcIdleError
    ├── ConfigError            bad OIDC_IDLE_* setting or bad CLI argument (names the key)
    ├── PolicyError            a realm policy attribute the worker refuses (names the attribute)
    ├── InvalidInput           a request the worker or plugin will not act on (HTTP 400)
    │   └── InvalidLogoutToken a back-channel logout token that fails OIDC BCL 1.0 §2.6
    ├── Unauthorized           missing or invalid bearer token (HTTP 401)
    ├── Forbidden              authenticated, but not allowed to touch that session (HTTP 403/404)
    ├── NotFound               no such session visible to the caller (HTTP 404)
    ├── KeycloakError          Keycloak answered badly or not at all (keeps status and body)
    ├── StoreError             the session store failed
    └── ServiceError           a local service (Keycloak dev server, demo) could not start/stop

HTTP layers map ``status`` and the fields to ``application/problem+json``.
"""

from __future__ import annotations

from typing import Any


class OidcIdleError(Exception):
    """Base of every oidc-idle error."""

    error = "oidc_idle_error"
    status = 500

    def __init__(self, description: str, *, error: str | None = None, **detail: Any) -> None:
        super().__init__(description)
        self.description = description
        if error is not None:
            self.error = error
        self.detail = detail

    def to_problem(self) -> dict[str, Any]:
        """An RFC 9457 problem document for this error."""
        return problem_doc(self.status, self.error, self.description,
                           **{k: v for k, v in self.detail.items() if _jsonable(v)})


def problem_doc(status: int, error: str, detail: str, **extra: Any) -> dict[str, Any]:
    """An RFC 9457 problem document: ``type``, ``title``, ``status``, ``detail``."""
    return {"type": f"urn:oidc-idle:error:{error}", "title": error.replace("_", " "),
            "status": status, "detail": detail, **extra}


def _jsonable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | list | dict) or value is None


class ConfigError(OidcIdleError):
    error = "config_error"


class PolicyError(OidcIdleError):
    error = "policy_error"


class InvalidInput(OidcIdleError):
    error = "invalid_request"
    status = 400


class InvalidLogoutToken(InvalidInput):
    error = "invalid_logout_token"


class Unauthorized(OidcIdleError):
    error = "unauthorized"
    status = 401


class Forbidden(OidcIdleError):
    error = "forbidden"
    status = 403


class NotFound(OidcIdleError):
    error = "not_found"
    status = 404


class KeycloakError(OidcIdleError):
    """Keycloak failed; ``detail`` keeps ``keycloak_status`` and ``keycloak_body``."""

    error = "keycloak_error"
    status = 502


class StoreError(OidcIdleError):
    error = "store_error"
    status = 503


class ServiceError(OidcIdleError):
    error = "service_error"
