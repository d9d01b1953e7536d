#!/usr/bin/env bash
# The benchmarks (not tests): prints tables, writes bench/results/*.json.
# Boots its own Keycloak unless OIDC_IDLE_BENCH_KEYCLOAK_URL names one (admin/admin).
#   ./scripts/bench.sh                 all: enforcement (a, b, c) then delivery
#   ./scripts/bench.sh enforcement [ingest|lag|sweep|all]
#   ./scripts/bench.sh delivery
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
case "${1:-all}" in
  enforcement) shift; python3 bench/enforcement.py "${@:-all}" ;;
  delivery) shift; python3 bench/delivery.py "$@" ;;
  all) python3 bench/enforcement.py all && python3 bench/delivery.py ;;
  *) echo "usage: $0 [all|enforcement [ingest|lag|sweep|all]|delivery]" >&2; exit 2 ;;
esac
