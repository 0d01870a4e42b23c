#!/bin/sh
# cloudhsm.sh - benchmark CloudHSM key stores: connect latency and HSM-backed Encrypt throughput.
#
# Builds kmsd and hsm-cli (in build/, or $KMSD_BUILD_DIR), then runs
# bench/cloudhsm/bench_cloudhsm.py, which sets up a CONNECTED store with
# scripts/cloudhsm-quickstart.sh and measures, in one run:
#   - Connect-to-CONNECTED latency, p50/p99 over --cycles connect/disconnect
#     cycles (DescribeCustomKeyStores polled every --poll-ms);
#   - Encrypt requests/s on an AWS_CLOUDHSM key beside an AWS_KMS key (wrk
#     replaying pre-signed requests through bench/request.lua).
# Extra arguments go to bench_cloudhsm.py, e.g.  bench/cloudhsm.sh --duration 5
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${KMSD_BUILD_DIR:-$root/build}

for tool in cmake wrk python3 aws openssl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "cloudhsm.sh: $tool is required" >&2; exit 1; }
done

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target kmsd hsm-cli -j "$(nproc)" >/dev/null

exec python3 "$root/bench/cloudhsm/bench_cloudhsm.py" --kmsd "$build/kmsd" --hsm-cli "$build/hsm-cli" "$@"
