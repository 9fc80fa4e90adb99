#!/usr/bin/env bash
# End-to-end ingest benchmark: loadgen → Mosquitto (project config, own
# instance on a free port) → wardwatch serve → PostgreSQL, all on this machine.
#
# Usage: scripts/bench-e2e.sh [DEVICES] [RATE] [DURATION] [PACK_SIZE]
#   defaults: 5000 devices × 1 pack/s × 10 readings = 50,000 readings/s for 60 s.
# RULES=both (default) runs the same load twice in one invocation, rules off
# then on, each on a fresh database, so the two figures compare side by side;
# RULES=on or RULES=off runs one. SCRAPE_DELAY=N waits N s before reading the
# engine's metrics (the rules may still be draining their bounded queues).
# PROBES=N (with rules on) adds N alert-latency probes: patients who each
# publish one deteriorating set; the time to their first page is measured at
# a local webhook receiver and on the team's MQTT topic (p50/p99/max).
# BATCH_DELAY_MS=N overrides ingest.batch_max_delay_ms for the run.
# BROKER=mosquitto (default), embedded (the engine's own broker, no [mqtt]
# url) or both (Mosquitto then embedded, same load, same invocation).
# STORE=postgres (default), sqlite (the embedded store, a fresh file per run)
# or both. BROKER=both STORE=both runs all four pairs, so the embedded
# defaults (embedded broker + SQLite) and Mosquitto + PostgreSQL are
# measured side by side in one invocation.
# Environment: WARDWATCH_BENCH_PG (admin URL, default postgres://postgres@127.0.0.1:5432/postgres).
# Prints the loadgen summary (JSON) and the engine's commit figures.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICES=${1:-5000}
RATE=${2:-1}
DURATION=${3:-60}
PACK=${4:-10}
RULES=${RULES:-both}
BROKER=${BROKER:-mosquitto}
STORE=${STORE:-postgres}
PROBES=${PROBES:-0}
BATCH_DELAY_MS=${BATCH_DELAY_MS:-}
ADMIN=${WARDWATCH_BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}
BASE=${ADMIN%/*}
DB_URL="$BASE/ww_bench_e2e"

cargo build --release --locked -q
BIN=target/release/wardwatch

work=$(mktemp -d)
engine_pid=""; broker_pid=""
cleanup() {
  [ -n "$engine_pid" ] && kill "$engine_pid" 2>/dev/null || true
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/data"
sed -e "s#^listener 1883#listener $port 127.0.0.1#" \
    -e "s#^password_file .*#password_file $work/passwd#" \
    -e "s#^acl_file .*#acl_file $work/acl#" \
    -e "s#^persistence_location .*#persistence_location $work/data/#" \
    -e "s#^log_dest .*#log_dest file $work/mosquitto.log#" \
    config/mosquitto/mosquitto.conf > "$work/mosquitto.conf"
echo "user $(id -un)" >> "$work/mosquitto.conf"
cp config/mosquitto/acl "$work/acl"
# The broker binds each client id to its user: the engine's two sessions and
# each of loadgen's connections get users of their own (staging ACL lines
# appended for the load generator only).
issue() { pw=$1; shift; BENCH_PW="$pw" "$BIN" credentials "$@" --passwd "$work/passwd" --acl "$work/acl" --password-env BENCH_PW >/dev/null; }
issue engine-bench service engine
issue alerts-bench service alerts
issue loadgen-bench staging-publisher wardwatch-loadgen --connections 64
# The embedded broker reads the same kind of file (its engine users it makes itself).
cp "$work/passwd" "$work/embedded-passwd"
mosquitto -c "$work/mosquitto.conf" & broker_pid=$!

# Alerts go to the probes' receiver (first tier) and the team's MQTT topic.
probe_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/teams"
cat > "$work/teams/default.toml" <<EOF
id = "default"
fallback = { channel = "webhook", url = "http://127.0.0.1:$probe_port/fallback", secret_env = "WARDWATCH_BENCH_SECRET" }
[escalation]
repeat = "1h"
start_tier = { low = 0, medium = 0, high = 0, emergency = 0 }
[[escalation.tiers]]
name = "ward nurse"
wait = "1h"
targets = [{ channel = "webhook", url = "http://127.0.0.1:$probe_port/ward", secret_env = "WARDWATCH_BENCH_SECRET" }]
EOF

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)"
echo "offered: $DEVICES devices × $RATE packs/s × $PACK readings for ${DURATION}s"

# The project's config, optionally with another ingest batch window.
cp config/wardwatch.toml "$work/wardwatch.toml"
if [ -n "$BATCH_DELAY_MS" ]; then
  sed -i "s/^batch_max_delay_ms = .*/batch_max_delay_ms = $BATCH_DELAY_MS/" "$work/wardwatch.toml"
  echo "ingest.batch_max_delay_ms = $BATCH_DELAY_MS"
fi

run() {
  local rules=$1 broker=$2 store=$3 db_url
  if [ "$store" = sqlite ]; then
    db_url="sqlite://$work/ww-$rules-$broker.db"
  else
    db_url="$DB_URL"
    psql "$ADMIN" -qc "DROP DATABASE IF EXISTS ww_bench_e2e WITH (FORCE)" >/dev/null
  fi
  http=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  if [ "$broker" = embedded ]; then
    eport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    engine_url=""; alerts_url=""
  else
    eport=18830
    engine_url="mqtt://wardwatch-engine:engine-bench@127.0.0.1:$port"
    alerts_url="mqtt://wardwatch-alerts:alerts-bench@127.0.0.1:$port"
  fi
  loadgen_url="mqtt://wardwatch-loadgen:loadgen-bench@127.0.0.1:$( [ "$broker" = embedded ] && echo "$eport" || echo "$port" )"
  WARDWATCH_MQTT_URL="$engine_url" \
  WARDWATCH_MQTT_ALERTS_URL="$alerts_url" \
  WARDWATCH_MQTT_EMBEDDED_PASSWORD_FILE="$work/embedded-passwd" \
  WARDWATCH_MQTT_EMBEDDED_LISTEN="127.0.0.1:$eport" \
  WARDWATCH_DATABASE_URL="$db_url" \
  WARDWATCH_HTTP_ADDR="127.0.0.1:$http" \
  WARDWATCH_MQTT_CLIENT_ID="wardwatch-bench" \
  WARDWATCH_RULES_ENABLED="$rules" \
  WARDWATCH_ALERTING_ENABLED="$rules" \
  WARDWATCH_TEAMS_DIR="$work/teams" \
  WARDWATCH_BENCH_SECRET="bench-secret" \
    "$BIN" serve --config "$work/wardwatch.toml" 2> "$work/engine-$rules-$broker-$store.log" & engine_pid=$!
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$http/healthz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  echo "== broker: $broker, store: $store, rules enabled: $rules"
  "$BIN" loadgen --mqtt-url "$loadgen_url" \
    --database-url "$db_url" --devices "$DEVICES" --rate "$RATE" --duration "$DURATION" \
    --pack-size "$PACK" --settle 30 --json \
    $( [ "$rules" = true ] && [ "$PROBES" -gt 0 ] && echo "--probes $PROBES --probe-webhook-port $probe_port" ) 2>/dev/null
  sleep "${SCRAPE_DELAY:-0}"
  curl -fs "http://127.0.0.1:$http/metrics" | grep -E '^wardwatch_(batch_commit_seconds_(sum|count)|batch_rows_(sum|count)|readings_stored_total|readings_duplicate_total|mqtt_connection_errors_total|acks_sent_total|rules_readings_total|rules_flags_emitted_total|flag_writes_total|alerts_opened_total|deliveries_total|batch_commit_seconds_bucket|rules_input_latency_seconds_bucket|delivery_seconds_bucket)' || true
  ps -o rss= -p "$engine_pid" | awk '{printf "engine RSS: %.1f MiB\n", $1/1024}'
  kill "$engine_pid"; wait "$engine_pid" 2>/dev/null || true; engine_pid=""
}

case "$RULES" in
  both) rules_runs="false true" ;;
  on) rules_runs="true" ;;
  off) rules_runs="false" ;;
  *) echo "RULES must be both, on or off" >&2; exit 2 ;;
esac
case "$BROKER" in
  both) brokers="mosquitto embedded" ;;
  mosquitto|embedded) brokers="$BROKER" ;;
  *) echo "BROKER must be mosquitto, embedded or both" >&2; exit 2 ;;
esac
case "$STORE" in
  both) stores="postgres sqlite" ;;
  postgres|sqlite) stores="$STORE" ;;
  *) echo "STORE must be postgres, sqlite or both" >&2; exit 2 ;;
esac
for b in $brokers; do
  for st in $stores; do
    for r in $rules_runs; do
      run "$r" "$b" "$st"
    done
  done
done
