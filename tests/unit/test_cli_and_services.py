"""Operator surface: clear errors, never a stack trace."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

import oidc_idle
from oidc_idle import devkeycloak
from oidc_idle.errors import ServiceError


def run_cli(*args, env=None):
    if env is not None:
        env = {**env, "PYTHONPATH": os.environ["PYTHONPATH"]}
    return subprocess.run([sys.executable, "-m", "oidc_idle", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_public_names_are_what_all_says():
    for name in oidc_idle.__all__:
        assert hasattr(oidc_idle, name)
    assert {n for n in dir(oidc_idle) if not n.startswith("_") and n[0].isupper()} <= \
        set(oidc_idle.__all__)


def test_serve_with_bad_configuration_names_the_key():
    r = run_cli("serve", env={"PATH": "/usr/bin:/bin", "OIDC_IDLE_KEYCLOAK_URL": "nope"})
    assert r.returncode == 2
    assert "OIDC_IDLE_KEYCLOAK_URL" in r.stderr and "Traceback" not in r.stderr


def test_keycloak_start_on_a_taken_port_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("OIDC_IDLE_CACHE", str(tmp_path))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServiceError, match=f"port {port}"):
            devkeycloak.start(name="t", http_port=port, management_port=port + 1)
        r = run_cli("keycloak", "start", "--name", "t", "--port", str(port),
                    env={"PATH": "/usr/bin:/bin", "OIDC_IDLE_CACHE": str(tmp_path)})
    assert r.returncode == 2 and "is taken" in r.stderr and "Traceback" not in r.stderr


def test_missing_java_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(devkeycloak, "JDK_CANDIDATES", ())
    monkeypatch.setenv("JAVA_HOME", "/nonexistent")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ServiceError, match="Java"):
        devkeycloak.find_java_home()


def test_missing_maven_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("OIDC_IDLE_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ServiceError, match="mvn"):
        devkeycloak.ensure_distribution()


def test_audit_verify_command_reports_an_edit(tmp_path):
    import json
    import sqlite3

    from oidc_idle.store.sqlite import SQLiteStore

    db = tmp_path / "w.db"
    store = SQLiteStore(db)
    for i in range(3):
        store.append_audit({"event": "session.terminated", "n": i})
    store.close()
    ok = run_cli("audit", "verify", "--db", str(db))
    assert ok.returncode == 0 and "3 records, chain intact" in ok.stdout
    conn = sqlite3.connect(db)
    rec = json.loads(conn.execute("SELECT record FROM audit WHERE seq = 2").fetchone()[0])
    rec["n"] = 42
    conn.execute("UPDATE audit SET record = ? WHERE seq = 2", (json.dumps(rec),))
    conn.commit()
    conn.close()
    bad = run_cli("audit", "verify", "--db", str(db))
    assert bad.returncode == 1 and "seq=2" in bad.stdout and "CHAIN BROKEN" in bad.stdout


def test_audit_export_filters_by_time_and_writes_csv(tmp_path):
    import csv
    import io

    from oidc_idle.store.sqlite import SQLiteStore

    db = tmp_path / "w.db"
    store = SQLiteStore(db)
    days = ["2026-01-01T10:00:00.000Z", "2026-01-02T10:00:00.000Z", "2026-01-03T10:00:00.000Z"]
    from oidc_idle.clock import parse_iso_ms
    for i, day in enumerate(days):
        store.append_audit({"event": "session.terminated", "type": "automatic_logoff",
                            "terminated_at": day, "terminated_at_ms": parse_iso_ms(day),
                            "deadline": day, "identity": {"sub": f"u{i}", "sid": f"s{i}",
                                                          "clients": ["a", "b"]}})
    store.close()
    r = run_cli("audit", "export", "--db", str(db), "--since", "2026-01-02",
                "--until", "2026-01-03")
    assert r.returncode == 0 and "1 of 3 records exported" in r.stderr
    assert [json.loads(line)["identity"]["sid"] for line in r.stdout.splitlines()] == ["s1"]
    r = run_cli("audit", "export", "--db", str(db), "--format", "csv", "--since", "2026-01-02")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["sid"] for row in rows] == ["s1", "s2"] and rows[0]["clients"] == "a b"
    bad = run_cli("audit", "export", "--db", str(db), "--since", "last tuesday")
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr


def test_json_logs_are_one_object_per_line():
    import logging

    from oidc_idle.logs import JsonFormatter

    rec = logging.LogRecord("oidc_idle.x", logging.WARNING, __file__, 1, "sid=%s ended",
                            ("abc",), None)
    doc = json.loads(JsonFormatter().format(rec))
    assert doc["level"] == "WARNING" and doc["message"] == "sid=abc ended"
    assert doc["logger"] == "oidc_idle.x" and doc["time"].endswith("Z")
