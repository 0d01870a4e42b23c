#!/usr/bin/env bash
# Static analysis: cppcheck and clang-tidy over lib/ and src/.  Exits non-zero
# on any finding, so CI keeps both quiet.  Both use every CPU: cppcheck with
# -j, clang-tidy one file per process.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in cppcheck clang-tidy; do
  command -v "$tool" >/dev/null || { apt-get install -y -qq "$tool" >/dev/null; }
done

cmake -S . -B build-lint -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
sources=$(git ls-files 'lib/*.c' 'src/*.c' | grep -v -e '_model\.c$' -e '_docs\.c$')
jobs=$(nproc)

echo "== cppcheck"
# shellcheck disable=SC2086  # one word per file
cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,performance,portability \
  -j "$jobs" --inline-suppr --suppress=missingIncludeSystem -I lib -I include $sources

echo "== clang-tidy"
# xargs exits non-zero if any file had a finding.
printf '%s\n' $sources | xargs -P "$jobs" -n 1 clang-tidy -p build-lint --quiet 2>/dev/null
