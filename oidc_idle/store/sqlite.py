"""SQLite backend: the embedded default for one worker node.

WAL mode, one connection per thread, ``BEGIN IMMEDIATE`` for every write
that must be atomic (SQLite then holds the single writer lock, so a claim or a
finish is exactly-once by construction). Partial indexes on the deadline and
the lease make the sweep read only what is due.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from .. import audit as audit_mod
from ..sqlite_db import SqliteDb
from .base import (
    ACTIVE,
    TERMINATED,
    TERMINATING,
    AppClock,
    AuditEntry,
    ClientRecord,
    NewNotification,
    Notification,
    SessionRecord,
    SessionStore,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    sid TEXT PRIMARY KEY,
    sub TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    state TEXT NOT NULL,
    clients TEXT NOT NULL DEFAULT '[]',
    reason TEXT,
    lease_owner TEXT,
    lease_until INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    terminated_at INTEGER,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS sessions_due ON sessions(deadline) WHERE state = 'active';
CREATE INDEX IF NOT EXISTS sessions_lease ON sessions(lease_until) WHERE state = 'terminating';
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sid TEXT NOT NULL,
    sub TEXT NOT NULL,
    client_id TEXT NOT NULL,
    url TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending',
    last_status INTEGER,
    last_error TEXT,
    delivered_at INTEGER,
    history TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_attempt_at) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY,
    backchannel_url TEXT,
    service_account_sub TEXT,
    fetched_at INTEGER NOT NULL,
    idle_timeout_ms INTEGER
);
CREATE TABLE IF NOT EXISTS app_clocks (
    sid TEXT NOT NULL,
    client_id TEXT NOT NULL,
    last_activity_at INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    state TEXT NOT NULL,
    ended_at INTEGER,
    PRIMARY KEY (sid, client_id)
);
CREATE INDEX IF NOT EXISTS app_clocks_due ON app_clocks(deadline) WHERE state = 'active';
CREATE TABLE IF NOT EXISTS signing_keys (
    kid TEXT PRIMARY KEY,
    private_jwk TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 1
);
"""

_SESSION_COLS = (
    "sid, sub, started_at, last_activity_at, deadline, state, clients, reason, "
    "lease_owner, lease_until, attempts, terminated_at, last_error"
)
_NOTIF_COLS = (
    "id, sid, sub, client_id, url, created_at, expires_at, next_attempt_at, attempts, "
    "state, last_status, last_error, delivered_at, history"
)
MAX_HISTORY = 50
log = logging.getLogger("oidc_idle.store")


def _notification(row: tuple[Any, ...]) -> Notification:
    values = list(row)
    values[-1] = tuple(json.loads(values[-1]))
    return Notification(*values)


def _session(row: tuple[Any, ...]) -> SessionRecord:
    values = list(row)
    values[6] = tuple(json.loads(values[6]))
    return SessionRecord(*values)


