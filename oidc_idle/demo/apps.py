"""Two small relying parties for the demo and the tests: a patient portal and an
admin console, on two origins, one SSO session."""

from __future__ import annotations

import html
from typing import Any

from flask import Flask, Response, jsonify, url_for

from ..clock import iso_ms
from ..rp import OidcIdle

APPS: dict[str, dict[str, Any]] = {
    "patient-portal": {"title": "Patient portal", "port": 8781,
                       "secret": "patient-portal-demo-secret", "color": "#0b5cad"},
    "admin-console": {"title": "Admin console", "port": 8782,
                      "secret": "admin-console-demo-secret", "color": "#7a1f5c"},
}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}}
header{{border-bottom:4px solid {color};margin-bottom:1rem}} code{{background:#eee;padding:0 .2rem}}
table{{border-collapse:collapse}} td{{padding:.2rem .6rem;border-bottom:1px solid #ddd}}</style>
</head><body>
<header><h1>{title}</h1></header>
<p>Signed in as <strong id="user">{user}</strong>. SSO session <code id="sid">{sid}</code>.</p>
<p>Idle deadline: <span id="deadline" data-oidc-idle-deadline>{deadline}</span>.
Every click, key press or scroll here counts as activity; this page's status polls do not.</p>
<table aria-label="Demo patient records">
<tr><td>Jane Roe</td><td>MRN 0042</td><td>Allergy: penicillin</td></tr>
<tr><td>John Doe</td><td>MRN 0043</td><td>BP 128/82</td></tr></table>
<p><a href="{logout}">Sign out</a></p>
<script src="{script}" data-clear="demo-access-token"></script>
<script>
try {{ localStorage.setItem("demo-access-token", "demo-token-for-{client}"); }} catch (e) {{}}
</script>
</body></html>
"""


def create_demo_app(client_id: str, *, issuer: str, worker_url: str, session_db: str,
                    secret: str | None = None, extra_config: dict[str, Any] | None = None
                    ) -> Flask:
    meta = APPS.get(client_id, {"title": client_id, "secret": secret, "color": "#333"})
    app = Flask(f"oidc_idle_demo_{client_id.replace('-', '_')}")
    config: dict[str, Any] = dict(
        SECRET_KEY="not-used-sessions-are-server-side",
        OIDC_IDLE_ISSUER=issuer,
        OIDC_IDLE_CLIENT_ID=client_id,
        OIDC_IDLE_CLIENT_SECRET=secret or meta["secret"],
        OIDC_IDLE_WORKER_URL=worker_url,
        OIDC_IDLE_SESSION_DB=session_db,
        OIDC_IDLE_PASSIVE_ENDPOINTS=["poll", "refresh"],
        OIDC_IDLE_CLEAR_STORAGE_KEYS=["demo-access-token"],
    )
    app.config.update({**config, **(extra_config or {})})
    idle = OidcIdle(app)

    @app.get("/")
    def index() -> Response:
        user = idle.user() or {}
        st = app.extensions["oidc_idle"]
        dl = st.store.deadline(user.get("sid", ""))
        body = PAGE.format(
            title=html.escape(meta["title"]), color=meta["color"],
            user=html.escape(str(user.get("name"))), sid=html.escape(str(user.get("sid"))),
            deadline=iso_ms(dl.deadline) if dl else "pending",
            logout=url_for("oidc_idle.logout"), client=html.escape(client_id),
            script=url_for("oidc_idle.static", filename="oidc-idle.js"))
        return Response(body, mimetype="text/html", headers={"Cache-Control": "no-store"})

    @app.get("/whoami")
    def whoami() -> Response:
        """User-initiated API call (counted)."""
        return jsonify(idle.user())

    @app.get("/poll")
    def poll() -> Response:
        """A background poll (listed in OIDC_IDLE_PASSIVE_ENDPOINTS: never counted)."""
        return jsonify({"ok": True})

    @app.post("/refresh")
    def refresh() -> Response:
        """Refresh the tokens (reported as token_refresh: never counted)."""
        return jsonify(idle.refresh_tokens())

    return app
