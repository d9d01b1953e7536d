"""Flask session interface over :class:`RpStore` (server-side, killable sessions)."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from ..clock import Clock
from .store import RpStore

IDENT_KEY = "oidc_idle"


class ServerSession(CallbackDict[str, Any], SessionMixin):
    def __init__(self, initial: dict[str, Any] | None, session_id: str, new: bool) -> None:
        def on_update(_: Any) -> None:
            self.modified = True

        super().__init__(initial or {}, on_update)
        self.session_id = session_id
        self.new = new
        self.modified = False
        self.rotate = False

    def regenerate(self) -> None:
        """A new id at login, so a cookie planted before login is worthless (fixation)."""
        self.rotate = True
        self.modified = True


class ServerSessionInterface(SessionInterface):
    def __init__(self, store: RpStore, cookie_name: str, secure: bool, clock: Clock) -> None:
        self.store = store
        self.cookie_name = cookie_name
        self.secure = secure
        self.clock = clock

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        cookie = request.cookies.get(self.cookie_name)
        if cookie and len(cookie) < 200:
            data = self.store.load(cookie)
            if data is not None:
                return ServerSession(data, cookie, new=False)
        return ServerSession(None, secrets.token_urlsafe(32), new=True)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, ServerSession)
        now = self.clock.now_ms()
        if session.rotate:
            if not session.new:
                self.store.delete(session.session_id)
            session.session_id = secrets.token_urlsafe(32)
            session.new = True
        if not session:
            if not session.new:
                self.store.delete(session.session_id)
                response.delete_cookie(self.cookie_name, path="/")
            return
        if not (session.modified or session.new):
            return
        ident = session.get(IDENT_KEY)
        if session.new:
            self.store.insert(session.session_id, dict(session), ident, now)
        elif not self.store.update(session.session_id, dict(session), ident, now):
            # Killed while this request ran (a back-channel logout): never resurrect it.
            response.delete_cookie(self.cookie_name, path="/")
            return
        response.set_cookie(self.cookie_name, session.session_id, httponly=True,
                            samesite="Lax", secure=self.secure, path="/")
