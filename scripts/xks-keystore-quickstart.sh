#!/bin/sh
# xks-keystore-quickstart.sh - one command from an empty kmsd to a CONNECTED external key store.
#
# Runs the README's "External key stores" walkthrough with the real aws CLI:
# an xks-proxy on a SoftHSM2 token (scripts/xks-quickstart.sh --keep-running,
# unless one is already running from the same work directory), an
# EXTERNAL_KEY_STORE custom key store in kmsd pointing at it, and its
# connection.  Prints the key store id on stdout (the only thing on stdout,
# so STORE_ID=$(scripts/xks-keystore-quickstart.sh) works); progress goes to
# stderr.
#
# kmsd must trust the proxy's CA and reach the proxy's loopback port under
# the endpoint's name, because the API's XksProxyUriEndpoint has no port:
#   kmsd --xks-ca-bundle WORK_DIR/ca.pem --xks-connect-to localhost:443:127.0.0.1:PORT
# The script prints those flags when kmsd was started without them and the
# connection fails.
set -eu

usage() {
  cat <<'EOF'
usage: scripts/xks-keystore-quickstart.sh [options]

Start xks-proxy on a SoftHSM2 token (or reuse the one running from --proxy-dir),
create an external key store on a kmsd server and connect it; print its id.

  --endpoint-url URL      kmsd (default http://127.0.0.1:4599)
  --region REGION         default: the aws CLI's, else us-east-1
  --name NAME             custom key store name (default xks-quickstart-<random>)
  --proxy-dir DIR         xks-quickstart.sh's work directory (default ./var-xks)
  --proxy-port PORT       the proxy's port on 127.0.0.1 (default 8443)
  --xks-proxy PATH        passed on to xks-quickstart.sh
  -h, --help              this text

kmsd needs --xks-ca-bundle PROXY_DIR/ca.pem and
--xks-connect-to localhost:443:127.0.0.1:PORT to reach the proxy.
EOF
}

endpoint=http://127.0.0.1:4599
region=
name=
proxydir=./var-xks
port=8443
proxy_args=

while [ $# -gt 0 ]; do
  case $1 in
    --endpoint-url) endpoint=${2:?--endpoint-url needs a value}; shift 2 ;;
    --endpoint-url=*) endpoint=${1#*=}; shift ;;
    --region) region=${2:?--region needs a value}; shift 2 ;;
    --region=*) region=${1#*=}; shift ;;
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --name=*) name=${1#*=}; shift ;;
    --proxy-dir) proxydir=${2:?--proxy-dir needs a value}; shift 2 ;;
    --proxy-dir=*) proxydir=${1#*=}; shift ;;
    --proxy-port) port=${2:?--proxy-port needs a value}; shift 2 ;;
    --proxy-port=*) port=${1#*=}; shift ;;
    --xks-proxy) proxy_args="--xks-proxy ${2:?--xks-proxy needs a path}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "xks-keystore-quickstart: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$port" in ''|*[!0-9]*) echo "xks-keystore-quickstart: --proxy-port must be a number" >&2; exit 2 ;; esac

say() { echo "xks-keystore-quickstart: $*" >&2; }
die() { say "$*"; exit 1; }

root=$(cd "$(dirname "$0")/.." && pwd)
command -v aws >/dev/null 2>&1 || die "aws is required"

# A newcomer with no AWS configuration at all gets the pair a fresh kmsd accepts.
if [ -z "${AWS_ACCESS_KEY_ID:-}" ] && [ -z "${AWS_PROFILE:-}" ] &&
   ! aws configure get aws_access_key_id >/dev/null 2>&1; then
  say "no AWS credentials configured; using kmsd's default example key pair"
  export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE
  export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
fi
if [ -z "$region" ]; then
  region=${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region 2>/dev/null || true)}}
  region=${region:-us-east-1}
fi
export AWS_DEFAULT_REGION="$region" AWS_REGION="$region" AWS_PAGER=""

# The proxy: reuse a running one of this work directory, else start one.
mkdir -p "$proxydir"
proxydir=$(cd "$proxydir" && pwd)
if [ -f "$proxydir/xks-proxy.pid" ] && kill -0 "$(cat "$proxydir/xks-proxy.pid")" 2>/dev/null; then
  say "xks-proxy already running (pid $(cat "$proxydir/xks-proxy.pid"))"
else
  say "starting xks-proxy on 127.0.0.1:$port (work directory $proxydir)"
  # shellcheck disable=SC2086  # proxy_args is empty or two words
  "$root/scripts/xks-quickstart.sh" --work-dir "$proxydir" --port "$port" --keep-running \
    $proxy_args >/dev/null
fi
uri_path=$(sed -n 's/^ *uri_prefix: *//p' "$proxydir/xks-proxy.yaml" | head -n 1)
[ -n "$uri_path" ] || die "no uri_prefix in $proxydir/xks-proxy.yaml"

kms() { aws --endpoint-url "$endpoint" kms "$@"; }
store_state() {
  kms describe-custom-key-stores --custom-key-store-id "$STORE_ID" \
    --query 'CustomKeyStores[0].[ConnectionState,ConnectionErrorCode]' --output text
}

# The request goes to the CLI as a file (mode 0600): the secret stays off argv,
# and the aws CLI v1 would try to download a parameter that starts with https://.
umask 077
request=$(mktemp "${TMPDIR:-/tmp}/xks-keystore.XXXXXX")
trap 'rm -f "$request"' EXIT
cat >"$request" <<EOF
{
  "CustomKeyStoreName": "${name:-xks-quickstart-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')}",
  "CustomKeyStoreType": "EXTERNAL_KEY_STORE",
  "XksProxyConnectivity": "PUBLIC_ENDPOINT",
  "XksProxyUriEndpoint": "https://localhost",
  "XksProxyUriPath": "$uri_path",
  "XksProxyAuthenticationCredential": {
    "AccessKeyId": "$(cat "$proxydir/access-key-id")",
    "RawSecretAccessKey": "$(cat "$proxydir/secret-access-key")"
  }
}
EOF
STORE_ID=$(kms create-custom-key-store --cli-input-json "file://$request" \
  --query CustomKeyStoreId --output text) ||
  die "create-custom-key-store failed; is kmsd started with --xks-ca-bundle $proxydir/ca.pem --xks-connect-to localhost:443:127.0.0.1:$port ?"
kms connect-custom-key-store --custom-key-store-id "$STORE_ID"
i=0
while :; do
  state=$(store_state)
  case $state in
    CONNECTED*) break ;;
    FAILED*) die "key store $STORE_ID failed to connect: $state" ;;
  esac
  i=$((i + 1))
  [ $i -lt 150 ] || die "key store $STORE_ID still $state after 30 s"
  sleep 0.2
done
say "key store $STORE_ID is CONNECTED to https://localhost$uri_path; external keys: demo-key-1"
echo "$STORE_ID"
