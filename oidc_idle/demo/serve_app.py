"""Run one demo relying party under waitress: ``python -m oidc_idle.demo.serve_app NAME``."""

from __future__ import annotations

import argparse
import logging
import os

from waitress import serve

from .apps import create_demo_app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("client_id")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--issuer", required=True)
    p.add_argument("--worker-url", required=True)
    p.add_argument("--session-db", required=True)
    a = p.parse_args()
    logging.basicConfig(level=os.environ.get("OIDC_IDLE_LOG_LEVEL", "INFO"),
                        format=f"%(asctime)s %(levelname)s {a.client_id} %(name)s: %(message)s")
    extra = {k: v for k, v in os.environ.items() if k.startswith("OIDC_IDLE_APP_")}
    app = create_demo_app(a.client_id, issuer=a.issuer, worker_url=a.worker_url,
                          session_db=a.session_db,
                          extra_config={k.replace("OIDC_IDLE_APP_", "OIDC_IDLE_"): v
                                        for k, v in extra.items()})
    serve(app, host=a.host, port=a.port, threads=8, ident=a.client_id)


if __name__ == "__main__":
    main()
