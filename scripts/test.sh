#!/usr/bin/env bash
# Builds kmsd and runs every test (unit + end to end) with ctest, then the
# end-to-end suite again with every kmsd keeping its state in PostgreSQL.
#   scripts/test.sh                 normal build in ./build
#   scripts/test.sh --sanitize      ASan+UBSan build in ./build-asan
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

builddir=build
cmake_args=()
if [ "${1:-}" = "--sanitize" ]; then
  builddir=build-asan
  cmake_args+=(-DKMSD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi

cmake -S . -B "$builddir" "${cmake_args[@]}" >/dev/null
cmake --build "$builddir" -j "$(nproc)"
# Two tests per CPU: the end-to-end tests spend about half their time waiting
# (on child processes, timeouts they provoke, a proxy's delay), so the CPUs
# stay busy without the tests crowding each other.  At most eight at once:
# each end-to-end test starts its own servers and tokens, and the suite has
# only been run at four (two CPUs).
jobs=$(( 2 * $(nproc) ))
[ "$jobs" -le 8 ] || jobs=8
ctest --test-dir "$builddir" --output-on-failure -j "$jobs"

# The end-to-end suite on the PostgreSQL store (docs/multi-node.md): one
# throwaway server from Debian's packages, a database per kmsd
# (tests/e2e/kmsd_harness.py).  Suites that start no kmsd, and those that
# bring their own PostgreSQL server, are not run twice.
pgdir=$(mktemp -d /tmp/kmsd-pg-XXXXXX)
rmdir "$pgdir"
trap 'scripts/pg-test-server.sh stop "$pgdir" >/dev/null 2>&1 || true' EXIT
KMSD_TEST_PG_URL=$(scripts/pg-test-server.sh start "$pgdir")
export KMSD_TEST_PG_URL
ctest --test-dir "$builddir" --output-on-failure -j "$jobs" -L e2e \
  -E 'e2e\.test_(cli_output|cli_shorthand|cli_validate|kms_completion|kms_help|multi_node|pg_fixture|pg_store)$'
