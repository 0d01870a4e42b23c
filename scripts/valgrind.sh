#!/usr/bin/env bash
# Runs every unit test program under valgrind's memcheck; any leak or invalid
# access fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
cmake -S . -B build >/dev/null
cmake --build build -j "$(nproc)"
status=0
for t in build/test_*; do
  [ -x "$t" ] || continue
  if ! valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
       "$t" >"$t.valgrind.log" 2>&1; then
    echo "valgrind: $t failed (see $t.valgrind.log)"; tail -30 "$t.valgrind.log"; status=1
  else
    echo "valgrind: $t clean"
  fi
done
exit $status
