#!/bin/sh
# kmsd-xks-quickstart.sh - one command from nothing to a KMS key in an external
# key store of kmsd, through xks-proxy on a SoftHSM2 token, driven by the aws CLI.
#
# Runs scripts/xks-quickstart.sh (token, CA, server certificate for localhost,
# credential, xks-proxy on 127.0.0.1), starts kmsd with --xks-ca-bundle and
# --xks-connect-to so that https://localhost reaches the proxy, then with the
# real aws CLI: create-custom-key-store (EXTERNAL_KEY_STORE), connect, wait for
# CONNECTED, create-key with the proxy's demo-key-1, encrypt and decrypt a file
# (blobs through fileb://).  kmsd's demo data directory (WORK_DIR/kmsd-data) is
# made afresh on each run; both programs stop at the end unless --keep-running.
# docs/custom-key-stores.md ("External key stores") explains every step.
set -eu

usage() {
  cat <<'EOF'
usage: scripts/kmsd-xks-quickstart.sh [options]

Start xks-proxy (SoftHSM2) and kmsd on 127.0.0.1, make a CONNECTED external
key store and a KMS key in it with the aws CLI, encrypt and decrypt a file.

  --work-dir DIR      everything the run makes (default ./var-kmsd-xks)
  --proxy-port PORT   xks-proxy's port (default 8443)
  --kmsd-port PORT    kmsd's port (default 4598)
  --keep-running      leave both running (pids in WORK_DIR/*.pid)
  -h, --help          this text
EOF
}

root=$(cd "$(dirname "$0")/.." && pwd)
workdir=./var-kmsd-xks
pport=8443
kport=4598
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --work-dir) workdir=${2:?--work-dir needs a directory}; shift 2 ;;
    --proxy-port) pport=${2:?--proxy-port needs a number}; shift 2 ;;
    --kmsd-port) kport=${2:?--kmsd-port needs a number}; shift 2 ;;
    --keep-running) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "kmsd-xks-quickstart.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
for p in "$pport" "$kport"; do
  case "$p" in ''|*[!0-9]*) echo "kmsd-xks-quickstart.sh: ports are numbers" >&2; exit 2 ;; esac
done
say() { echo "kmsd-xks-quickstart: $*" >&2; }
die() { say "$*"; exit 1; }
command -v aws >/dev/null 2>&1 || die "the aws CLI is required"

kmsd=$(command -v kmsd 2>/dev/null || true)
[ -n "$kmsd" ] || kmsd=${KMSD_BUILD_DIR:-$root/build}/kmsd
[ -x "$kmsd" ] || die "kmsd not found: build it (cmake --build build)"
proxy=$(command -v xks-proxy 2>/dev/null || true)
[ -n "$proxy" ] || proxy=${KMSD_BUILD_DIR:-$root/build}/xks-proxy

umask 077
mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)

# 1. The proxy, left running for kmsd.
"$root/scripts/xks-quickstart.sh" --work-dir "$workdir/proxy" --port "$pport" \
  --xks-proxy "$proxy" --keep-running >"$workdir/xks-quickstart.out"
ppid_=$(cat "$workdir/proxy/xks-proxy.pid")
kpid=
stop() {
  [ -z "$kpid" ] || { kill "$kpid" 2>/dev/null && wait "$kpid" 2>/dev/null || true; }
  kill "$ppid_" 2>/dev/null || true
}
[ "$keep" -eq 1 ] || trap stop EXIT

# 2. kmsd: trusts the quickstart CA for proxies; https://localhost goes to the proxy.
rm -rf "$workdir/kmsd-data"
"$kmsd" --listen "127.0.0.1:$kport" --data-dir "$workdir/kmsd-data" \
  --xks-ca-bundle "$workdir/proxy/ca.pem" \
  --xks-connect-to "localhost:443:127.0.0.1:$pport" 2>>"$workdir/kmsd.log" &
kpid=$!
echo "$kpid" >"$workdir/kmsd.pid"
i=0
until curl -s -o /dev/null "http://127.0.0.1:$kport/health"; do
  i=$((i + 1))
  { [ "$i" -gt 100 ] || ! kill -0 "$kpid" 2>/dev/null; } && {
    tail -n 5 "$workdir/kmsd.log" >&2; die "kmsd did not start; see $workdir/kmsd.log"; }
  sleep 0.1
done

# 3. The aws CLI, as a user would: kmsd's default example key pair, and CLI v1
# told not to fetch the https:// parameter value.
printf '[default]\ncli_follow_urlparam = false\n' >"$workdir/aws-config"
export AWS_CONFIG_FILE="$workdir/aws-config" AWS_SHARED_CREDENTIALS_FILE=/dev/null
export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE
export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
export AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=""
kms() { aws --endpoint-url "http://127.0.0.1:$kport" kms "$@"; }

STORE_ID=$(kms create-custom-key-store --custom-key-store-name quickstart-xks \
  --custom-key-store-type EXTERNAL_KEY_STORE --xks-proxy-connectivity PUBLIC_ENDPOINT \
  --xks-proxy-uri-endpoint https://localhost --xks-proxy-uri-path /quickstart/kms/xks/v1 \
  --xks-proxy-authentication-credential \
  "AccessKeyId=$(cat "$workdir/proxy/access-key-id"),RawSecretAccessKey=$(cat "$workdir/proxy/secret-access-key")" \
  --query CustomKeyStoreId --output text)
say "external key store $STORE_ID created; connecting"
kms connect-custom-key-store --custom-key-store-id "$STORE_ID"
i=0
while :; do
  state=$(kms describe-custom-key-stores --custom-key-store-id "$STORE_ID" \
    --query 'CustomKeyStores[0].[ConnectionState,ConnectionErrorCode]' --output text)
  case "$state" in
    CONNECTED*) break ;;
    FAILED*) die "connect failed: $state (kmsd log: $workdir/kmsd.log)" ;;
  esac
  i=$((i + 1))
  [ "$i" -lt 150 ] || die "still $state after 30 s"
  sleep 0.2
done
KEY_ID=$(kms create-key --origin EXTERNAL_KEY_STORE --custom-key-store-id "$STORE_ID" \
  --xks-key-id demo-key-1 --description "kmsd-xks-quickstart" --query KeyMetadata.KeyId --output text)
say "KMS key $KEY_ID in $STORE_ID (external key demo-key-1)"
printf 'hello from an external key store\n' >"$workdir/secret.txt"
kms encrypt --key-id "$KEY_ID" --plaintext "fileb://$workdir/secret.txt" \
  --encryption-context project=quickstart --query CiphertextBlob --output text |
  base64 -d >"$workdir/secret.enc"
kms decrypt --ciphertext-blob "fileb://$workdir/secret.enc" \
  --encryption-context project=quickstart --query Plaintext --output text | base64 -d

echo "$STORE_ID $KEY_ID"
if [ "$keep" -eq 1 ]; then
  say "kmsd (pid $kpid) on http://127.0.0.1:$kport and xks-proxy (pid $ppid_) are running"
  say "  stop them with: kill \$(cat $workdir/kmsd.pid) \$(cat $workdir/proxy/xks-proxy.pid)"
fi
