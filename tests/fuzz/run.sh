#!/usr/bin/env bash
# run.sh - build kmsd's libFuzzer targets with clang and run each one against
# its seed corpus.
#
# The fuzz build lives outside CMake on purpose: the tested build uses gcc,
# libFuzzer needs clang, and a CI job must be able to run this from a fresh
# clone with nothing but the Debian packages.  The whole library (every
# lib/**/*.c) is compiled with clang and ASan+UBSan+fuzzer coverage, so a
# parser is exercised with exactly the code the server runs.
#
# Exit status: 0 when every target ran its time without a finding; 1 when a
# target crashed, leaked, hit undefined behaviour, timed out or broke an
# invariant (the reproducer is left under BUILD_DIR/artifacts/); 2 on a
# usage or build error.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

seconds=30
build_dir="$repo/build-fuzz"
jobs=1
build_only=0
targets=()

usage() {
  cat <<EOF
usage: tests/fuzz/run.sh [--seconds N] [--target NAME]... [--jobs J] [--build-dir DIR] [--build-only]

  --seconds N     run each target for N seconds (default 30; 0: replay the corpora once)
  --target NAME   run only fuzz_NAME (repeatable; default: every tests/fuzz/fuzz_*.c)
  --jobs J        run up to J targets at once (default 1)
  --build-dir DIR objects, binaries, working corpora, logs, artifacts (default build-fuzz/)
  --build-only    compile, do not run

Targets: $(cd "$here" && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//' | tr '\n' ' ')
To replay one input: BUILD_DIR/fuzz_NAME FILE
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=${2:?--seconds needs a value}; shift 2 ;;
    --target) targets+=("${2:?--target needs a name}"); shift 2 ;;
    --jobs) jobs=${2:?--jobs needs a value}; shift 2 ;;
    --build-dir) build_dir=${2:?--build-dir needs a directory}; shift 2 ;;
    --build-only) build_only=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
case "$seconds" in ''|*[!0-9]*) echo "run.sh: --seconds must be a whole number" >&2; exit 2 ;; esac
case "$jobs" in ''|*[!0-9]*|0) echo "run.sh: --jobs must be a positive number" >&2; exit 2 ;; esac

