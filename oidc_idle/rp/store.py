"""Server-side sessions for relying parties, shared by every process of an app.

A cookie-only session cannot be killed from the back channel (the server never
sees it again until the browser sends it), so the plugin keeps sessions in a
store all the app's processes share, and the cookie holds only a random id
(stored hashed, so a copy of the database is no set of live cookies). Killing
a session is deleting its row; a request that loaded it just before cannot
write it back (``save`` updates only rows that still exist).

The same store caches each SSO session's deadline as the worker last said it
(with when it said so: news older than the idle timeout is re-checked), and
remembers logout-token ``jti`` values (BCL 1.0 §2.6 step 7, replay).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from ..sqlite_db import SqliteDb

SCHEMA = """
CREATE TABLE IF NOT EXISTS rp_sessions (
    id_hash TEXT PRIMARY KEY,
    sid TEXT,
    sub TEXT,
    iss TEXT,
    data TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rp_sessions_sid ON rp_sessions(sid);
CREATE INDEX IF NOT EXISTS rp_sessions_sub ON rp_sessions(iss, sub);
CREATE TABLE IF NOT EXISTS rp_deadlines (
    sid TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    deadline INTEGER NOT NULL,
    warn_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rp_jti (
    iss TEXT NOT NULL,
    jti TEXT NOT NULL,
    exp INTEGER NOT NULL,
    PRIMARY KEY (iss, jti)
);
"""


def hash_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Deadline:
    sid: str
    state: str
    deadline: int
    warn_at: int
    updated_at: int


class RpStore:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._db = SqliteDb(path, SCHEMA, "session store")

    # -- sessions ---------------------------------------------------------
    def load(self, session_id: str) -> dict[str, Any] | None:
        rows = self._db.read("SELECT data FROM rp_sessions WHERE id_hash = ?",
                             (hash_id(session_id),))
        return json.loads(rows[0][0]) if rows else None

    def insert(self, session_id: str, data: dict[str, Any], ident: dict[str, Any] | None,
               now: int) -> None:
        ident = ident or {}
        with self._db.tx() as db:
            db.execute(
                "INSERT INTO rp_sessions (id_hash, sid, sub, iss, data, created_at, updated_at) "
                "VALUES (?,?,?,?,?,?,?)",
                (hash_id(session_id), ident.get("sid"), ident.get("sub"), ident.get("iss"),
                 json.dumps(data), now, now))

    def update(self, session_id: str, data: dict[str, Any], ident: dict[str, Any] | None,
               now: int) -> bool:
        """Write back a session that still exists; False if it was killed meanwhile."""
        ident = ident or {}
        with self._db.tx() as db:
            cur = db.execute(
                "UPDATE rp_sessions SET data = ?, sid = ?, sub = ?, iss = ?, updated_at = ? "
                "WHERE id_hash = ?",
                (json.dumps(data), ident.get("sid"), ident.get("sub"), ident.get("iss"), now,
                 hash_id(session_id)))
            return cur.rowcount == 1

    def delete(self, session_id: str) -> None:
        with self._db.tx() as db:
            db.execute("DELETE FROM rp_sessions WHERE id_hash = ?", (hash_id(session_id),))

    def kill_sid(self, sid: str) -> int:
        with self._db.tx() as db:
            return db.execute("DELETE FROM rp_sessions WHERE sid = ?", (sid,)).rowcount

    def kill_sub(self, iss: str, sub: str) -> int:
        with self._db.tx() as db:
            return db.execute("DELETE FROM rp_sessions WHERE iss = ? AND sub = ?",
                              (iss, sub)).rowcount

    def count_for_sid(self, sid: str) -> int:
        return int(self._db.conn().execute("SELECT COUNT(*) FROM rp_sessions WHERE sid = ?",
                                        (sid,)).fetchone()[0])

    def purge_anonymous(self, older_than: int) -> int:
        with self._db.tx() as db:
            return db.execute("DELETE FROM rp_sessions WHERE sid IS NULL AND updated_at < ?",
                              (older_than,)).rowcount

    # -- deadlines --------------------------------------------------------
    def set_deadline(self, d: Deadline) -> None:
        with self._db.tx() as db:
            # Keep the newest news: a late answer must not undo a later one, and
            # nothing turns a dead session alive again.
            db.execute(
                "INSERT INTO rp_deadlines (sid, state, deadline, warn_at, updated_at) "
                "VALUES (?,?,?,?,?) ON CONFLICT(sid) DO UPDATE SET "
                "state = excluded.state, deadline = excluded.deadline, "
                "warn_at = excluded.warn_at, updated_at = excluded.updated_at "
                "WHERE rp_deadlines.state = 'active' AND excluded.updated_at >= "
                "rp_deadlines.updated_at",
                (d.sid, d.state, d.deadline, d.warn_at, d.updated_at))

    def forget_deadline(self, sid: str) -> None:
        """After a fresh authentication into a session this app had ended."""
        with self._db.tx() as db:
            db.execute("DELETE FROM rp_deadlines WHERE sid = ?", (sid,))

    def deadline(self, sid: str) -> Deadline | None:
        row = self._db.conn().execute(
            "SELECT sid, state, deadline, warn_at, updated_at FROM rp_deadlines WHERE sid = ?",
            (sid,)).fetchone()
        return Deadline(*row) if row else None

    # -- replay -----------------------------------------------------------
    def seen_jti(self, iss: str, jti: str, exp: int, now_s: int) -> bool:
        """Record a jti; True if it was already recorded (a replay)."""
        with self._db.tx() as db:
            db.execute("DELETE FROM rp_jti WHERE exp < ?", (now_s - 3600,))
            cur = db.execute("INSERT OR IGNORE INTO rp_jti (iss, jti, exp) VALUES (?,?,?)",
                             (iss, jti, exp))
            return cur.rowcount == 0
