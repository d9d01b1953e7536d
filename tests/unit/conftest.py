from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from oidc_idle.policy import Policy
from rig import Rig


@pytest.fixture
def policy() -> Policy:
    return Policy(idle_timeout_ms=60_000, warning_lead_ms=10_000, absolute_lifetime_ms=600_000)


@pytest.fixture
def rig(tmp_path: Path, policy: Policy):
    r = Rig(tmp_path, policy)
    yield r
    r.close()
