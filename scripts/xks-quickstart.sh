#!/bin/sh
# xks-quickstart.sh - one command from nothing to a working xks-proxy on loopback.
#
# Makes, in a work directory: a SoftHSM2 token with an external key and a
# health-check key (through `xks-proxy create-key`), a CA and a server
# certificate with openssl, a random SigV4 credential, and an xks-proxy
# configuration file; then starts xks-proxy on it and calls the four XKS
# operations with `curl --aws-sigv4`, printing each answer.  The proxy is
# stopped at the end unless --keep-running is given.  docs/xks-proxy.md
# explains every piece.
set -eu

usage() {
  cat <<'EOF'
usage: scripts/xks-quickstart.sh [options]

Set up and start xks-proxy on 127.0.0.1 with a SoftHSM2 token, then call
GetHealthStatus, GetKeyMetadata, Encrypt and Decrypt with curl --aws-sigv4.

  --work-dir DIR      token, certificates, credential and configuration
                      (default ./var-xks; reused when it already holds them)
  --port PORT         listen port (default 8443)
  --xks-proxy PATH    the program (default: on PATH, else build/xks-proxy)
  --keep-running      leave the proxy running (its pid is in WORK_DIR/xks-proxy.pid)
  -h, --help          this text
EOF
}

root=$(cd "$(dirname "$0")/.." && pwd)
workdir=./var-xks
port=8443
proxy=
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --work-dir) workdir=${2:?--work-dir needs a directory}; shift 2 ;;
    --port) port=${2:?--port needs a number}; shift 2 ;;
    --xks-proxy) proxy=${2:?--xks-proxy needs a path}; shift 2 ;;
    --keep-running) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "xks-quickstart.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$port" in ''|*[!0-9]*) echo "xks-quickstart.sh: --port must be a number" >&2; exit 2 ;; esac

if [ -z "$proxy" ]; then
  proxy=$(command -v xks-proxy 2>/dev/null || true)
  [ -n "$proxy" ] || proxy=$root/build/xks-proxy
fi
if [ ! -x "$proxy" ]; then
  echo "xks-quickstart.sh: building xks-proxy" >&2
  [ -f "$root/build/CMakeCache.txt" ] || cmake -S "$root" -B "$root/build" >/dev/null
  cmake --build "$root/build" --target xks-proxy -j "$(nproc)" >/dev/null
  proxy=$root/build/xks-proxy
fi
module=
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
         /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
  [ -f "$m" ] && { module=$m; break; }
done
[ -n "$module" ] || { echo "xks-quickstart.sh: SoftHSM2 is not installed (apt-get install softhsm2)" >&2; exit 1; }

umask 077
mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)
export SOFTHSM2_CONF="$workdir/softhsm2.conf"
prefix=/quickstart/kms/xks/v1

if [ ! -f "$workdir/xks-proxy.yaml" ]; then
  echo "xks-quickstart.sh: setting up $workdir" >&2
  mkdir -p "$workdir/tokens"
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$workdir" >"$SOFTHSM2_CONF"
  # The PIN is random: the token lives in the work directory, readable by its owner only.
  head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$workdir/token.pin"
  softhsm2-util --init-token --free --label xks-quickstart --so-pin "$(cat "$workdir/token.pin")" \
    --pin "$(cat "$workdir/token.pin")" >/dev/null
  "$proxy" create-key --pkcs11-module "$module" --token-label xks-quickstart \
    --pin-file "$workdir/token.pin" --label demo-key-1 >&2
  "$proxy" create-key --pkcs11-module "$module" --token-label xks-quickstart \
    --pin-file "$workdir/token.pin" --label xks-health >&2

  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj /CN=xks-quickstart-ca -keyout "$workdir/ca.key" -out "$workdir/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$workdir/server.key" -out "$workdir/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$workdir/server.ext"
  openssl x509 -req -in "$workdir/server.csr" -CA "$workdir/ca.pem" -CAkey "$workdir/ca.key" \
    -CAcreateserial -days 365 -extfile "$workdir/server.ext" -out "$workdir/server.pem" 2>/dev/null

  # The spec's credential shapes: an access key id of A-Z and 2-7, a secret of
  # 256 random bits in base64.
  head -c 15 /dev/urandom | base32 | tr -d '=\n' >"$workdir/access-key-id"
  head -c 32 /dev/urandom | base64 | tr -d '\n' >"$workdir/secret-access-key"

  cat >"$workdir/xks-proxy.yaml" <<EOF
