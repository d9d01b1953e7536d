#!/usr/bin/env bash
# The demo command (README): set up, then Keycloak + worker + two apps on
# loopback. Extra arguments go to `oidc-idle demo` (e.g. --idle-timeout 30s).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec python3 -m oidc_idle demo "$@"
