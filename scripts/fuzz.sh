#!/usr/bin/env bash
# Fuzzes each target for SECONDS (release build) and prints its figures:
#   scripts/fuzz.sh SECONDS [senml fhir topic pathway team]
# WARDWATCH_FUZZ_SEED picks the seed (default: the time). A failing input
# is kept under target/fuzz-crashes/<target>/ and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:?usage: scripts/fuzz.sh SECONDS [target ...]}"
shift
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(senml fhir topic pathway team)
seed="${WARDWATCH_FUZZ_SEED:-$(date +%s)}"
cargo build --release --locked -p wardwatch-fuzz --tests >/dev/null 2>&1 || cargo build --release --locked -p wardwatch-fuzz --tests
status=0
for t in "${targets[@]}"; do
  out=$(WARDWATCH_FUZZ_SECS="$secs" WARDWATCH_FUZZ_TARGET="$t" WARDWATCH_FUZZ_SEED="$seed" \
    cargo test --release --locked -q -p wardwatch-fuzz --test fuzz -- --nocapture --test-threads 1 2>&1) \
    || status=1
  printf '%s\n' "$out" | grep -oE "FUZZ .*|[0-9]+ failing inputs.*" || printf '%s\n' "$out" | tail -20
done
exit "$status"
