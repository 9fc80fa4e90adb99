#!/usr/bin/env bash
# The whole wardwatch test suite, on a fresh machine or this one.
#
# - Installs what the tests need when missing (Debian packages, when run as
#   root): PostgreSQL and Mosquitto (the tests start their own brokers from
#   config/mosquitto/mosquitto.conf on free ports, so only the binaries are
#   needed), Chromium and Node.js for the ward board's browser test, and that
#   test's npm packages (tests/board, playwright-core only: no browser download).
# - Starts PostgreSQL if it is not accepting connections.
# - Checks formatting and lints, then runs every test with cargo-nextest
#   (plain `cargo test` when nextest is absent).
#
# Environment: WARDWATCH_TEST_PG, the admin URL of the PostgreSQL to test
# against (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

missing=()
command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || missing+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
# The ward board's browser test: Debian's Chromium, driven by playwright-core.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
# The clock-step fault scenario: libfaketime on the engine process only.
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || missing+=(faketime)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]} (install them, or run this script as root on Debian)" >&2
    exit 1
  fi
fi

export WARDWATCH_TEST_PG="${WARDWATCH_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "starting PostgreSQL"
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$version" ]; then
    echo "no PostgreSQL cluster found under /etc/postgresql" >&2
    exit 1
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
  pg_isready -h 127.0.0.1 -p 5432
fi

# A fresh Debian cluster refuses password-less TCP logins; give the postgres
# user a password for the tests when that is the case.
if ! psql "$WARDWATCH_TEST_PG" -qtAc 'SELECT 1' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    log "setting a password for the postgres role (test machine only)"
    su postgres -c "psql -qc \"ALTER ROLE postgres PASSWORD 'postgres'\"" >/dev/null
    export WARDWATCH_TEST_PG="postgres://postgres:postgres@127.0.0.1:5432/postgres"
  fi
  psql "$WARDWATCH_TEST_PG" -qtAc 'SELECT 1' >/dev/null
fi

if [ ! -d tests/board/node_modules/playwright-core ]; then
  log "installing the board test's npm packages"
  (cd tests/board && npm ci --no-audit --no-fund --loglevel=error)
fi

# Databases left by earlier runs (each test creates its own).
for db in $(psql "$WARDWATCH_TEST_PG" -qtAc "SELECT datname FROM pg_database WHERE datname LIKE 'ww\_test\_%'"); do
  psql "$WARDWATCH_TEST_PG" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null || true
done

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo clippy --no-default-features (a build without the embedded broker)"
cargo clippy --locked --no-default-features -- -D warnings
log "supply chain (cargo deny: advisories, licences, bans, sources)"
scripts/deny.sh
log "doc tests"
cargo test --workspace --doc --locked -q
log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
