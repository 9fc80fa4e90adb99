#!/usr/bin/env bash
# The fault-injection scenarios under a steady loadgen load (tests/faults.rs),
# each for SECONDS of load, one at a time, and their figures:
#   scripts/faults.sh SECONDS [kill_9 broker database hanging stalled clock]
# CI runs the same scenarios for 20 s each as part of scripts/test.sh.
# WARDWATCH_FAULT_SEED picks the kill moments (default fixed).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:?usage: scripts/faults.sh SECONDS [scenario ...]}"
shift
filter="binary(faults)"
if [ "$#" -gt 0 ]; then
  filter="binary(faults) & ($(printf 'test(%s) | ' "$@" | sed 's/ | $//'))"
fi
# The clock-step scenario runs the engine under libfaketime.
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] ||
  apt-get install -y -q faketime >/dev/null
cargo build --locked --tests -q
WARDWATCH_FAULT_SECS="$secs" cargo nextest run --locked --profile faults \
  --test faults -E "$filter" --no-capture 2>&1 | tee target/faults.log |
  grep -E "^FAULT|PASS|FAIL|panicked" || true
! grep -q "FAIL \[" target/faults.log
