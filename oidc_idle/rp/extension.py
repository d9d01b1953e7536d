"""``OidcIdle``: the Flask extension an app adds to join the realm's idle policy.

    app = Flask(__name__)
    app.config.update(OIDC_IDLE_ISSUER=..., OIDC_IDLE_CLIENT_ID=..., ...)
    OidcIdle(app)                    # or idle = OidcIdle(); idle.init_app(app)

Every endpoint then requires a live SSO session (fail closed; list exceptions
in ``OIDC_IDLE_PUBLIC_ENDPOINTS``). Login is the authorization-code flow with
PKCE (RFC 7636) through authlib. User-initiated requests are reported to the
worker as activity; requests the app marks passive (``X-OIDC-Idle-Passive``
header, ``OIDC_IDLE_PASSIVE_ENDPOINTS``) and token refreshes are reported as
passive kinds, which never reset the clock (NIST SP 800-63B §7.2).
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any
from urllib.parse import urlencode, urlparse

import requests
from authlib.integrations.flask_client import OAuth
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    jsonify,
    redirect,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response as WResponse

from .. import logout_token
from ..clock import Clock, SystemClock, iso_ms
from ..errors import InvalidLogoutToken, StoreError
from ..keys import RemoteKeySet
from ..policy import COUNTED_KINDS
from .pages import SIGNED_OUT_HTML, UNAVAILABLE_HTML
from .reporter import Reporter, ServiceToken, WorkerClient, result_deadline
from .sessions import IDENT_KEY, ServerSessionInterface
from .settings import RpSettings
from .store import Deadline, RpStore

log = logging.getLogger("oidc_idle.rp")

EXT_KEY = "oidc_idle"
PASSIVE_HEADER = "X-OIDC-Idle-Passive"
TOKENS_KEY = "oidc_idle_tokens"
NEXT_KEY = "oidc_idle_next"
APP_ENDED = "app_ended"
MAX_INTERACTION_AGE_MS = 30_000

bp = Blueprint("oidc_idle", __name__, url_prefix="/oidc-idle", static_folder="static")


class _State:
    """Per-app state, kept in ``app.extensions["oidc_idle"]`` (never on ``self``)."""

    def __init__(self, app: Flask, settings: RpSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.store = RpStore(settings.session_db)
        self.idle_ms = 0  # the policy's idle timeout, as the worker last said
        self.http = requests.Session()
        timeout = settings.worker_timeout_ms / 1000
        self.oauth = OAuth(app)
        self.oidc = self.oauth.register(
            "keycloak", client_id=settings.client_id, client_secret=settings.client_secret,
            server_metadata_url=f"{settings.issuer}/.well-known/openid-configuration",
            client_kwargs={"scope": "openid", "code_challenge_method": "S256"},
        )
        self.token = ServiceToken(self._token_url, settings.client_id, settings.client_secret,
                                  self.http, timeout)
        self.worker = WorkerClient(settings.worker_url, self.token, self.http, timeout)
        self.reporter = Reporter(self.worker, clock, self.on_result,
                                 max_queue=settings.report_queue_max,
                                 interval_s=settings.report_interval_ms / 1000)
        self.trusted = {
            settings.issuer: logout_token.TrustedIssuer(
                settings.issuer,
                RemoteKeySet(f"{settings.issuer}/protocol/openid-connect/certs",
                             min_refresh_s=1, max_age_s=settings.keys_max_age_ms / 1000)),
            settings.worker_issuer: logout_token.TrustedIssuer(
                settings.worker_issuer,
                RemoteKeySet(f"{settings.worker_url}/.well-known/jwks.json", min_refresh_s=1,
                             max_age_s=settings.keys_max_age_ms / 1000),
                speaks_for=settings.issuer),
        }

    @property
    def fail_closed_after_ms(self) -> int:
        """How old deadline news may be before it is re-checked: never older than
        the idle timeout itself (if the worker has been unreachable that long, the
        plugin cannot know the session is alive, so it fails closed)."""
        return min(self.settings.fail_closed_after_ms, self.idle_ms or 1 << 62)

    def _token_url(self) -> str:
        return str(self.oidc.load_server_metadata()["token_endpoint"])

    # -- answers from the worker ------------------------------------------
    def on_result(self, result: dict[str, Any], now: int) -> None:
        sid = result.get("sid")
        if not isinstance(sid, str):
            return
        if result.get("error") == "unknown_session":
            # Keycloak does not know this session with this app: it is over.
            self.end_local(sid, "unknown to Keycloak")
            return
        dl = result_deadline(result)
        if dl is None:
            return
        idle_s = result.get("idle_timeout_s")
        if isinstance(idle_s, int | float) and idle_s > 0:
            self.idle_ms = int(idle_s * 1000)
        state = str(result.get("state", "active"))
        if state == "active" and result.get("app_state") == "ended":
            state = APP_ENDED  # this app's own, stricter timeout; SSO goes on
        self.store.set_deadline(Deadline(sid, state, dl[0], dl[1], now))
        if state != "active":
            self.end_local(sid, f"worker says {state}")

    def end_local(self, sid: str, why: str) -> int:
        n = self.store.kill_sid(sid)
        if n:
            log.info("ended %d local session(s) for sid=%s: %s", n, sid, why)
        return n

    def refresh_status(self, sid: str) -> bool | None:
        """Ask the worker (a passive read); True alive, False dead, None unreachable."""
        body = self.worker_view(sid)
        if body is None:
            return None
        if not body:
            return False
        self.on_result(body, self.clock.now_ms())
        return bool(body.get("alive"))

    def worker_view(self, sid: str) -> dict[str, Any] | None:
        """The worker's view of a session for this app; {} if it has none; None if
        the worker cannot be asked."""
        try:
            resp = self.worker.call("GET", f"/v1/sessions/{sid}")
        except Exception as exc:
            log.warning("worker unreachable for the deadline check of sid=%s: %s", sid, exc)
            return None
        if resp.status_code not in (200, 404):
            return None
        return dict(resp.json()) if resp.status_code == 200 else {}


def _state() -> _State:
    return current_app.extensions[EXT_KEY]  # type: ignore[no-any-return]


class OidcIdle:
    """The Flask extension (``OidcIdle(app)`` or ``init_app(app)``)."""

    def __init__(self, app: Flask | None = None, *, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        settings = RpSettings.from_config(app.config, app.instance_path)
        if "OIDC_IDLE_SESSION_DB" not in app.config:
            os.makedirs(app.instance_path, exist_ok=True)
        state = _State(app, settings, self._clock)
        app.extensions[EXT_KEY] = state
        app.session_interface = ServerSessionInterface(state.store, settings.session_cookie,
                                                       settings.cookie_secure, self._clock)
        app.register_blueprint(bp)
        app.before_request(_guard)

    # -- helpers for apps --------------------------------------------------
    @staticmethod
    def user() -> dict[str, Any] | None:
        """The signed-in identity (``sid``, ``sub``, ``iss``, ``name``), or None."""
        ident = session.get(IDENT_KEY)
        return dict(ident) if ident else None

    @staticmethod
    def refresh_tokens() -> dict[str, Any]:
        """Refresh this session's tokens at Keycloak. Reported as ``token_refresh``,
        which never resets the idle clock: a refresh proves a tab is open, not that a
        person is there (NIST SP 800-63B §7.2)."""
        st = _state()
        ident, tokens = session[IDENT_KEY], session[TOKENS_KEY]
        resp = st.http.post(st._token_url(), data={
            "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
            "client_id": st.settings.client_id, "client_secret": st.settings.client_secret,
        }, timeout=st.settings.worker_timeout_ms / 1000)
        st.reporter.report(ident["sid"], ident["sub"], "token_refresh")
        if resp.status_code != 200:
            return {"ok": False, "status": resp.status_code, "error": resp.json().get("error")}
        body = resp.json()
        session[TOKENS_KEY] = {**tokens, **{k: body[k] for k in
                                             ("access_token", "refresh_token") if k in body}}
        return {"ok": True}

    @staticmethod
    def reporter() -> Reporter:
        return _state().reporter


# -- the guard: fail closed on every request ---------------------------------

def _is_passive() -> bool:
    st = _state()
    return (request.headers.get(PASSIVE_HEADER) == "1"
            or request.endpoint in st.settings.passive_endpoints
            or request.endpoint == "oidc_idle.status")


def _guard() -> WResponse | None:
    st = _state()
    if request.routing_exception is not None:
        return None  # Flask answers 404 / 405; nothing here to protect
    endpoint = request.endpoint or ""
    if endpoint.startswith("oidc_idle.") and endpoint not in ("oidc_idle.status",
                                                              "oidc_idle.activity"):
        return None
    if endpoint in st.settings.public_endpoints:
        return None
    try:
        ident = session.get(IDENT_KEY)
    except StoreError:
        return _unavailable("the session store is unavailable")
    if not ident:
        return _to_login()
    now = st.clock.now_ms()
    sid = ident["sid"]
    dl = st.store.deadline(sid)
    if dl is not None and dl.state != "active":
        st.end_local(sid, f"known {dl.state}")
        session.clear()
        return _to_login()
    # DESIGN.md invariant: a relying party never serves a request on a session whose
    # deadline has passed, whether or not the back-channel call arrived. A stale
    # cache (another app may have moved the shared clock) is checked with the worker.
    limit = st.fail_closed_after_ms
    stale = (dl is None and now - ident.get("login_at", 0) > limit) \
        or (dl is not None and (dl.deadline <= now or now - dl.updated_at > limit))
    if stale:
        alive = st.refresh_status(sid)
        if alive is None:
            return _unavailable("the idle-timeout service cannot confirm your session")
        if not alive:
            st.end_local(sid, "deadline passed")
            session.clear()
            return _to_login()
    if endpoint == "oidc_idle.activity":
        return None
    st.reporter.report(sid, ident["sub"], "poll" if _is_passive() else "request", now)
    return None


def _to_login() -> WResponse:
    if request.endpoint in ("oidc_idle.status", "oidc_idle.activity") or \
            request.headers.get(PASSIVE_HEADER) == "1" or request.is_json:
        return _no_store_json(401, {"state": "signed_out", "login": url_for("oidc_idle.login")})
    return redirect(url_for("oidc_idle.login", next=request.full_path.rstrip("?")))


def _unavailable(why: str) -> Response:
    resp = Response(UNAVAILABLE_HTML.replace("{why}", why), status=503, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Retry-After"] = "5"
    return resp


def _safe_next(value: str | None) -> str:
    """Only same-site relative paths: never an open redirect."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value \
            or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "/"
    parsed = urlparse(value)
    return value if not parsed.scheme and not parsed.netloc else "/"


