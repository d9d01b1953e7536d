"""``oidc-idle``: the one command-line entry point.

    oidc-idle serve                      the worker (settings from OIDC_IDLE_*)
    oidc-idle demo [--idle-timeout 30s]  Keycloak + worker + two apps on loopback
    oidc-idle keycloak start|stop|status a real Keycloak without Docker
    oidc-idle realm apply ...            write the idle policy into the realm
    oidc-idle audit verify|export        check or copy the audit trail

Errors print one clear line (``oidc-idle: error: ...``) and exit non-zero;
never a stack trace.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import devkeycloak, logs
from .config import WorkerSettings, parse_duration_ms
from .errors import OidcIdleError

REPO_REALM_DIR = Path(__file__).resolve().parent.parent / "keycloak-realm"


def realm_files(directory: str | None) -> list[Path]:
    d = Path(directory) if directory else REPO_REALM_DIR
    files = sorted(d.glob("*.json"))
    if not files:
        raise OidcIdleError(f"no realm export (*.json) in {d}; pass --realm-dir")
    return files


def cmd_serve(args: argparse.Namespace) -> int:
    from .worker import serve

    settings = WorkerSettings.from_env()
    serve(settings)
    return 0


def cmd_keycloak(args: argparse.Namespace) -> int:
    if args.action == "start":
        inst = devkeycloak.start(name=args.name, http_port=args.port,
                                 management_port=args.management_port,
                                 realm_files=realm_files(args.realm_dir))
        print(f"Keycloak {devkeycloak.KEYCLOAK_VERSION} ready at {inst.base_url} "
              f"(pid {inst.pid}, admin {inst.admin_user}/{inst.admin_password}, "
              f"log {inst.log})")
    elif args.action == "stop":
        print("stopped" if devkeycloak.stop(args.name) else "not running")
    else:
        found = devkeycloak.load(args.name)
        if found is None or not found.alive():
            print("not running")
            return 3
        print(f"{'ready' if found.ready() else 'starting'} at {found.base_url} "
              f"(pid {found.pid})")
    return 0


def cmd_realm_apply(args: argparse.Namespace) -> int:
    from .policy import Policy
    from .realm import RealmAdmin

    policy = Policy(
        idle_timeout_ms=parse_duration_ms(args.idle_timeout, key="--idle-timeout"),
        warning_lead_ms=parse_duration_ms(args.warning_lead, key="--warning-lead"),
        absolute_lifetime_ms=parse_duration_ms(args.absolute_lifetime,
                                               key="--absolute-lifetime"),
    )
    per_app: dict[str, int] = {}
    for spec in args.client_idle_timeout or []:
        name, _, dur = spec.partition("=")
        if not name or not dur:
            raise OidcIdleError(f"--client-idle-timeout: expected CLIENT=DURATION, got {spec!r}")
        per_app[name] = parse_duration_ms(dur, key="--client-idle-timeout")
    admin = RealmAdmin(args.keycloak_url, args.realm, args.admin_user,
                       os.environ.get("OIDC_IDLE_ADMIN_PASSWORD", args.admin_password))
    changes = admin.apply(policy, client_idle_timeouts=per_app,
                          worker_client_id=args.worker_client_id)
    if not changes:
        print("realm already has this policy; nothing changed")
    for key, (old, new) in changes.items():
        print(f"{key}: {old!r} -> {new!r}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from . import audit

    store = _open_store(args.db)
    records = [e.record for e in store.audit_entries()]
    if args.action == "verify":
        problems = audit.verify(records)
        for p in problems:
            print(p)
        print(f"{len(records)} records, {'chain intact' if not problems else 'CHAIN BROKEN'}")
        return 0 if not problems else 1
    from .audit import CSV_FIELDS, csv_row, record_time_ms
    from .clock import parse_iso_ms

    def bound(text: str | None, flag: str) -> int | None:
        if text is None:
            return None
        try:
            return parse_iso_ms(text if "T" in text else f"{text}T00:00:00Z")
        except ValueError:
            raise OidcIdleError(f"{flag}: expected a date or an RFC 3339 time, got {text!r}",
                                error="invalid_request") from None

    since, until = bound(args.since, "--since"), bound(args.until, "--until")
    chosen = [r for r in records
              if (since is None or record_time_ms(r) >= since)
              and (until is None or record_time_ms(r) < until)]
    if args.format == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(CSV_FIELDS)
        for r in chosen:
            writer.writerow(csv_row(r))
    else:
        for r in chosen:
            print(json.dumps(r, sort_keys=True))
    print(f"{len(chosen)} of {len(records)} records exported", file=sys.stderr)
    return 0


def _open_store(db: str) -> Any:
    from .store.sqlite import SQLiteStore

    if not Path(db).exists():
        raise OidcIdleError(f"no worker store at {db} (set --db or OIDC_IDLE_DB)")
    return SQLiteStore(db)


def cmd_keys(args: argparse.Namespace) -> int:
    from .clock import SystemClock
    from .keys import SigningKeys

    store = _open_store(args.db)
    keys = SigningKeys(store, SystemClock())
    kid = keys.rotate()
    published = [k["kid"] for k in keys.jwks()["keys"]]
    print(f"signing with {kid}; published: {', '.join(published)}")
    return 0


def cmd_session(args: argparse.Namespace) -> int:
    """An administrator ends a session everywhere: the running worker (same store)
    terminates it at its next sweep, audited as ``admin_logout``."""
    from .clock import SystemClock

    store = _open_store(args.db)
    rec = store.request_termination(args.sid, "admin_logout", SystemClock().now_ms())
    if rec is None:
        raise OidcIdleError(f"no session {args.sid} in {args.db}")
    if rec.state != "active" or rec.reason != "admin_logout":
        print(f"session {args.sid} is already {rec.state} ({rec.reason or 'idle'})")
        return 0
    print(f"session {args.sid} of {rec.sub} will be ended at the worker's next sweep")
    return 0


def cmd_rp(args: argparse.Namespace) -> int:
    if args.rp_action == "list":
        from .clock import iso_ms

        store = _open_store(args.db)
        stats = store.outbox_stats()
        if not stats:
            print("no deliveries yet")
        print(f"{'client':24} {'pending':>8} {'delivered':>10} {'dead':>6}  last success")
        for client, st in stats.items():
            last = iso_ms(st["last_delivered_at"]) if st["last_delivered_at"] else "-"
            print(f"{client:24} {st['pending']:>8} {st['delivered']:>10} {st['dead']:>6}  {last}")
        return 0
    from .realm import RealmAdmin

    admin = RealmAdmin(args.keycloak_url, args.realm, args.admin_user,
                       os.environ.get("OIDC_IDLE_ADMIN_PASSWORD", args.admin_password))
    result = admin.register_client(args.client_id, args.url, audience=args.audience)
    print(f"{result['action']} client {args.client_id} in realm {args.realm}")
    if args.idle_timeout:
        ms = parse_duration_ms(args.idle_timeout, key="--idle-timeout")
        admin.set_client_idle_timeout(args.client_id, ms, admin.realm_policy())
        print(f"  stricter idle timeout   {ms / 1000:g} s")
    print(f"  redirect URI            {result['redirect_uri']}")
    print(f"  back-channel logout URL {result['backchannel_url']}")
    print(f"  client secret           {result['secret']}")
    print("The worker reads this client from Keycloak when the app first calls it.")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo.run import run_demo

    return run_demo(idle_timeout_ms=parse_duration_ms(args.idle_timeout, key="--idle-timeout"),
                    realm_dir=args.realm_dir, keycloak_port=args.keycloak_port)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oidc-idle", description=__doc__.split("\n\n")[0])
    p.add_argument("--log-level", default=os.environ.get("OIDC_IDLE_LOG_LEVEL", "INFO"))
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("serve", help="run the worker (configured by OIDC_IDLE_* variables)")

    d = sub.add_parser("demo", help="Keycloak, the worker and two apps on loopback")
    d.add_argument("--idle-timeout", default="15m", help="e.g. 30s for a quick try (default 15m)")
    d.add_argument("--realm-dir", default=None)
    d.add_argument("--keycloak-port", type=int, default=8080)

    k = sub.add_parser("keycloak", help="a real Keycloak on loopback, no Docker")
    k.add_argument("action", choices=["start", "stop", "status"])
    k.add_argument("--name", default="default")
    k.add_argument("--port", type=int, default=8080)
    k.add_argument("--management-port", type=int, default=9000)
    k.add_argument("--realm-dir", default=None)

    r = sub.add_parser("realm", help="realm operations")
    r_sub = r.add_subparsers(dest="realm_action", required=True)
    ra = r_sub.add_parser("apply", help="write the idle policy into the realm")
    ra.add_argument("--keycloak-url", default="http://127.0.0.1:8080")
    ra.add_argument("--realm", default="demo")
    ra.add_argument("--admin-user", default="admin")
    ra.add_argument("--admin-password", default="admin",
                    help="or set OIDC_IDLE_ADMIN_PASSWORD")
    ra.add_argument("--idle-timeout", default="15m")
    ra.add_argument("--warning-lead", default="2m")
    ra.add_argument("--absolute-lifetime", default="12h")
    ra.add_argument("--client-idle-timeout", action="append", metavar="CLIENT=DURATION",
                    help="a stricter idle timeout for one app, e.g. admin-console=5m")
    ra.add_argument("--worker-client-id", default="oidc-idle-worker",
                    help="create/update the worker's service-account client ('' to skip)")

    ks = sub.add_parser("keys", help="the worker's logout-token signing keys")
    ks.add_argument("action", choices=["rotate"])
    ks.add_argument("--db", default=os.environ.get("OIDC_IDLE_DB", "oidc-idle.db"))

    rp = sub.add_parser("rp", help="relying parties (apps)")
    rp_sub = rp.add_subparsers(dest="rp_action", required=True)
    reg = rp_sub.add_parser("register", help="create or update an app's Keycloak client")
    reg.add_argument("--client-id", required=True)
    reg.add_argument("--url", required=True, help="the app's base URL, e.g. https://portal.example")
    reg.add_argument("--keycloak-url", default="http://127.0.0.1:8080")
    reg.add_argument("--realm", default="demo")
    reg.add_argument("--admin-user", default="admin")
    reg.add_argument("--admin-password", default="admin", help="or OIDC_IDLE_ADMIN_PASSWORD")
    reg.add_argument("--audience", default="oidc-idle-worker")
    reg.add_argument("--idle-timeout", help="a stricter idle timeout for this app, e.g. 5m")

    lst = rp_sub.add_parser("list", help="apps and their delivery health")
    lst.add_argument("--db", default=os.environ.get("OIDC_IDLE_DB", "oidc-idle.db"))

    se = sub.add_parser("session", help="sessions")
    se.add_argument("action", choices=["end"])
    se.add_argument("sid")
    se.add_argument("--db", default=os.environ.get("OIDC_IDLE_DB", "oidc-idle.db"))

    a = sub.add_parser("audit", help="check or export the audit trail")
    a.add_argument("action", choices=["verify", "export"])
    a.add_argument("--db", default=os.environ.get("OIDC_IDLE_DB", "oidc-idle.db"))
    a.add_argument("--since", help="export: from this time (RFC 3339 or YYYY-MM-DD, UTC)")
    a.add_argument("--until", help="export: before this time")
    a.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.configure(args.log_level)
    handlers = {"serve": cmd_serve, "demo": cmd_demo, "keycloak": cmd_keycloak,
                "realm": cmd_realm_apply, "audit": cmd_audit, "keys": cmd_keys, "rp": cmd_rp,
                "session": cmd_session}
    try:
        return handlers[args.command](args)
    except OidcIdleError as exc:
        print(f"oidc-idle: error: {exc.description}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