# xks-proxy configuration made by scripts/xks-quickstart.sh (docs/xks-proxy.md).
listen: "127.0.0.1:$port"
tls:
  cert: server.pem
  key: server.key
key_stores:
  - name: quickstart
    uri_prefix: $prefix
    region: us-east-1
    credentials:
      - access_key_id: $(cat "$workdir/access-key-id")
        secret_access_key_file: secret-access-key
    pkcs11_module: $module
    tokens:
      - label: xks-quickstart
        pin_file: token.pin
    health_key: xks-health
    quota: { requests_per_second: 1800 }
EOF
fi

# Detached from the caller's output: a proxy left running must not hold its pipes open.
"$proxy" --config "$workdir/xks-proxy.yaml" </dev/null >/dev/null 2>>"$workdir/xks-proxy.log" &
pid=$!
echo "$pid" >"$workdir/xks-proxy.pid"
stop() { kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; }
[ "$keep" -eq 1 ] || trap stop EXIT
url=https://localhost:$(sed -n 's/^listen: "127.0.0.1:\([0-9]*\)"$/\1/p' "$workdir/xks-proxy.yaml")$prefix
i=0
until curl -s -o /dev/null --cacert "$workdir/ca.pem" "${url%$prefix}/ping"; do
  i=$((i + 1))
  if [ "$i" -gt 50 ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "xks-quickstart.sh: xks-proxy did not start; see $workdir/xks-proxy.log" >&2
    tail -n 5 "$workdir/xks-proxy.log" >&2
    exit 1
  fi
  sleep 0.1
done

xks() { # xks PATH JSON: one signed XKS call, the answer on stdout
  curl -sS --fail-with-body --cacert "$workdir/ca.pem" \
    --aws-sigv4 "aws:amz:us-east-1:kms-xks-proxy" \
    --user "$(cat "$workdir/access-key-id"):$(cat "$workdir/secret-access-key")" \
    -H "Content-Type: application/json" -d "$2" "$url$1"
  echo
}
meta='"awsPrincipalArn":"arn:aws:iam::111122223333:root","kmsKeyArn":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"'

echo "GetHealthStatus:"
xks /health '{"requestMetadata":{"kmsRequestId":"quickstart-1","kmsOperation":"KmsHealthCheck"}}'
echo "GetKeyMetadata:"
xks /keys/demo-key-1/metadata \
  '{"requestMetadata":{"awsPrincipalArn":"arn:aws:iam::111122223333:root","kmsOperation":"CreateKey","kmsRequestId":"quickstart-2"}}'
echo "Encrypt:"
enc=$(xks /keys/demo-key-1/encrypt "{\"requestMetadata\":{$meta,\"kmsOperation\":\"Encrypt\",\"kmsRequestId\":\"quickstart-3\"},\"plaintext\":\"$(printf 'hello, xks' | base64)\",\"encryptionAlgorithm\":\"AES_GCM\",\"additionalAuthenticatedData\":\"$(printf 'project=demo' | base64)\",\"ciphertextDataIntegrityValueAlgorithm\":\"SHA_256\"}")
echo "$enc"
field() { printf '%s' "$enc" | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
echo "Decrypt:"
dec=$(xks /keys/demo-key-1/decrypt "{\"requestMetadata\":{$meta,\"kmsOperation\":\"Decrypt\",\"kmsRequestId\":\"quickstart-4\"},\"ciphertext\":\"$(field ciphertext)\",\"encryptionAlgorithm\":\"AES_GCM\",\"additionalAuthenticatedData\":\"$(printf 'project=demo' | base64)\",\"initializationVector\":\"$(field initializationVector)\",\"authenticationTag\":\"$(field authenticationTag)\"}")
echo "$dec"
printf '%s' "$dec" | sed -n 's/.*"plaintext":"\([^"]*\)".*/\1/p' | base64 -d
echo

if [ "$keep" -eq 1 ]; then
  echo "xks-proxy is running (pid $pid): endpoint https://localhost:${url#https://localhost:}" >&2
  echo "  access key id in $workdir/access-key-id, secret in $workdir/secret-access-key" >&2
  echo "  stop it with: kill \$(cat $workdir/xks-proxy.pid)" >&2
fi
