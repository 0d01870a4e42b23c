#!/bin/sh
# nodes.sh - kmsd's throughput with one and with two nodes on one PostgreSQL
# database, beside one node on SQLite, in one run (bench/nodes/bench_nodes.py).
#
# Starts a throwaway PostgreSQL server from Debian's packages
# (scripts/pg-test-server.sh) on this machine, so the nodes, the database and
# the load generator share its CPUs; the table says how each run spent them.
#   bench/nodes.sh                      10 s per run
#   bench/nodes.sh --duration 5         shorter
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${KMSD_BUILD_DIR:-$root/build}

for tool in cmake wrk python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "nodes.sh: $tool is required" >&2; exit 1; }
done
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target kmsd -j "$(nproc)" >/dev/null

work=$(mktemp -d /tmp/kmsd-bench-nodes-XXXXXX)
chmod 755 "$work"
trap '"$root/scripts/pg-test-server.sh" stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
url=$("$root/scripts/pg-test-server.sh" start "$work/pg")
KMSD_BIN="$build/kmsd" python3 "$root/bench/nodes/bench_nodes.py" --pg-url "$url" "$@"
