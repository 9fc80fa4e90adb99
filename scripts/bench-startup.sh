#!/usr/bin/env bash
# Time from the README's run command (`wardwatch demo`, release build
# already made) to a served ward board, and to the first alert the demo
# nurse can see. Each run starts as a newcomer would: the checkout's config
# in a fresh directory, no broker or database configured (the embedded
# broker and SQLite store), on free ports.
#
# Usage: scripts/bench-startup.sh [RUNS]   (default 3)
# STORE=postgres runs against a fresh PostgreSQL database instead
# (WARDWATCH_BENCH_PG, admin URL, default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
STORE=${STORE:-sqlite}
ADMIN=${WARDWATCH_BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}
BASE=${ADMIN%/*}
cargo build --release --locked -q
BIN=$PWD/target/release/wardwatch
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)"
for i in $(seq 1 "$RUNS"); do
  checkout=$(mktemp -d); cp -r config "$checkout/"
  db_url=""
  if [ "$STORE" = postgres ]; then
    psql "$ADMIN" -qc "DROP DATABASE IF EXISTS ww_bench_startup WITH (FORCE)" >/dev/null
    db_url="$BASE/ww_bench_startup"
  fi
  http=$(free_port); mqtt=$(free_port)
  out=$(mktemp)
  start=$(now_ms)
  (cd "$checkout" && exec env -u WARDWATCH_MQTT_URL WARDWATCH_DATABASE_URL="$db_url" WARDWATCH_HTTP_ADDR="127.0.0.1:$http" \
    WARDWATCH_MQTT_EMBEDDED_LISTEN="127.0.0.1:$mqtt" "$BIN" demo > "$out" 2>/dev/null) & pid=$!
  until curl -fs "http://127.0.0.1:$http/" >/dev/null 2>&1; do sleep 0.02; done
  board=$(( $(now_ms) - start ))
  until [ "$(wc -l < "$out")" -ge 3 ]; do sleep 0.02; done
  token=$(sed -n 3p "$out")
  until curl -fs -H "Authorization: Bearer $token" "http://127.0.0.1:$http/api/v1/alerts" | grep -q '"kind":"clinical"'; do sleep 0.2; done
  alert=$(( $(now_ms) - start ))
  kill -INT "$pid"; wait "$pid" || true
  echo "run $i ($STORE): board served after ${board} ms; first clinical alert on the nurse's list after ${alert} ms; $(tail -1 "$out")"
  rm -rf "$out" "$checkout"
done
