"""Shared fixtures for the three rings.

unit: fakes and a fake clock (tests/unit). integration: a real Keycloak booted
once per test session, real worker and app processes, real SQLite
(tests/integration). e2e: the same plus a real headless Chromium (tests/e2e).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
# The package of this checkout, whatever an editable install elsewhere points at,
# here and in every process the tests start.
ROOT = str(Path(__file__).parent.parent)
sys.path.insert(0, ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)
os.environ.setdefault("OIDC_IDLE_LOG_LEVEL", "INFO")

pytest_plugins = ["stack"]
