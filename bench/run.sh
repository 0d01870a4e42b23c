#!/bin/sh
# run.sh - build what the benchmark needs, then run it (see bench/README.md).
#
# Uses build/kmsd and build/hsm-cli (configuring and building build/ when it
# is missing or stale; hsm-cli is left out with --no-cloudhsm), compiles the
# libmicrohttpd floor server and the open-loop load generator xksload with
# cc, and hands over to bench.py.  Extra arguments go to bench.py, e.g.
# bench/run.sh --duration 5 --rate-duration 5
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${KMSD_BUILD_DIR:-$root/build}

for tool in cmake cc wrk python3 pkg-config; do
  command -v "$tool" >/dev/null 2>&1 || { echo "run.sh: $tool is required" >&2; exit 1; }
done

# The CloudHSM row (Encrypt on an HSM-backed key) needs hsm-cli; skip
# building it when that row is not wanted.
targets="kmsd hsm-cli"
for arg in "$@"; do
  case $arg in --no-cloudhsm) targets=kmsd ;; esac
done

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
# shellcheck disable=SC2086  # the target list is meant to split into words
cmake --build "$build" --target $targets -j "$(nproc)" >/dev/null

floor="$build/bench-floor"
if [ ! -x "$floor" ] || [ "$root/bench/floor.c" -nt "$floor" ]; then
  # shellcheck disable=SC2046  # pkg-config output is meant to split into words
  cc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror \
    -o "$floor" "$root/bench/floor.c" $(pkg-config --cflags --libs libmicrohttpd)
fi

xksload="$build/bench-xksload"
if [ ! -x "$xksload" ] || [ "$root/bench/xksload.c" -nt "$xksload" ]; then
  # shellcheck disable=SC2046  # pkg-config output is meant to split into words
  cc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror -pthread \
    -o "$xksload" "$root/bench/xksload.c" $(pkg-config --cflags --libs openssl)
fi

exec python3 "$root/bench/bench.py" --kmsd "$build/kmsd" --floor "$floor" --xksload "$xksload" \
  --hsm-cli "$build/hsm-cli" "$@"
