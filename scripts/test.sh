#!/usr/bin/env bash
# The whole test suite, the tests that need outside tools included: installs Debian's chromium
# and chromium-driver (the dashboard's browser test) and the Python `svix` library (signatures
# made by a vendor's own code) when they are missing (idempotent), then runs `cargo test` with
# those tests required — and, when run as root, the drills that mount a file system (a full
# disk). `cargo test` alone runs everything else and reports those skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
fi
if ! python3 -c 'import svix' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'svix==2.9.1'
fi
ROOT_TESTS=""
if [ "$(id -u)" -eq 0 ]; then ROOT_TESTS=required; fi
HOOKFLOW_BROWSER_TESTS=required HOOKFLOW_VENDOR_TESTS=required HOOKFLOW_ROOT_TESTS=$ROOT_TESTS cargo test "$@"
