#!/bin/sh
# run.sh - build what the benchmark needs, then run it (see bench/README.md).
#
# Uses build/kmsd (configuring and building build/ when it is missing or
# stale), compiles the libmicrohttpd floor server with cc, and hands over to
# bench.py.  Extra arguments go to bench.py, e.g.  bench/run.sh --duration 5
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${KMSD_BUILD_DIR:-$root/build}

for tool in cmake cc wrk python3 pkg-config; do
  command -v "$tool" >/dev/null 2>&1 || { echo "run.sh: $tool is required" >&2; exit 1; }
done

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target kmsd -j "$(nproc)" >/dev/null

floor="$build/bench-floor"
if [ ! -x "$floor" ] || [ "$root/bench/floor.c" -nt "$floor" ]; then
  # shellcheck disable=SC2046  # pkg-config output is meant to split into words
  cc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror \
    -o "$floor" "$root/bench/floor.c" $(pkg-config --cflags --libs libmicrohttpd)
fi

exec python3 "$root/bench/bench.py" --kmsd "$build/kmsd" --floor "$floor" "$@"
