"""The worker's HTTP API (v1), a thin Flask layer over :class:`Worker`.

Errors are ``application/problem+json`` (RFC 9457); no stack trace ever
reaches a client. See DESIGN.md, "Worker HTTP API (v1)".
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from ..errors import InvalidInput, KeycloakError, OidcIdleError, StoreError, problem_doc
from .auth import BearerAuth
from .openapi import DOCUMENT
from .service import Worker

log = logging.getLogger("oidc_idle.worker.http")

MAX_BODY = 1 << 20


def problem(doc: dict[str, Any]) -> Response:
    resp = jsonify(doc)
    resp.status_code = doc["status"]
    resp.mimetype = "application/problem+json"
    resp.headers["Cache-Control"] = "no-store"
    return resp


def create_app(worker: Worker, auth: BearerAuth) -> Flask:
    app = Flask("oidc_idle.worker")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions["oidc_idle_worker"] = worker

    @app.errorhandler(OidcIdleError)
    def _oidc_idle_error(exc: OidcIdleError) -> Response:
        return problem(exc.to_problem())

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        return problem(problem_doc(code, (exc.name or "error").lower().replace(" ", "_"),
                                   exc.description or exc.name or "error"))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(problem_doc(500, "internal_error", "the worker failed; see its log"))

    def caller() -> str:
        return auth.client_id(request.headers.get("Authorization"))

    def json_body() -> Any:
        if not request.mimetype == "application/json":
            raise InvalidInput("Content-Type must be application/json", error="unsupported_media")
        try:
            data = request.get_json(silent=True)
        except RecursionError:  # nesting deeper than the parser's stack
            data = None
        if data is None:
            raise InvalidInput("body is not valid JSON", error="malformed_json")
        return data

    @app.post("/v1/activity")
    def activity() -> Response:
        client_id = caller()
        results = worker.ingest(client_id, json_body())
        return _no_store(jsonify({"results": results}))

    @app.get("/v1/sessions/<sid>")
    def get_session(sid: str) -> Response:
        return _no_store(jsonify(worker.status(caller(), sid)))

    @app.delete("/v1/sessions/<sid>")
    def delete_session(sid: str) -> Response:
        resp = jsonify(worker.logout(caller(), sid))
        resp.status_code = 202
        return _no_store(resp)

    @app.get("/v1/policy")
    def policy() -> Response:
        client_id = caller()
        p = worker.policy()
        app_idle = worker.app_idle_ms(client_id, p)
        return _no_store(jsonify({
            "idle_timeout_s": (app_idle or p.idle_timeout_ms) / 1000,
            "realm_idle_timeout_s": p.idle_timeout_ms / 1000,
            "warning_lead_s": p.warning_lead_ms / 1000,
            "absolute_lifetime_s": p.absolute_lifetime_ms / 1000,
            "counted_kinds": sorted(p.counted_kinds),
        }))

    @app.get("/.well-known/jwks.json")
    def jwks() -> Response:
        resp = jsonify(worker.keys.jwks())
        resp.headers["Cache-Control"] = "public, max-age=60"
        return resp

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(DOCUMENT)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(worker.render_metrics(), mimetype="text/plain; version=0.0.4")

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        checks: dict[str, str] = {}
        try:
            worker.store.ping()
            checks["store"] = "ok"
        except StoreError as exc:
            checks["store"] = exc.description
        try:
            worker.keycloak.ping()
            checks["keycloak"] = "ok"
        except KeycloakError as exc:
            checks["keycloak"] = exc.description
        ok = all(v == "ok" for v in checks.values())
        resp = jsonify({"status": "ready" if ok else "not_ready", "checks": checks})
        resp.status_code = 200 if ok else 503
        return resp

    return app


def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp
