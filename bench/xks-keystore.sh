#!/bin/sh
# xks-keystore.sh - benchmark kmsd Encrypt on an external key (through xks-proxy over TLS)
# beside an AWS_KMS key, in one run.
#
# Builds kmsd and xks-proxy (in build/, or $KMSD_BUILD_DIR), then runs
# bench/xks_keystore/bench_xks_keystore.py, which starts xks-proxy with
# scripts/xks-quickstart.sh, a kmsd that trusts it, a CONNECTED external key
# store (scripts/xks-keystore-quickstart.sh), and wrk on one Encrypt per key.
# Extra arguments go to bench_xks_keystore.py, e.g.  bench/xks-keystore.sh --duration 5
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${KMSD_BUILD_DIR:-$root/build}

for tool in cmake wrk python3 aws openssl softhsm2-util curl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "xks-keystore.sh: $tool is required" >&2; exit 1; }
done

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target kmsd xks-proxy -j "$(nproc)" >/dev/null

exec python3 "$root/bench/xks_keystore/bench_xks_keystore.py" --kmsd "$build/kmsd" \
  --xks-proxy "$build/xks-proxy" "$@"
