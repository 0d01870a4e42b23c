#!/bin/sh
# stores.sh - kmsd's throughput on its two stores, side by side in one run:
# SQLite in the data directory (the default) and PostgreSQL (--store).
#
# Starts a throwaway PostgreSQL server from Debian's packages
# (scripts/pg-test-server.sh; the same machine, so it shares the CPUs with
# kmsd and the load generator), then runs the read benchmark (bench/run.sh:
# Encrypt, Decrypt, GenerateDataKey with wrk, and p99 at half the peak) and
# the write benchmark (bench/writes.sh: CreateKey, CreateAlias,
# ScheduleKeyDeletion) once on each store, and prints one table
# (bench/stores/summary.py).  With PostgreSQL the harness gives kmsd a
# database of its own on that server (KMSD_TEST_PG_URL, tests/e2e/kmsd_harness.py).
#   bench/stores.sh                      10 s per run
#   bench/stores.sh --duration 5         shorter (passed to both benchmarks)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
duration=10
while [ $# -gt 0 ]; do
  case $1 in
    --duration) duration=$2; shift 2 ;;
    *) echo "usage: $0 [--duration SECONDS]" >&2; exit 2 ;;
  esac
done

work=$(mktemp -d /tmp/kmsd-bench-stores-XXXXXX)
chmod 755 "$work"
trap '"$root/scripts/pg-test-server.sh" stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
url=$("$root/scripts/pg-test-server.sh" start "$work/pg")

for store in sqlite postgresql; do
  if [ "$store" = postgresql ]; then export KMSD_TEST_PG_URL="$url"; else unset KMSD_TEST_PG_URL; fi
  echo "== $store: reads" >&2
  "$root/bench/run.sh" --targets kmsd --no-cloudhsm --duration "$duration" \
    --rate-duration "$duration" --json "$work/reads-$store.json" >"$work/reads-$store.txt"
  echo "== $store: writes" >&2
  "$root/bench/writes.sh" --duration "$duration" --json "$work/writes-$store.json" \
    >"$work/writes-$store.txt"
done
unset KMSD_TEST_PG_URL
python3 "$root/bench/stores/summary.py" "$work"
