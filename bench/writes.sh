#!/bin/sh
# writes.sh - durable writes per second of kmsd (CreateKey, CreateAlias,
# ScheduleKeyDeletion) beside AWS KMS's request quotas for them.
#
# Builds kmsd (in build/, or $KMSD_BUILD_DIR) and runs
# bench/writes/bench_writes.py.  Extra arguments go to it, e.g.
#   bench/writes.sh --duration 5 --connections 8,32
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${KMSD_BUILD_DIR:-$root/build}

for tool in cmake wrk python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "writes.sh: $tool is required" >&2; exit 1; }
done

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target kmsd -j "$(nproc)" >/dev/null

exec python3 "$root/bench/writes/bench_writes.py" --kmsd "$build/kmsd" "$@"
