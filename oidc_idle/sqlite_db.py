"""SQLite plumbing shared by the worker's store and the plugin's session store.

WAL mode (readers never wait for the writer), one connection per thread, and
``BEGIN IMMEDIATE`` for every write transaction, so SQLite's single writer lock
makes each one atomic against every other process sharing the file. Every
SQLite failure surfaces as :class:`~oidc_idle.errors.StoreError`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import StoreError


class SqliteDb:
    def __init__(self, path: str | os.PathLike[str], schema: str, what: str) -> None:
        self.path = str(path)
        self.what = what
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        try:
            self.conn().executescript(schema)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the {what} at {self.path}: {exc}") from exc

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        db = self.conn()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"the {self.what} failed: {exc}") from exc

    def read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.conn().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"the {self.what} failed: {exc}") from exc

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()
