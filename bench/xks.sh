#!/bin/sh
# xks.sh - benchmark xks-proxy Encrypt over TLS keep-alive (see bench/README.md).
#
# Builds build/xks-proxy (configuring build/ when it is missing, or
# $KMSD_BUILD_DIR), compiles the open-loop load generator bench/xksload.c
# with cc against OpenSSL, and hands over to xks_bench.py, which makes a
# SoftHSM2 token, a key and TLS certificates, starts the proxy and runs wrk
# (peak) and xksload (fixed 1,800 requests/s).  Extra arguments go to
# xks_bench.py, e.g.  bench/xks.sh --duration 5 --settings 2:2,2:8
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${KMSD_BUILD_DIR:-$root/build}

for tool in cmake cc wrk python3 pkg-config openssl softhsm2-util; do
  command -v "$tool" >/dev/null 2>&1 || { echo "xks.sh: $tool is required" >&2; exit 1; }
done

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target xks-proxy -j "$(nproc)" >/dev/null

xksload="$build/bench-xksload"
if [ ! -x "$xksload" ] || [ "$root/bench/xksload.c" -nt "$xksload" ]; then
  # shellcheck disable=SC2046  # pkg-config output is meant to split into words
  cc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror -pthread \
    -o "$xksload" "$root/bench/xksload.c" $(pkg-config --cflags --libs openssl)
fi

exec python3 "$root/bench/xks_bench.py" --xks-proxy "$build/xks-proxy" --xksload "$xksload" "$@"
