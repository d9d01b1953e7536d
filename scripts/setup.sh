#!/usr/bin/env bash
# Installs what oidc-idle needs on a fresh Debian machine of this kind:
# a JDK and Maven (to fetch and run Keycloak), and the Python package with its
# test tools. Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
if ! command -v java >/dev/null 2>&1 && [ ! -x /usr/lib/jvm/temurin-25-jdk-amd64/bin/java ]; then
  need_apt+=(openjdk-17-jdk-headless)
fi
# The e2e ring drives Debian's Chromium (Playwright cannot download a browser here).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]} from Debian" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[test]"
