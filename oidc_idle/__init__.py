"""oidc-idle: automatic logoff for OIDC realms.

One idle clock per Keycloak SSO session, measured on real user activity,
enforced at the identity provider (the worker deletes the session through the
Admin API) and in every app (back-channel logout plus a fail-closed check in
the relying-party plugin). See DESIGN.md.
"""

from .errors import (
    ConfigError,
    Forbidden,
    InvalidInput,
    InvalidLogoutToken,
    KeycloakError,
    NotFound,
    OidcIdleError,
    PolicyError,
    ServiceError,
    StoreError,
    Unauthorized,
)
from .policy import COUNTED_KINDS, PASSIVE_KINDS, Policy

__version__ = "0.1.0"

__all__ = [
    "COUNTED_KINDS",
    "PASSIVE_KINDS",
    "ConfigError",
    "Forbidden",
    "InvalidInput",
    "InvalidLogoutToken",
    "KeycloakError",
    "NotFound",
    "OidcIdleError",
    "Policy",
    "PolicyError",
    "ServiceError",
    "StoreError",
    "Unauthorized",
]
