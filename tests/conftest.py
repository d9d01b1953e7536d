"""Shared fixtures. The integration ring boots one real Keycloak per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("OIDC_IDLE_LOG_LEVEL", "INFO")
