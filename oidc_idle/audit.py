"""The audit trail: one record per logoff, append-only, hash-chained.

HIPAA 45 CFR 164.312(b) (audit controls) and NIST SP 800-53 AU-3 (content of
audit records: what type of event, when, where, source, outcome, identity).
Each record carries ``seq``, ``prev_hash`` and ``hash`` = SHA-256 over the
canonical JSON of the record without ``hash``; editing, removing or reordering
a record breaks the chain at that record. The store appends records inside the
same transaction as the state change they describe, so a termination and its
record are written exactly once, together.

The JSON-lines file is a copy for a SIEM, kept in step with the store by
:class:`JsonlSink` (re-synced on start, so a crash never loses a line).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store.base import SessionStore

GENESIS = "0" * 64


def canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def seal(record: dict[str, Any], seq: int, prev_hash: str) -> dict[str, Any]:
    """The record as stored: with ``seq``, ``prev_hash`` and its own ``hash``."""
    body = {k: v for k, v in record.items() if k not in ("seq", "prev_hash", "hash")}
    body["seq"] = seq
    body["prev_hash"] = prev_hash
    body["hash"] = hashlib.sha256(canonical(body)).hexdigest()
    return body


def verify(records: Iterable[dict[str, Any]]) -> list[str]:
    """Problems found in a chain, each naming the record; empty when intact."""
    problems: list[str] = []
    prev_hash = GENESIS
    expected_seq = 1
    for record in records:
        seq = record.get("seq")
        if seq != expected_seq:
            problems.append(f"record seq={seq}: expected seq={expected_seq} (removed or reordered)")
        if record.get("prev_hash") != prev_hash:
            problems.append(f"record seq={seq}: prev_hash does not match the record before it")
        body = {k: v for k, v in record.items() if k != "hash"}
        if hashlib.sha256(canonical(body)).hexdigest() != record.get("hash"):
            problems.append(f"record seq={seq}: hash mismatch (record edited)")
        prev_hash = str(record.get("hash"))
        expected_seq = (seq if isinstance(seq, int) else expected_seq) + 1
    return problems


CSV_FIELDS = ("seq", "event", "type", "at", "deadline", "terminated_at", "lag_ms", "realm",
              "worker", "sub", "sid", "clients", "client_id", "result", "attempts", "hash")


def record_time_ms(record: dict[str, Any]) -> int:
    """When a record's event happened: termination time, or delivery time."""
    return int(record.get("terminated_at_ms") or record.get("at_ms") or 0)


def csv_row(r: dict[str, Any]) -> list[Any]:
    """One flat row per record, for a spreadsheet (the JSON keeps everything)."""
    ident, outcome, where = r.get("identity", {}), r.get("outcome", {}), r.get("where", {})
    kc = outcome.get("keycloak", {}) if isinstance(outcome.get("keycloak"), dict) else {}
    return [r.get("seq"), r.get("event"), r.get("type"), r.get("at") or r.get("terminated_at"),
            r.get("deadline"), r.get("terminated_at"), r.get("lag_ms"), where.get("realm"),
            where.get("worker"), ident.get("sub"), ident.get("sid"),
            " ".join(ident.get("clients", [])), ident.get("client_id"),
            kc.get("result") or outcome.get("result"),
            kc.get("attempts") or outcome.get("attempts"), r.get("hash")]


class JsonlSink:
    """Appends store audit records to a JSON-lines file, in order, once each.

    Several workers may share one store and one file: each sync takes an
    exclusive lock on the file and appends only what follows the last record
    already in it, so no line is lost or doubled, and a torn last line left by a
    crash is closed first.
    """

    TAIL = 1 << 16  # a record is far smaller: the last one is within this

    def __init__(self, store: SessionStore, path: str | os.PathLike[str]) -> None:
        self._store = store
        self._path = Path(path)
        self._lock = threading.Lock()

    def _last_seq(self, fd: int) -> int:
        size = os.lseek(fd, 0, os.SEEK_END)
        if size == 0:
            return 0
        os.lseek(fd, max(0, size - self.TAIL), os.SEEK_SET)
        tail = os.read(fd, self.TAIL)
        if not tail.endswith(b"\n"):
            os.write(fd, b"\n")  # O_APPEND: closes the torn line
        for line in reversed(tail.splitlines()):
            try:
                return int(json.loads(line)["seq"])
            except (ValueError, KeyError, TypeError):
                continue  # the torn line itself
        return 0

    def sync(self) -> int:
        """Write every record the file lacks; returns how many were written."""
        with self._lock:
            # Owner-only: the records name people and their sessions.
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                last = self._last_seq(fd)
                data = b"".join(json.dumps(e.record, sort_keys=True).encode() + b"\n"
                                for e in self._store.audit_entries(after_seq=last))
                if data:
                    os.write(fd, data)
                    os.fsync(fd)
                return data.count(b"\n")
            finally:
                os.close(fd)  # also releases the lock


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line))
    return out
