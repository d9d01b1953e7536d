"""The worker API's OpenAPI 3.1 document, served at ``GET /openapi.json``."""

from __future__ import annotations

from typing import Any

from ..policy import ALL_KINDS

_PROBLEM = {"description": "RFC 9457 problem", "content": {"application/problem+json": {
    "schema": {"$ref": "#/components/schemas/Problem"}}}}
_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]


def _ok(schema: str, code: str = "200") -> dict[str, Any]:
    return {code: {"description": "OK", "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{schema}"}}}},
        "401": _PROBLEM, "404": _PROBLEM}


SID = {"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "oidc-idle worker", "version": "1",
             "description": "One idle clock per SSO session. Relying parties authenticate "
                            "with their service account's access token (client credentials)."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "bearerFormat": "JWT"}},
        "schemas": {
            "Problem": {"type": "object", "required": ["type", "title", "status", "detail"],
                        "properties": {"type": {"type": "string"},
                                       "title": {"type": "string"},
                                       "status": {"type": "integer"},
                                       "detail": {"type": "string"},
                                       "pointer": {"type": "string"}}},
            "Event": {"type": "object", "required": ["sid", "sub", "kind"],
                      "properties": {
                          "sid": {"type": "string", "maxLength": 256},
                          "sub": {"type": "string", "maxLength": 256},
                          "kind": {"enum": sorted(ALL_KINDS)},
                          "at": {"type": "string", "format": "date-time"},
                          "auth_time": {"type": "string", "format": "date-time"}}},
            "Batch": {"type": "object", "required": ["events"], "properties": {
                "events": {"type": "array", "minItems": 1, "maxItems": 1000,
                           "items": {"$ref": "#/components/schemas/Event"}}}},
            "Session": {"type": "object", "properties": {
                "sid": {"type": "string"},
                "state": {"enum": ["active", "terminating", "terminated"]},
                "app_state": {"enum": ["active", "ended"]},
                "alive": {"type": "boolean"},
                "last_activity_at": {"type": "string", "format": "date-time"},
                "deadline": {"type": "string", "format": "date-time"},
                "warn_at": {"type": "string", "format": "date-time"},
                "seconds_left": {"type": "number"},
                "idle_timeout_s": {"type": "number"},
                "counted": {"type": "boolean"},
                "error": {"enum": ["unknown_session", "verification_deferred",
                                  "keycloak_unavailable"]},
                "detail": {"type": "string"}}},
            "Results": {"type": "object", "properties": {
                "results": {"type": "array", "items": {"$ref": "#/components/schemas/Session"}}}},
            "Policy": {"type": "object", "properties": {
                "idle_timeout_s": {"type": "number"}, "realm_idle_timeout_s": {"type": "number"},
                "warning_lead_s": {"type": "number"}, "absolute_lifetime_s": {"type": "number"},
                "counted_kinds": {"type": "array", "items": {"type": "string"}}}},
        },
    },
    "paths": {
        "/v1/activity": {"post": {
            "summary": "Report a batch of activity; answers per event",
            "security": _AUTH,
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Batch"}}}},
            "responses": {**_ok("Results"), "400": _PROBLEM, "413": _PROBLEM}}},
        "/v1/sessions/{sid}": {
            "get": {"summary": "A session's state (reading is never activity)",
                    "security": _AUTH, "parameters": [SID], "responses": _ok("Session")},
            "delete": {"summary": "The user logged out: terminate everywhere now",
                       "security": _AUTH, "parameters": [SID],
                       "responses": _ok("Session", "202")}},
        "/v1/policy": {"get": {"summary": "The policy in force for the calling client",
                               "security": _AUTH, "responses": _ok("Policy")}},
        "/.well-known/jwks.json": {"get": {"summary": "The worker's logout-token keys",
                                           "responses": {"200": {"description": "JWKS"}}}},
        "/openapi.json": {"get": {"summary": "This document",
                                  "responses": {"200": {"description": "OpenAPI 3.1"}}}},
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}},
        "/readyz": {"get": {"summary": "Readiness: store and Keycloak reachable",
                            "responses": {"200": {"description": "ready"},
                                          "503": {"description": "not ready"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics",
                             "responses": {"200": {"description": "text exposition"}}}},
    },
}
