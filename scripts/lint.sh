#!/usr/bin/env bash
# Static analysis: cppcheck and clang-tidy over lib/ and src/.  Exits non-zero
# on any finding, so CI keeps both quiet.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in cppcheck clang-tidy; do
  command -v "$tool" >/dev/null || { apt-get install -y -qq "$tool" >/dev/null; }
done

cmake -S . -B build-lint -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
sources=$(git ls-files 'lib/*.c' 'src/*.c' | grep -v '_model\.c$')

echo "== cppcheck"
cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,performance,portability \
  --inline-suppr --suppress=missingIncludeSystem -I lib -I include $sources

echo "== clang-tidy"
status=0
for f in $sources; do
  clang-tidy -p build-lint --quiet "$f" 2>/dev/null || status=1
done
exit $status
