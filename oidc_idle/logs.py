"""Logging set-up: plain text for a terminal, JSON lines for a log pipeline.

``OIDC_IDLE_LOG_FORMAT=json`` writes one JSON object per line (``time`` in UTC
with milliseconds, ``level``, ``logger``, ``message``, and ``exception`` when
there is one), the shape a SIEM ingests without parsing rules.
"""

from __future__ import annotations

import json
import logging
import os

from .clock import iso_ms


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": iso_ms(int(record.created * 1000)), "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure(level: str, fmt: str | None = None) -> None:
    fmt = (fmt or os.environ.get("OIDC_IDLE_LOG_FORMAT", "text")).lower()
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
