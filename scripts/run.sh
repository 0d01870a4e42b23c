#!/usr/bin/env bash
# Builds kmsd and runs it on 127.0.0.1:4599 with its data under ./var.
# Extra arguments are passed to kmsd (see `kmsd --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build >/dev/null
cmake --build build -j "$(nproc)" --target kmsd
exec build/kmsd --listen 127.0.0.1:4599 --data-dir ./var "$@"
