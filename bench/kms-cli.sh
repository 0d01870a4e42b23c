#!/bin/sh
# kms-cli.sh - time one `kms` command from start to exit beside the same
# command through the `aws` CLI, against a local kmsd.  Users run the CLI in
# shell loops, so what counts is the whole process: start, configuration,
# one signed call, printing, exit.
#
# Builds kmsd and kms (in build/, or $KMSD_BUILD_DIR), then runs
# bench/kms_cli/bench_kms_cli.py.  Extra arguments go to it, e.g.
#   bench/kms-cli.sh --runs 50
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${KMSD_BUILD_DIR:-$root/build}

for tool in cmake python3 aws; do
  command -v "$tool" >/dev/null 2>&1 || { echo "kms-cli.sh: $tool is required" >&2; exit 1; }
done

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target kmsd kms -j "$(nproc)" >/dev/null

exec python3 "$root/bench/kms_cli/bench_kms_cli.py" --kmsd "$build/kmsd" --kms "$build/kms" "$@"
