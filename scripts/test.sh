#!/usr/bin/env bash
# The whole test suite, the dashboard's browser test included: installs Debian's chromium and
# chromium-driver when they are missing (idempotent), then runs `cargo test` with the browser
# test required. `cargo test` alone runs everything else and reports the browser test skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
fi
HOOKFLOW_BROWSER_TESTS=required cargo test "$@"