if [ ${#targets[@]} -eq 0 ]; then
  for f in "$here"/fuzz_*.c; do
    n=${f##*/fuzz_}
    targets+=("${n%.c}")
  done
fi
for t in "${targets[@]}"; do
  [ -f "$here/fuzz_$t.c" ] || { echo "run.sh: no target '$t' (tests/fuzz/fuzz_$t.c)" >&2; exit 2; }
done

# ---- toolchain ------------------------------------------------------------

pick_cc() {
  if command -v clang-14 >/dev/null 2>&1; then echo clang-14
  elif command -v clang >/dev/null 2>&1; then echo clang
  fi
}

# Does $1 link a libFuzzer program with ASan and UBSan?
cc_can_fuzz() {
  local probe
  probe=$(mktemp -d)
  printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' \
    >"$probe/p.c"
  if "$1" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" >/dev/null 2>&1; then
    rm -rf "$probe"; return 0
  fi
  rm -rf "$probe"; return 1
}

cc=$(pick_cc)
if [ -z "$cc" ] || ! cc_can_fuzz "$cc"; then
  echo "run.sh: clang with the libFuzzer runtime is missing; installing clang-14 and libclang-rt-14-dev" >&2
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo_cmd=(sudo -n); else
      echo "run.sh: not root and no sudo: install clang-14 libclang-rt-14-dev yourself" >&2; exit 2
    fi
  fi
  "${sudo_cmd[@]}" apt-get update -qq >&2 || { echo "run.sh: apt-get update failed" >&2; exit 2; }
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq clang-14 libclang-rt-14-dev >&2 \
    || { echo "run.sh: apt-get install failed" >&2; exit 2; }
  cc=$(pick_cc)
  if [ -z "$cc" ] || ! cc_can_fuzz "$cc"; then
    echo "run.sh: clang still cannot build a libFuzzer program" >&2; exit 2
  fi
fi

pkgs="jansson libpcre2-8 sqlite3 libpq libcurl libssl libcrypto libmicrohttpd gnutls yaml-0.1"
if ! pkg_cflags=$(pkg-config --cflags $pkgs) || ! pkg_libs=$(pkg-config --libs $pkgs); then
  echo "run.sh: missing -dev packages (pkg-config: $pkgs)" >&2; exit 2
fi

# Same language level and warnings as the CMake build.  clang's
# -Wstring-concatenation (in its -Wextra, absent from gcc's) is off: it takes
# a long SQL literal split over two lines in an array initializer for a
# missing comma, and the CMake build does not ask for it.
common_flags=(-std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -g -O1 -fno-omit-frame-pointer
              -fno-strict-aliasing -fno-sanitize-recover=undefined
              -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
              -Wno-unused-parameter -Wno-string-concatenation -Werror
              -I"$repo/lib" -I"$repo/include" -I"$build_dir/generated")
lib_flags=("${common_flags[@]}" -fsanitize=fuzzer-no-link,address,undefined)
target_flags=("${common_flags[@]}" -fsanitize=fuzzer,address,undefined)

mkdir -p "$build_dir/obj" "$build_dir/corpus" "$build_dir/artifacts" "$build_dir/logs" \
         "$build_dir/generated/core"

# core/version.h, as CMake's configure_file makes it: the VERSION of the
# project() call.  Rewritten only when it changes, so objects stay fresh.
version=$(sed -n 's/^project([^)]*VERSION \([0-9][0-9.]*\).*/\1/p' "$repo/CMakeLists.txt" | head -n 1)
if [ -z "$version" ]; then echo "run.sh: no project VERSION in CMakeLists.txt" >&2; exit 2; fi
sed "s/@PROJECT_VERSION@/$version/g" "$repo/lib/core/version.h.in" >"$build_dir/generated/core/version.h.new"
if cmp -s "$build_dir/generated/core/version.h.new" "$build_dir/generated/core/version.h"; then
  rm -f "$build_dir/generated/core/version.h.new"
else
  mv "$build_dir/generated/core/version.h.new" "$build_dir/generated/core/version.h"
fi

# ---- the library -----------------------------------------------------------

# An object is stale when it or its dependency list is missing, or when any
# file it was compiled from (per the compiler's -MMD list) is newer.
stale() {
  local obj=$1 dep=$2 f
  [ -f "$obj" ] && [ -f "$dep" ] || return 0
  for f in $(sed -e 's/^[^:]*://' -e 's/\\$//' "$dep"); do
    [ -e "$f" ] || return 0
    [ "$f" -nt "$obj" ] && return 0
  done
  return 1
}

mapfile -t sources < <(cd "$repo" && find lib -name '*.c' | sort)
if [ ${#sources[@]} -eq 0 ]; then echo "run.sh: no library sources under lib/" >&2; exit 2; fi

todo=()
objs=()
for src in "${sources[@]}"; do
  obj="$build_dir/obj/${src%.c}.o"
  objs+=("$obj")
  if stale "$obj" "${obj%.o}.d"; then todo+=("$src"); fi
done

compile_one() {
  local src=$1 obj="$build_dir/obj/${1%.c}.o"
  mkdir -p "$(dirname "$obj")"
  "$cc" "${lib_flags[@]}" $pkg_cflags -MMD -MF "${obj%.o}.d" -c "$repo/$src" -o "$obj"
}

if [ ${#todo[@]} -gt 0 ]; then
  echo "run.sh: compiling ${#todo[@]} library file(s) with $cc" >&2
  failed=0
  running=0
  for src in "${todo[@]}"; do
    compile_one "$src" &
    running=$((running + 1))
    if [ "$running" -ge "$(nproc)" ]; then
      wait -n || failed=1
      running=$((running - 1))
    fi
  done
  while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
  done
  if [ "$failed" -ne 0 ]; then echo "run.sh: the library does not compile with $cc" >&2; exit 2; fi
fi

lib_archive="$build_dir/libkms-fuzz.a"
rm -f "$lib_archive"
ar rcs "$lib_archive" "${objs[@]}"

# ---- the targets -----------------------------------------------------------

for t in "${targets[@]}"; do
  bin="$build_dir/fuzz_$t"
  if [ ! -x "$bin" ] || [ "$here/fuzz_$t.c" -nt "$bin" ] || [ "$lib_archive" -nt "$bin" ] ||
     { [ -f "$here/fuzz_common.h" ] && [ "$here/fuzz_common.h" -nt "$bin" ]; }; then
    echo "run.sh: building fuzz_$t" >&2
    "$cc" "${target_flags[@]}" $pkg_cflags "$here/fuzz_$t.c" "$lib_archive" $pkg_libs \
      -lpthread -ldl -lm -o "$bin" || { echo "run.sh: fuzz_$t does not build" >&2; exit 2; }
  fi
done

[ "$build_only" -eq 1 ] && exit 0

# ---- running -----------------------------------------------------------------

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

run_target() {
  local t=$1 log="$build_dir/logs/$1.log" args
  mkdir -p "$build_dir/corpus/$t"
  args=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$build_dir/artifacts/$t-")
  # libFuzzer reads -max_total_time=0 as "forever": 0 seconds means replay
  # the corpora once, a quick regression run.
  if [ "$seconds" -eq 0 ]; then args+=(-runs=0); else args+=(-max_total_time="$seconds"); fi
  [ -f "$here/$t.dict" ] && args+=(-dict="$here/$t.dict")
  # New inputs go to the working corpus in the build directory; the committed
  # seeds are only read.
  "$build_dir/fuzz_$t" "${args[@]}" "$build_dir/corpus/$t" "$here/corpus/$t" >"$log" 2>&1
}

declare -A target_of=()
status=0
report() {
  local t=$1 rc=$2 log="$build_dir/logs/$1.log"
  if [ "$rc" -eq 0 ]; then
    echo "PASS fuzz_$t: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}') runs," \
         "$(ls "$build_dir/corpus/$t" | wc -l) corpus units"
  else
    status=1
    echo "FAIL fuzz_$t (exit $rc): log $log"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written|.*runtime error:|fuzz invariant)' "$log" \
      | head -20 | sed 's/^/    /'
  fi
}

# Reap one finished target (wait -n -p names which one) and report it.
reap_one() {
  local done_pid rc=0
  wait -n -p done_pid || rc=$?
  report "${target_of[$done_pid]}" "$rc"
  unset "target_of[$done_pid]"
}

echo "run.sh: running ${#targets[@]} target(s) for ${seconds}s each (${jobs} at a time)" >&2
for t in "${targets[@]}"; do
  while [ "${#target_of[@]}" -ge "$jobs" ]; do reap_one; done
  run_target "$t" &
  target_of[$!]=$t
done
while [ "${#target_of[@]}" -gt 0 ]; do reap_one; done

if [ "$status" -ne 0 ]; then
  echo "run.sh: findings above; reproducers in $build_dir/artifacts/ (see docs/fuzzing.md)" >&2
fi
exit "$status"