# -- endpoints -----------------------------------------------------------------

@bp.get("/login")
def login() -> Any:
    st = _state()
    # Login state of abandoned attempts is the only thing that piles up here.
    st.store.purge_anonymous(older_than=st.clock.now_ms() - 86_400_000)
    session.clear()
    session[NEXT_KEY] = _safe_next(request.args.get("next"))
    # prompt=login (OIDC Core §3.1.2.1): Keycloak must ask for the password even
    # though the SSO session lives, because this app's own idle timeout ended it.
    extra = {"prompt": "login"} if request.args.get("reauth") == "1" else {}
    return st.oidc.authorize_redirect(url_for("oidc_idle.callback", _external=True), **extra)


@bp.get("/callback")
def callback() -> Any:
    st = _state()
    if "error" in request.args:
        return Response(f"login failed: {request.args.get('error')}", status=400,
                        mimetype="text/plain")
    try:
        token = st.oidc.authorize_access_token()
    except Exception as exc:  # authlib raises several types for bad state, codes, tokens
        log.warning("login callback rejected: %s", exc)
        return Response("login failed: the login response could not be verified; "
                        "please start again", status=400, mimetype="text/plain")
    claims = token.get("userinfo") or {}
    sid, sub = claims.get("sid"), claims.get("sub")
    if not sid or not sub:
        return Response("login failed: the ID token has no sid/sub (enable the 'basic' "
                        "scope in Keycloak)", status=400, mimetype="text/plain")
    nxt = session.get(NEXT_KEY, "/")
    session.clear()
    now = st.clock.now_ms()
    auth_time = claims.get("auth_time")
    # auth_time has one-second resolution (OIDC Core §2): take the end of that
    # second. An earlier silent SSO login cannot pass for a fresh one, since an
    # app's own clock ends at least its idle timeout (>= 1 s) after the login.
    auth_ms = int(auth_time) * 1000 + 999 if isinstance(auth_time, int | float) else None
    dl = st.store.deadline(sid)
    if dl is not None and (dl.state != "active" or dl.deadline <= now):
        if auth_ms is not None and auth_ms > dl.updated_at:
            # The user typed the password after this app's session ended (prompt=login).
            st.store.forget_deadline(sid)
        else:
            view = st.worker_view(sid) or {}
            if view.get("state") == "active" and view.get("app_state") == "ended":
                # Only this app's own idle timeout ran out; the SSO session goes on.
                # Re-authentication is required: no silent sign-in through SSO.
                return redirect(url_for("oidc_idle.login", next=nxt, reauth="1"))
            # Keycloak still had the SSO session (the worker deletes it within about
            # a second of the deadline) and signed the user in silently. That session
            # is dead: never open a local session on it, and never bounce back to
            # login (which would loop while Keycloak still knows it).
            return redirect(url_for("oidc_idle.signed_out", why="idle"))
    session.regenerate()  # type: ignore[attr-defined]
    session[IDENT_KEY] = {"sid": sid, "sub": sub, "iss": claims.get("iss"),
                          "name": claims.get("preferred_username") or sub, "login_at": now}
    session[TOKENS_KEY] = {k: token.get(k) for k in
                           ("access_token", "refresh_token", "id_token", "expires_at")}
    st.reporter.report(sid, sub, "navigation", now, auth_time=auth_ms)
    return redirect(_safe_next(nxt))


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Any:
    st = _state()
    ident = session.get(IDENT_KEY)
    tokens = session.get(TOKENS_KEY) or {}
    session.clear()
    signed_out = url_for("oidc_idle.signed_out", why="logout", _external=True)
    if not ident:
        return redirect(signed_out)
    st.end_local(ident["sid"], "user logout")
    try:
        st.worker.call("DELETE", f"/v1/sessions/{ident['sid']}")
    except Exception as exc:  # Keycloak's end-session below still logs the user out
        log.warning("worker unreachable for user logout of sid=%s: %s", ident["sid"], exc)
    end = st.oidc.load_server_metadata().get("end_session_endpoint")
    if not end:
        return redirect(signed_out)
    query = {"client_id": st.settings.client_id, "post_logout_redirect_uri": signed_out}
    if tokens.get("id_token"):
        query["id_token_hint"] = tokens["id_token"]
    return redirect(f"{end}?{urlencode(query)}")


