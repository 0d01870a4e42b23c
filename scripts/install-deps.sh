#!/usr/bin/env bash
# Installs the Debian packages kmsd needs to build, test and benchmark.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libmicrohttpd-dev libgnutls28-dev libcurl4-openssl-dev libssl-dev
  libjansson-dev libpcre2-dev libsqlite3-dev libpq-dev libyaml-dev
  libp11-kit-dev softhsm2 opensc
  libcmocka-dev wrk openssl curl
  python3 python3-venv
  util-linux valgrind
  postgresql
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The end-to-end tests drive kmsd with the real AWS clients.
if ! python3 -c 'import boto3' 2>/dev/null || ! command -v aws >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -qq --no-install-recommends python3-boto3 awscli
fi

# The XKS stand-in proxy of the end-to-end tests (tests/e2e/xks_standin.py)
# does its AES-GCM with the cryptography package.
if ! python3 -c 'import cryptography' 2>/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -qq --no-install-recommends python3-cryptography
fi
