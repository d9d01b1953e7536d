"""Small JWT helpers shared by the worker's bearer check and the logout-token check."""

from __future__ import annotations

import json
from base64 import urlsafe_b64decode
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError


def _b64json(segment: str) -> dict[str, Any]:
    try:
        data = json.loads(urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def unverified(token: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, *not* verified: only for choosing the key."""
    if not isinstance(token, str) or token.count(".") != 2:
        raise ValueError("not a JWS in compact serialization")
    head, payload, _ = token.split(".")
    return _b64json(head), _b64json(payload)


def verified_claims(token: str, key: Any, algorithms: list[str]) -> dict[str, Any]:
    """Claims of a compact JWS whose signature checks with ``key`` under ``algorithms``."""
    try:
        compact = jws.deserialize_compact(token, key, algorithms=algorithms)
        claims = json.loads(compact.payload)
    except (JoseError, ValueError) as exc:
        raise ValueError(f"bad signature ({type(exc).__name__})") from exc
    if not isinstance(claims, dict):
        raise ValueError("claims are not a JSON object")
    return claims
