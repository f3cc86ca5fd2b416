#!/usr/bin/env bash
# The whole test suite, the tests that need outside tools included: installs Debian's chromium
# and chromium-driver (the dashboard's browser test), yaml-language-server from npm (the editor
# schema's test), schemathesis from PyPI (the API's OpenAPI fuzzer) and the Python `svix`, `sendgrid`, `paddle-python-sdk`, `PyNaCl`, `twilio`, `hubspot-api-client` and `squareup` libraries (signatures
# made by a vendor's own code), nginx and systemd-analyze (the deploy/ files), promtool (the
# metrics' format) and libfaketime (the clock drills) when they are missing (idempotent), checks that PostgreSQL
# answers, builds the release binary (for the release smoke tests), then runs `cargo test` with those tests required (the PostgreSQL store's included)
# — and, when run as root, the drills that mount a file system (a full disk). `cargo test`
# alone runs everything else and reports those skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
fi
# The deploy tests: a real nginx in front of hookflow, and systemd-analyze for the unit.
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ] || ! command -v systemd-analyze >/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx systemd
fi
# promtool (Debian's prometheus package) checks /metrics in the classic text format.
if ! command -v promtool >/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus
fi
# libfaketime steps a real binary's wall clock in the clock drills (tests/it/clock.rs).
if [ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq faketime
fi
if ! python3 -c 'import svix' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'svix==2.9.1'
fi
# SendGrid's own library verifies the Event Webhook batches the email tests sign
# (tests/tools/sendgrid_sign.py).
if ! python3 -c 'from sendgrid.helpers.eventwebhook import EventWebhook' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'sendgrid==6.12.5'
fi
# Paddle's own library checks what hookflow signs as Paddle (tests/it/senders.rs).
if ! python3 -c 'from paddle_billing.Notifications import Verifier' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'paddle-python-sdk==1.16.1'
fi
# PyNaCl signs Discord's interactions (Ed25519) in tests/it/senders.rs.
if ! python3 -c 'import nacl.signing' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'PyNaCl==1.5.0'
fi
# Twilio's, HubSpot's and Square's own libraries sign (or check) the URL-signing senders'
# requests in tests/it/senders.rs.
if ! python3 -c 'import twilio.request_validator, hubspot.utils.signature, square.utils.webhooks_helper' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'twilio==9.13.0' 'hubspot-api-client==12.0.0' 'squareup==46.0.0.20260916'
fi
# yaml-language-server (npm), the language server editors run, checks the editor schema against
# broken and shipped flows over LSP (tests/it/editor.rs); pinned by its package-lock.json.
if [ ! -x tests/tools/yaml-ls/node_modules/.bin/yaml-language-server ]; then
  (cd tests/tools/yaml-ls && npm ci --no-audit --no-fund --loglevel=error)
fi
# schemathesis (PyPI), the OpenAPI fuzzer, runs against the release binary in
# tests/it/openapi.rs; in a virtual environment of its own, pinned by its requirements.txt.
if [ ! -x tests/tools/schemathesis/.venv/bin/schemathesis ]; then
  python3 -m venv tests/tools/schemathesis/.venv
  tests/tools/schemathesis/.venv/bin/pip install --quiet --disable-pip-version-check -r tests/tools/schemathesis/requirements.txt
fi
# The PostgreSQL store's tests need a server: the local one (trust auth, database `test`), or
# the one HOOKFLOW_PG_URL names. Say so plainly rather than fail a hundred tests.
PG_URL="${HOOKFLOW_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
PG_HOSTPORT="$(echo "$PG_URL" | sed -E 's#^[a-z]+://([^@/]*@)?([^/?]+).*#\2#')"
PG_HOST="${PG_HOSTPORT%:*}"; PG_PORT="${PG_HOSTPORT##*:}"
if [ "$PG_PORT" = "$PG_HOSTPORT" ]; then PG_PORT=5432; fi
if ! (exec 3<>"/dev/tcp/$PG_HOST/$PG_PORT") 2>/dev/null; then
  echo "error: no PostgreSQL answers at $PG_HOST:$PG_PORT; the tests of the PostgreSQL store need one" >&2
  echo "       (start the local server, or set HOOKFLOW_PG_URL=postgres://user@host:port/db)" >&2
  exit 1
fi
# The release binary, which users run: the smoke tests in tests/it/release.rs check that it
# says what the debug build the other tests use says (issue 27: minijinja's debug info).
cargo build --release --locked --bin hookflow
export HOOKFLOW_RELEASE_BIN="$PWD/target/release/hookflow" HOOKFLOW_RELEASE_TESTS=required
ROOT_TESTS=""
if [ "$(id -u)" -eq 0 ]; then ROOT_TESTS=required; fi
HOOKFLOW_PG_TESTS=required HOOKFLOW_BROWSER_TESTS=required HOOKFLOW_VENDOR_TESTS=required HOOKFLOW_DEPLOY_TESTS=required HOOKFLOW_ROOT_TESTS=$ROOT_TESTS cargo test "$@"
# The in-process integration tests once more with every app on PostgreSQL instead of sled:
# everything that works on the embedded store must work on the shared one.
echo "== the integration tests again, on PostgreSQL (HOOKFLOW_TEST_STORE=postgres) =="
HOOKFLOW_TEST_STORE=postgres HOOKFLOW_PG_TESTS=required HOOKFLOW_BROWSER_TESTS=required HOOKFLOW_VENDOR_TESTS=required HOOKFLOW_DEPLOY_TESTS=required HOOKFLOW_ROOT_TESTS=$ROOT_TESTS cargo test --test it "$@"
# The embedded-only build (`--no-default-features`: no PostgreSQL driver) compiles, and says so
# plainly when given a postgres:// store (the integration tests need the default features).
echo "== the build without PostgreSQL (--no-default-features) =="
cargo test --locked --no-default-features --lib store::tests