class SQLiteStore(SessionStore):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._db = SqliteDb(path, SCHEMA, "SQLite store")
        if self.path != ":memory:":
            with contextlib.suppress(OSError):  # holds the worker's private signing keys
                os.chmod(self.path, 0o600)

    def close(self) -> None:
        self._db.close()

    def ping(self) -> None:
        self._db.read("SELECT 1")

    # -- sessions ---------------------------------------------------------
    def get_session(self, sid: str) -> SessionRecord | None:
        rows = self._db.read(f"SELECT {_SESSION_COLS} FROM sessions WHERE sid = ?", (sid,))
        return _session(rows[0]) if rows else None

    def create_session(self, record: SessionRecord) -> bool:
        with self._db.tx() as db:
            cur = db.execute(
                f"INSERT OR IGNORE INTO sessions ({_SESSION_COLS}) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (record.sid, record.sub, record.started_at, record.last_activity_at,
                 record.deadline, record.state, json.dumps(sorted(record.clients)),
                 record.reason, record.lease_owner, record.lease_until, record.attempts,
                 record.terminated_at, record.last_error),
            )
            return cur.rowcount == 1

    def add_client(self, sid: str, client_id: str) -> None:
        with self._db.tx() as db:
            row = db.execute("SELECT clients FROM sessions WHERE sid = ?", (sid,)).fetchone()
            if row is None:
                return
            clients = set(json.loads(row[0]))
            if client_id not in clients:
                clients.add(client_id)
                db.execute("UPDATE sessions SET clients = ? WHERE sid = ?",
                           (json.dumps(sorted(clients)), sid))

    def record_activity(self, sid: str, at: int, deadline: int, now: int) -> bool:
        with self._db.tx() as db:
            cur = db.execute(
                "UPDATE sessions SET last_activity_at = ?, deadline = ? "
                "WHERE sid = ? AND state = ? AND deadline > ? AND last_activity_at < ?",
                (at, deadline, sid, ACTIVE, now, at),
            )
            return cur.rowcount == 1

    def claim_due(self, now: int, owner: str, lease_ms: int, limit: int) -> list[SessionRecord]:
        with self._db.tx() as db:
            rows = db.execute(
                f"SELECT {_SESSION_COLS} FROM sessions WHERE state = ? AND deadline <= ? "
                "ORDER BY deadline LIMIT ?",
                (ACTIVE, now, limit),
            ).fetchall()
            rows += db.execute(
                f"SELECT {_SESSION_COLS} FROM sessions WHERE state = ? AND lease_until <= ? "
                "ORDER BY lease_until LIMIT ?",
                (TERMINATING, now, limit),
            ).fetchall()
            claimed = []
            for row in rows[:limit]:
                rec = _session(row)
                db.execute(
                    "UPDATE sessions SET state = ?, lease_owner = ?, lease_until = ?, "
                    "attempts = attempts + 1 WHERE sid = ?",
                    (TERMINATING, owner, now + lease_ms, rec.sid),
                )
                claimed.append(replace(rec, state=TERMINATING, lease_owner=owner,
                                       lease_until=now + lease_ms, attempts=rec.attempts + 1))
            return claimed

    def reapply_policy(self, idle_timeout_ms: int, absolute_lifetime_ms: int, now: int) -> int:
        with self._db.tx() as db:
            cur = db.execute(
                "UPDATE sessions SET deadline = MIN(last_activity_at + ?, started_at + ?) "
                "WHERE state = ? AND deadline > ? AND reason IS NULL "
                "AND deadline != MIN(last_activity_at + ?, started_at + ?)",
                (idle_timeout_ms, absolute_lifetime_ms, ACTIVE, now, idle_timeout_ms,
                 absolute_lifetime_ms))
            return cur.rowcount

    def request_termination(self, sid: str, reason: str, now: int) -> SessionRecord | None:
        with self._db.tx() as db:
            db.execute(
                "UPDATE sessions SET deadline = MIN(deadline, ?), reason = ? "
                "WHERE sid = ? AND state = ?",
                (now, reason, sid, ACTIVE),
            )
        return self.get_session(sid)

    def defer_termination(self, sid: str, owner: str, retry_at: int, error: str) -> None:
        with self._db.tx() as db:
            db.execute(
                "UPDATE sessions SET lease_until = ?, last_error = ? "
                "WHERE sid = ? AND state = ? AND lease_owner = ?",
                (retry_at, error[:2000], sid, TERMINATING, owner),
            )

    def finish_termination(
        self,
        sid: str,
        owner: str,
        now: int,
        audit: dict[str, Any],
        notifications: Iterable[NewNotification],
        notification_ttl_ms: int,
    ) -> int | None:
        with self._db.tx() as db:
            cur = db.execute(
                "UPDATE sessions SET state = ?, terminated_at = ?, lease_until = NULL, "
                "last_error = NULL WHERE sid = ? AND state = ? AND lease_owner = ?",
                (TERMINATED, now, sid, TERMINATING, owner),
            )
            if cur.rowcount != 1:
                return None
            row = db.execute("SELECT sub FROM sessions WHERE sid = ?", (sid,)).fetchone()
            for n in notifications:
                db.execute(
                    "INSERT INTO outbox (sid, sub, client_id, url, created_at, "
                    "expires_at, next_attempt_at) VALUES (?,?,?,?,?,?,?)",
                    (sid, row[0], n.client_id, n.url, now, now + notification_ttl_ms, now),
                )
            return self._append_audit(db, audit)

    def count_sessions(self, state: str | None = None) -> int:
        if state is None:
            return int(self._db.read("SELECT COUNT(*) FROM sessions")[0][0])
        return int(self._db.read("SELECT COUNT(*) FROM sessions WHERE state = ?", (state,))[0][0])

    # -- per-app clocks -----------------------------------------------------
    def get_app_clock(self, sid: str, client_id: str) -> AppClock | None:
        rows = self._db.read("SELECT sid, client_id, last_activity_at, deadline, state, ended_at "
                          "FROM app_clocks WHERE sid = ? AND client_id = ?", (sid, client_id))
        return AppClock(*rows[0]) if rows else None

    def touch_app_clock(self, sid: str, client_id: str, at: int, deadline: int, now: int,
                        fresh_auth_at: int | None = None) -> AppClock:
        with self._db.tx() as db:
            row = db.execute("SELECT last_activity_at, deadline, state, ended_at FROM app_clocks "
                             "WHERE sid = ? AND client_id = ?", (sid, client_id)).fetchone()
            if row is None:
                db.execute("INSERT INTO app_clocks VALUES (?,?,?,?,?,NULL)",
                           (sid, client_id, at, deadline, ACTIVE))
            elif row[2] == "ended" or row[1] <= now:
                # Dead for this app. Only a new authentication in it, after its end,
                # starts it again (the plugin sent the user through prompt=login).
                ended = row[3] if row[3] is not None else row[1]
                if fresh_auth_at is not None and fresh_auth_at > ended:
                    db.execute("UPDATE app_clocks SET last_activity_at = ?, deadline = ?, "
                               "state = ?, ended_at = NULL WHERE sid = ? AND client_id = ?",
                               (at, deadline, ACTIVE, sid, client_id))
            elif at > row[0]:
                db.execute("UPDATE app_clocks SET last_activity_at = ?, deadline = ? "
                           "WHERE sid = ? AND client_id = ?", (at, deadline, sid, client_id))
        clock = self.get_app_clock(sid, client_id)
        assert clock is not None
        return clock

    def end_due_app_clocks(
        self, now: int, limit: int,
        build: Callable[[AppClock, SessionRecord, int],
                        tuple[dict[str, Any], NewNotification | None]],
        notification_ttl_ms: int,
    ) -> int:
        with self._db.tx() as db:
            rows = db.execute(
                "SELECT sid, client_id, last_activity_at, deadline, state, ended_at FROM "
                "app_clocks WHERE state = ? AND deadline <= ? ORDER BY deadline LIMIT ?",
                (ACTIVE, now, limit)).fetchall()
            ended: list[AppClock] = []
            for row in rows:
                clock = AppClock(*row)
                srow = db.execute(f"SELECT {_SESSION_COLS} FROM sessions WHERE sid = ?",
                                  (clock.sid,)).fetchone()
                db.execute("UPDATE app_clocks SET state = 'ended', ended_at = ? "
                           "WHERE sid = ? AND client_id = ?", (now, clock.sid, clock.client_id))
                session = _session(srow) if srow else None
                if session is None or session.state != ACTIVE or session.deadline <= now:
                    continue  # the whole session ends instead, with its own record
                audit, note = build(clock, session, now)
                if note is not None:
                    db.execute(
                        "INSERT INTO outbox (sid, sub, client_id, url, created_at, expires_at, "
                        "next_attempt_at) VALUES (?,?,?,?,?,?,?)",
                        (clock.sid, session.sub, note.client_id, note.url, now,
                         now + notification_ttl_ms, now))
                self._append_audit(db, audit)
                ended.append(clock)
        for clock in ended:  # after the commit: only what really happened is logged
            log.info("ended app %s in sid=%s (its own idle timeout); the SSO session goes on",
                     clock.client_id, clock.sid)
        return len(ended)

    # -- outbox -----------------------------------------------------------
    def claim_notifications(self, now: int, lease_ms: int, limit: int) -> list[Notification]:
        with self._db.tx() as db:
            rows = db.execute(
                f"SELECT {_NOTIF_COLS} FROM outbox WHERE state = 'pending' "
                "AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
                (now, limit),
            ).fetchall()
            out = []
            for row in rows:
                # The lease: nobody else picks it up until the attempt had time to finish.
                db.execute(
                    "UPDATE outbox SET next_attempt_at = ?, attempts = attempts + 1 WHERE id = ?",
                    (now + lease_ms, row[0]),
                )
                n = _notification(row)
                out.append(replace(n, attempts=n.attempts + 1))
            return out

    def notification_delivered(self, nid: int, now: int, status: int,
                               audit: dict[str, Any]) -> bool:
        with self._db.tx() as db:
            cur = db.execute(
                "UPDATE outbox SET state = 'delivered', delivered_at = ?, last_status = ?, "
                "last_error = NULL WHERE id = ? AND state = 'pending'",
                (now, status, nid),
            )
            if cur.rowcount != 1:
                return False
            self._append_audit(db, audit)
            return True

    def notification_retry(self, nid: int, next_at: int, status: int | None, error: str,
                           attempt: dict[str, Any]) -> None:
        with self._db.tx() as db:
            row = db.execute("SELECT history FROM outbox WHERE id = ?", (nid,)).fetchone()
            if row is None:
                return
            history = [*json.loads(row[0]), attempt]
            if len(history) > MAX_HISTORY:  # keep the first attempts and the latest ones
                history = [*history[:5], {"omitted": True}, *history[-(MAX_HISTORY - 6):]]
            db.execute(
                "UPDATE outbox SET next_attempt_at = ?, last_status = ?, last_error = ?, "
                "history = ? WHERE id = ? AND state = 'pending'",
                (next_at, status, error[:2000], json.dumps(history), nid),
            )

    def notification_dead(
        self, nid: int, now: int, status: int | None, error: str, audit: dict[str, Any]
    ) -> bool:
        with self._db.tx() as db:
            cur = db.execute(
                "UPDATE outbox SET state = 'dead', last_status = ?, last_error = ?, "
                "delivered_at = NULL WHERE id = ? AND state = 'pending'",
                (status, error[:2000], nid),
            )
            if cur.rowcount != 1:
                return False
            self._append_audit(db, audit)
            return True

    def notifications_for(self, sid: str) -> list[Notification]:
        rows = self._db.read(f"SELECT {_NOTIF_COLS} FROM outbox WHERE sid = ? ORDER BY id", (sid,))
        return [_notification(r) for r in rows]

    # -- audit ------------------------------------------------------------
    def _append_audit(self, db: sqlite3.Connection, record: dict[str, Any]) -> int:
        last = db.execute("SELECT seq, record FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev_hash = (1, audit_mod.GENESIS) if last is None else (
            last[0] + 1, json.loads(last[1])["hash"])
        sealed = audit_mod.seal(record, seq, prev_hash)
        db.execute("INSERT INTO audit (seq, record) VALUES (?, ?)", (seq, json.dumps(sealed)))
        return seq

    def append_audit(self, record: dict[str, Any]) -> int:
        with self._db.tx() as db:
            return self._append_audit(db, record)

    def audit_entries(self, after_seq: int = 0) -> Iterator[AuditEntry]:
        rows = self._db.read("SELECT seq, record FROM audit WHERE seq > ? ORDER BY seq",
                             (after_seq,))
        for seq, text in rows:
            yield AuditEntry(seq, json.loads(text))

    # -- relying parties --------------------------------------------------
    def get_client(self, client_id: str) -> ClientRecord | None:
        rows = self._db.read(
            "SELECT client_id, backchannel_url, service_account_sub, fetched_at, "
            "idle_timeout_ms FROM clients WHERE client_id = ?", (client_id,))
        return ClientRecord(*rows[0]) if rows else None

    def put_client(self, record: ClientRecord) -> None:
        with self._db.tx() as db:
            db.execute(
                "INSERT INTO clients (client_id, backchannel_url, service_account_sub, fetched_at, "
                "idle_timeout_ms) VALUES (?,?,?,?,?) ON CONFLICT(client_id) DO UPDATE SET "
                "backchannel_url = excluded.backchannel_url, "
                "service_account_sub = excluded.service_account_sub, "
                "fetched_at = excluded.fetched_at, idle_timeout_ms = excluded.idle_timeout_ms",
                (record.client_id, record.backchannel_url, record.service_account_sub,
                 record.fetched_at, record.idle_timeout_ms),
            )

    # -- signing keys -----------------------------------------------------
    def signing_keys(self) -> list[dict[str, Any]]:
        rows = self._db.read("SELECT kid, private_jwk, created_at, active FROM signing_keys "
                          "ORDER BY created_at DESC, rowid DESC")
        return [{"kid": k, "private_jwk": json.loads(j), "created_at": c, "active": bool(a)}
                for k, j, c, a in rows]

    def add_signing_key(self, kid: str, private_jwk: dict[str, Any], now: int,
                        keep: int = 2) -> None:
        with self._db.tx() as db:
            db.execute("INSERT INTO signing_keys (kid, private_jwk, created_at, active) "
                       "VALUES (?,?,?,1)", (kid, json.dumps(private_jwk), now))
            db.execute("UPDATE signing_keys SET active = 0 WHERE kid NOT IN (SELECT kid FROM "
                       "signing_keys ORDER BY created_at DESC, rowid DESC LIMIT ?)", (keep,))

    def outbox_stats(self) -> dict[str, dict[str, Any]]:
        rows = self._db.read(
            "SELECT client_id, SUM(state = 'pending'), SUM(state = 'delivered'), "
            "SUM(state = 'dead'), MAX(delivered_at), SUM(attempts) FROM outbox "
            "GROUP BY client_id ORDER BY client_id")
        return {c: {"pending": p or 0, "delivered": d or 0, "dead": x or 0,
                    "last_delivered_at": last, "attempts": a or 0}
                for c, p, d, x, last, a in rows}
