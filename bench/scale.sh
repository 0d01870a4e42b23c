#!/bin/sh
# scale.sh - kmsd Encrypt and Decrypt on a store of one key beside a large
# store (100,000 keys with aliases and policies by default), two servers
# measured in alternating rounds; plus the build's write rate, memory at peak
# and start-up time on the large store.
#
# Builds kmsd (in build/, or $KMSD_BUILD_DIR) and runs
# bench/scale/bench_scale.py.  Extra arguments go to it, e.g.
#   bench/scale.sh --keys 20000 --rounds 5 --duration 5
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${KMSD_BUILD_DIR:-$root/build}

for tool in cmake wrk python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "scale.sh: $tool is required" >&2; exit 1; }
done

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target kmsd -j "$(nproc)" >/dev/null

exec python3 "$root/bench/scale/bench_scale.py" --kmsd "$build/kmsd" "$@"
