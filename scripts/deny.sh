#!/usr/bin/env bash
# Supply chain: cargo-deny's advisories, licences, bans and sources, offline.
# The advisory database is a snapshot of rustsec/advisory-db found at
# $WARDWATCH_ADVISORY_DB, ../shared/advisory-db or /work/shared/advisory-db;
# without one, cargo-deny fetches the database itself (needs network).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "==> installing cargo-deny"
  cargo install --locked cargo-deny@0.20.2
fi

snapshot=""
for d in "${WARDWATCH_ADVISORY_DB:-}" ../shared/advisory-db /work/shared/advisory-db; do
  if [ -n "$d" ] && [ -d "$d/crates" ]; then snapshot="$d"; break; fi
done

if [ -z "$snapshot" ]; then
  echo "==> no local advisory snapshot: cargo-deny fetches the database"
  exec cargo deny check
fi

# cargo-deny looks for its default database in this folder and needs it to
# be a git repository (it reads the HEAD commit's time).
db=target/advisory-dbs/advisory-db-3157b0e258782691
stamp="$db/.snapshot-source"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$(cd "$snapshot" && pwd)" ]; then
  rm -rf "$db"
  mkdir -p "$db"
  cp -r "$snapshot"/. "$db"/
  (
    cd "$db"
    rm -rf .git
    git init -q
    git add -A
    git -c user.name=wardwatch -c user.email=ci@wardwatch.invalid commit -qm snapshot
  )
  (cd "$snapshot" && pwd) > "$stamp"
fi
echo "==> cargo deny (advisories from $snapshot)"
cargo fetch --locked >/dev/null
cargo deny --offline check
