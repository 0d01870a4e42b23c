#!/usr/bin/env bash
# Runs every unit test program under valgrind's memcheck; any leak or invalid
# access fails the run.  Programs run side by side, one per CPU: memcheck
# runs each program's threads one at a time, so one program never uses more
# than one CPU.  The slowest programs start first, so the CPUs finish
# together.  KMSD_TEST_UNDER_VALGRIND tells a test to shorten loops that check
# values exhaustively (memcheck looks for memory errors, not wrong digits).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
cmake -S . -B build >/dev/null
cmake --build build -j "$(nproc)"

# One program: its log beside it, one line of verdict, and on failure the
# tail of the log (written in one piece so parallel runs do not interleave).
run_one() {
  local t=$1 start=$SECONDS
  if valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
       "$t" >"$t.valgrind.log" 2>&1; then
    echo "valgrind: $t clean ($((SECONDS - start)) s)"
  else
    printf 'valgrind: %s FAILED (see %s.valgrind.log)\n%s\n' "$t" "$t" "$(tail -30 "$t.valgrind.log")"
    return 1
  fi
}
export -f run_one

export KMSD_TEST_UNDER_VALGRIND=1
# Measured slowest first; a name no longer built is skipped, not run.
slowest=(build/test_hsm_clusters build/test_xksp_hsm build/test_xks_client build/test_api_json)
programs=()
for t in "${slowest[@]}" build/test_*; do
  [ -f "$t" ] && [ -x "$t" ] || continue
  case " ${programs[*]} " in *" $t "*) continue ;; esac
  programs+=("$t")
done
# xargs exits non-zero if any program failed.
printf '%s\n' "${programs[@]}" | xargs -P "$(nproc)" -I{} bash -c 'run_one "$1"' _ {}