@bp.get("/signed-out")
def signed_out() -> Response:
    st = _state()
    why = {"idle": "you were signed out after a period of inactivity",
           "logout": "you signed out"}.get(request.args.get("why", "idle"),
                                           "your session ended")
    html = (SIGNED_OUT_HTML.replace("{why}", why)
            .replace("{login}", url_for("oidc_idle.login"))
            .replace("{keys}", ",".join(st.settings.clear_storage_keys))
            .replace("{script}", url_for("oidc_idle.static", filename="oidc-idle.js")))
    resp = Response(html, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Clear-Site-Data"] = '"cache", "storage"'
    return resp


@bp.post("/backchannel-logout")
def backchannel_logout() -> Response:
    """OIDC Back-Channel Logout 1.0 §2.5-§2.8: form POST, 200 or 400, never cached."""
    st = _state()
    token = request.form.get("logout_token")
    now_s = st.clock.now_ms() // 1000
    try:
        if not token:
            raise InvalidLogoutToken("missing logout_token form parameter")
        req = logout_token.validate(
            token, trusted=st.trusted, audience=st.settings.client_id, now_s=now_s,
            skew_s=st.settings.clock_skew_ms // 1000,
            max_age_s=st.settings.logout_token_max_age_ms // 1000,
            seen_jti=partial(_seen_jti, st, now_s))
        if req.sid:
            ended = st.end_local(req.sid, f"back-channel logout from {req.issuer.issuer}")
            now = st.clock.now_ms()
            st.store.set_deadline(Deadline(req.sid, "terminated", now, now, now))
        else:
            assert req.sub is not None
            ended = st.store.kill_sub(req.issuer.session_issuer, req.sub)
    except InvalidLogoutToken as exc:
        log.warning("back-channel logout rejected: %s", exc.description)
        return _no_store_json(400, {"error": "invalid_request",
                                    "error_description": exc.description})
    except StoreError as exc:
        # §2.8: "If the logout request cannot be processed ... 400"; the sender retries.
        log.error("back-channel logout could not end sessions: %s", exc.description)
        return _no_store_json(400, {"error": "temporarily_unavailable",
                          "error_description": "the session store failed"})
    # §2.8: success also when the session is already gone (a duplicate notice).
    return _no_store_json(200, {"ended": ended})


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> Response:
    return _no_store_json(413, {"error": "invalid_request",
                                "error_description": "request too large"})


def _seen_jti(st: _State, now_s: int, iss: str, jti: str, exp: int) -> bool:
    return st.store.seen_jti(iss, jti, exp, now_s)


def _no_store_json(status: int, body: dict[str, Any]) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/status")
def status() -> WResponse:
    """Passive: what the browser snippet polls. Reading it is never activity."""
    st = _state()
    ident = session[IDENT_KEY]
    now = st.clock.now_ms()
    dl = st.store.deadline(ident["sid"])
    if dl is None or now >= dl.warn_at:
        # The warning is due by what this app knows; the shared clock may have been
        # moved by another app. Ask the worker (a passive read, never activity).
        st.refresh_status(ident["sid"])
        dl = st.store.deadline(ident["sid"])
    if dl is not None and dl.state != "active":
        session.clear()
        return _to_login()
    body: dict[str, Any] = {"state": "active", "now": iso_ms(now), "user": ident.get("name")}
    if dl is not None:
        body.update(deadline=iso_ms(dl.deadline), warn_at=iso_ms(dl.warn_at),
                    seconds_left=max(0.0, (dl.deadline - now) / 1000))
    return _no_store_json(200, body)


@bp.post("/activity")
def activity() -> Response:
    """Interactions the snippet saw (keys, clicks, scrolls, touches): counted."""
    st = _state()
    ident = session[IDENT_KEY]
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        data = None
    kinds = data.get("kinds") if isinstance(data, dict) else None
    if not isinstance(kinds, list) or not kinds or len(kinds) > 20 or \
            not all(isinstance(k, str) and k in COUNTED_KINDS and k != "request"
                    for k in kinds):
        return _no_store_json(400, {"error": "invalid_request",
                                    "error_description": "kinds must list counted "
                                                         "interaction kinds"})
    ago = data.get("ago_ms", 0) if isinstance(data, dict) else 0
    if not isinstance(ago, int | float) or isinstance(ago, bool) or not 0 <= ago < 1e12:
        ago = 0  # also NaN and infinities
    # The snippet batches interactions for a few seconds; it says how long ago the
    # newest one was, so the clock starts from the interaction, not from receipt.
    at = st.clock.now_ms() - int(min(ago, MAX_INTERACTION_AGE_MS))
    for kind in dict.fromkeys(kinds):
        st.reporter.report(ident["sid"], ident["sub"], kind, at)
    return Response(status=204)
