#!/bin/sh
# cloudhsm-quickstart.sh - one command from an empty kmsd to a CONNECTED CloudHSM key store.
#
# Runs the README's "CloudHSM key stores" walkthrough with the real aws CLI,
# openssl and hsm-cli: a cluster with two subnets, its CSR signed by a fresh
# CA, two HSMs in two zones, activation, the kmsuser crypto user, a custom
# key store, and its connection.  Prints the key store id on stdout (the
# only thing on stdout, so STORE_ID=$(scripts/cloudhsm-quickstart.sh) works);
# progress goes to stderr.
#
# Credentials and region are the aws CLI's (environment, ~/.aws); when none
# are configured at all, the example key pair that a fresh kmsd accepts is
# used, as in the README's quick start.
set -eu

usage() {
  cat <<'EOF'
usage: scripts/cloudhsm-quickstart.sh [options]

Create an ACTIVE HSM cluster with kmsuser and a CONNECTED custom key store on a
kmsd server; print the key store id.

  --endpoint-url URL      kmsd (default http://127.0.0.1:4599)
  --region REGION         default: the aws CLI's, else us-east-1
  --name NAME             custom key store name (default quickstart-<cluster id>)
  --work-dir DIR          where the CA key, certificates and passwords are kept
                          (default: a new directory under ${TMPDIR:-/tmp})
  --hsm-cli PATH          the hsm-cli program (default: on PATH, else build/hsm-cli)
  -h, --help              this text

The kmsuser and admin passwords are random; they are written (mode 0600) to
the work directory, with the trust anchor (customerCA.crt) a later
update-custom-key-store needs.
EOF
}

endpoint=http://127.0.0.1:4599
region=
name=
workdir=
hsm_cli=${HSM_CLI:-}

while [ $# -gt 0 ]; do
  case $1 in
    --endpoint-url) endpoint=${2:?--endpoint-url needs a value}; shift 2 ;;
    --endpoint-url=*) endpoint=${1#*=}; shift ;;
    --region) region=${2:?--region needs a value}; shift 2 ;;
    --region=*) region=${1#*=}; shift ;;
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --name=*) name=${1#*=}; shift ;;
    --work-dir) workdir=${2:?--work-dir needs a value}; shift 2 ;;
    --work-dir=*) workdir=${1#*=}; shift ;;
    --hsm-cli) hsm_cli=${2:?--hsm-cli needs a value}; shift 2 ;;
    --hsm-cli=*) hsm_cli=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "cloudhsm-quickstart: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "cloudhsm-quickstart: $*" >&2; }
die() { say "$*"; exit 1; }

root=$(cd "$(dirname "$0")/.." && pwd)
for tool in aws openssl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
if [ -z "$hsm_cli" ]; then
  if command -v hsm-cli >/dev/null 2>&1; then hsm_cli=hsm-cli
  elif [ -x "${KMSD_BUILD_DIR:-$root/build}/hsm-cli" ]; then hsm_cli=${KMSD_BUILD_DIR:-$root/build}/hsm-cli
  else die "hsm-cli not found: build it (cmake --build build) or pass --hsm-cli PATH"
  fi
fi

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

if [ -z "$workdir" ]; then
  workdir=$(mktemp -d "${TMPDIR:-/tmp}/cloudhsm-quickstart.XXXXXX")
else
  mkdir -p "$workdir"
fi
cd "$workdir"
umask 077

hsm() { aws --endpoint-url "$endpoint" cloudhsmv2 "$@"; }
kms() { aws --endpoint-url "$endpoint" kms "$@"; }
hcli() { "$hsm_cli" --endpoint-url "$endpoint" --region "$region" --cluster-id "$CLUSTER_ID" "$@"; }

# wait_for WANT COMMAND...: run COMMAND until it prints WANT (at most 30 s).
wait_for() {
  want=$1; shift
  i=0
  while [ $i -lt 150 ]; do
    got=$("$@") || return 1
    [ "$got" = "$want" ] && return 0
    sleep 0.2
    i=$((i + 1))
  done
  die "still $got after 30 s, expected $want"
}
cluster_state() {
  hsm describe-clusters --filters clusterIds="$CLUSTER_ID" --query 'Clusters[0].State' --output text
}
active_hsms() {
  hsm describe-clusters --filters clusterIds="$CLUSTER_ID" \
    --query 'length(Clusters[0].Hsms[?State==`ACTIVE`])' --output text
}
store_state() {
  kms describe-custom-key-stores --custom-key-store-id "$STORE_ID" \
    --query 'CustomKeyStores[0].[ConnectionState,ConnectionErrorCode]' --output text
}

# Random passwords of 24 characters from the alphabet the HSM accepts.
openssl rand -hex 12 > kmsuser.password
openssl rand -hex 12 > admin.password

# Any well-formed subnet ids will do; random ones keep repeated runs apart.
CLUSTER_ID=$(hsm create-cluster --hsm-type hsm2m.medium \
  --subnet-ids "subnet-$(openssl rand -hex 8)" "subnet-$(openssl rand -hex 8)" \
  --query Cluster.ClusterId --output text)
say "cluster $CLUSTER_ID created; waiting for its CSR"
wait_for UNINITIALIZED cluster_state
hsm describe-clusters --filters clusterIds="$CLUSTER_ID" \
  --query 'Clusters[0].Certificates.ClusterCsr' --output text > "${CLUSTER_ID}_ClusterCsr.csr"

openssl genrsa -out customerCA.key 2048 2>/dev/null
openssl req -new -x509 -days 3652 -key customerCA.key -out customerCA.crt -subj "/CN=kmsd quickstart CA"
openssl x509 -req -days 3652 -in "${CLUSTER_ID}_ClusterCsr.csr" -CA customerCA.crt -CAkey customerCA.key \
  -CAcreateserial -out "${CLUSTER_ID}_CustomerHsmCertificate.crt" 2>/dev/null
hsm initialize-cluster --cluster-id "$CLUSTER_ID" --signed-cert "file://${CLUSTER_ID}_CustomerHsmCertificate.crt" \
  --trust-anchor file://customerCA.crt >/dev/null
wait_for INITIALIZED cluster_state
say "cluster initialized; creating HSMs in ${region}a and ${region}b"

hsm create-hsm --cluster-id "$CLUSTER_ID" --availability-zone "${region}a" >/dev/null
hsm create-hsm --cluster-id "$CLUSTER_ID" --availability-zone "${region}b" >/dev/null
wait_for 2 active_hsms

hcli cluster activate --password-file admin.password >/dev/null
hcli user create --username kmsuser --role crypto-user --password-file kmsuser.password
say "cluster ACTIVE with kmsuser; creating the key store"

STORE_ID=$(kms create-custom-key-store --custom-key-store-name "${name:-quickstart-$CLUSTER_ID}" \
  --cloud-hsm-cluster-id "$CLUSTER_ID" --trust-anchor-certificate file://customerCA.crt \
  --key-store-password "$(cat kmsuser.password)" --query CustomKeyStoreId --output text)
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
say "key store $STORE_ID is CONNECTED (cluster $CLUSTER_ID; CA, certificates and passwords in $workdir)"
echo "$STORE_ID"
