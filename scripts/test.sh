#!/usr/bin/env bash
# The test command (README, .ci/run): set up, lint, then all three rings.
# The integration ring boots one real Keycloak (fetched once into
# ~/.cache/oidc-idle with Maven) for the whole session.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
python3 -m ruff check oidc_idle tests bench
python3 -m mypy oidc_idle
python3 -m pytest "$@"
