#!/usr/bin/env bash
# Two control-plane "nodes" on one store and one HSM: real etcd, two real
# kube-apiservers (A and B) on that one etcd, each with its own KMS shim on
# its own unix socket. Both shims share one --state-dir (its SQLite store
# stands in for the PostgreSQL store of a real HA set-up, which DESIGN allows)
# and one SoftHSM2 token (KMS_KEYS=pkcs11, the default; software shares the
# state dir's master key instead). Checks that a Secret written through A is
# read through B (B's shim decrypts the seed A's shim wrapped), that a KEK
# rotation made through `localrun serve` on the same state dir reaches both
# kube-apiservers (each writes a new Secret under the new key_id, as etcd
# shows), and that both still read every Secret.
# Every process started here is stopped by its PID on exit.
#
# Env (defaults in brackets):
#   KUBE_APISERVER [the cached build]  ETCD [etcd]  ETCDCTL [etcdctl]
#   KMSSHIM, LOCALRUN [built from this repo into the temp dir]  KEEP=1 keeps the temp dir
#   KMS_KEYS [pkcs11] the shims' custody: pkcs11 (one fresh SoftHSM2 token) or software
#   REFRESH [5s] the shims' --refresh-interval
#   ROTATE_WAIT [150] seconds to wait for both kube-apiservers to use the rotated
#     key_id (each polls its shim's Status every 60 s)
# Exit status: 0 pass, 1 fail, 2 a component is missing.
set -Eeuo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ETCD=${ETCD:-$(command -v etcd || true)}
ETCDCTL=${ETCDCTL:-$(command -v etcdctl || true)}
KUBE_APISERVER=${KUBE_APISERVER:-${CLUSTERKEYS_CACHE:-$HOME/.cache/clusterkeys}/kube-apiserver-${KUBE_VERSION:-v1.37.2}/kube-apiserver}
[[ -x $KUBE_APISERVER ]] || { echo "missing kube-apiserver at $KUBE_APISERVER: run test/kube/build-kube-apiserver.sh" >&2; exit 2; }
[[ -n $ETCD && -x $ETCD && -n $ETCDCTL && -x $ETCDCTL ]] || { echo "missing etcd/etcdctl: run test/kube/install-etcd.sh (apt-get install etcd-server etcd-client)" >&2; exit 2; }
for t in curl openssl jq base64; do command -v $t >/dev/null || { echo "missing tool: $t" >&2; exit 2; }; done

T0=$(date +%s.%N)
WORK=$(mktemp -d /tmp/ck-kube-2node.XXXXXX)
declare -A PIDS=()
now() { date +%s.%N; }
el() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }
log() { printf '[%6ss] %s\n' "$(el "$T0")" "$*"; }
fail() { log "FAIL: $*"; exit 1; }

stop() { # stop NAME: TERM by PID, wait up to 15 s, then KILL that PID
  local p=${PIDS[$1]:-}
  [[ -n $p ]] || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  fi
  wait "$p" 2>/dev/null || true
  unset "PIDS[$1]"
}
cleanup() {
  local rc=$?
  for n in apiserver-a apiserver-b localrun shim-a shim-b etcd; do stop "$n"; done
  if [[ $rc -ne 0 ]]; then
    log "exit $rc; last log lines:"
    for f in "$WORK"/*.log; do [[ -f $f ]] && { echo "--- $f"; tail -n 20 "$f"; }; done
  fi
  if [[ ${KEEP:-0} == 1 || $rc -ne 0 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  log "total $(el "$T0")s rc=$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { local p; while :; do p=$((20000 + RANDOM % 20000)); (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }; done; }
EPORT=$(free_port); PPORT=$(free_port); LPORT=$(free_port)
declare -A APORT=([a]=$(free_port) [b]=$(free_port)) MPORT=([a]=$(free_port) [b]=$(free_port))
TOKEN=$(openssl rand -hex 16)
KMS_KEYS=${KMS_KEYS:-pkcs11}
case $KMS_KEYS in
  software) ;;
  pkcs11)
    # One token for both nodes: SOFTHSM2_CONF and CLUSTERKEYS_PKCS11_* (PIN in a 0600 file).
    eval "$(bash "$ROOT/test/scripts/softhsm.sh" init "$WORK/hsm" kube-2node)" || { echo "softhsm.sh init failed" >&2; exit 2; }
    log "custody: pkcs11, one SoftHSM2 token '$CLUSTERKEYS_PKCS11_TOKEN_LABEL' for both nodes"
    ;;
  *) echo "KMS_KEYS=$KMS_KEYS: want pkcs11 or software" >&2; exit 2 ;;
esac
log "work dir $WORK; etcd :$EPORT; node a: apiserver :${APORT[a]} shim metrics :${MPORT[a]}; node b: apiserver :${APORT[b]} shim metrics :${MPORT[b]}"

for b in kmsshim localrun; do
  v=${b^^}
  if [[ -z ${!v:-} ]]; then
    ts=$(now)
    pkg=./localrun; [[ $b == kmsshim ]] && pkg=./functions/kmsshim
    (cd "$ROOT" && go build -o "$WORK/$b" "$pkg") || fail "go build $pkg"
    printf -v "$v" '%s' "$WORK/$b"
    log "built $b in $(el "$ts")s"
  fi
done

openssl genrsa -out "$WORK/sa.key" 2048 2>/dev/null
openssl rsa -in "$WORK/sa.key" -pubout -out "$WORK/sa.pub" 2>/dev/null
echo "$TOKEN,e2e-admin,e2e-admin,system:masters" > "$WORK/tokens.csv"
chmod 600 "$WORK/tokens.csv" "$WORK/sa.key"
for n in a b; do
  # The checked-in EncryptionConfiguration (same provider name on every
  # node), pointed at this node's socket.
  sed "s#unix:///var/run/clusterkeys/kms.sock#unix://$WORK/kms-$n.sock#" "$ROOT/infra/kmsshim/encryption-config.yaml" > "$WORK/encryption-$n.yaml"
  grep -q "unix://$WORK/kms-$n.sock" "$WORK/encryption-$n.yaml" || fail "could not point encryption-config.yaml at kms-$n.sock"
done

api() { # api NODE METHOD PATH [curl args]
  local n=$1 m=$2 p=$3; shift 3
  curl -sk -m 10 -o "$WORK/.body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $TOKEN" "$@" "https://127.0.0.1:${APORT[$n]}$p" 2>/dev/null || true
}
etcdget() { ETCDCTL_API=3 "$ETCDCTL" --endpoints "http://127.0.0.1:$EPORT" get "$1" --print-value-only; }
metric() { # metric NODE REGEX: sum of that shim's matching metric lines
  { curl -s -m 5 "http://127.0.0.1:${MPORT[$1]}/metrics" || true; } | awk -v re="^$2" '$0 ~ re {s+=$NF} END{printf "%d", s}'
}
DECRYPTS='clusterkeys_kms_operations_total\{code="OK",op="decrypt"\}'

# ---------- etcd ----------
ts=$(now)
"$ETCD" --name e2e --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$EPORT" --advertise-client-urls "http://127.0.0.1:$EPORT" \
  --listen-peer-urls "http://127.0.0.1:$PPORT" --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
  --initial-cluster "e2e=http://127.0.0.1:$PPORT" --log-level warn >"$WORK/etcd.log" 2>&1 &
PIDS[etcd]=$!
for _ in $(seq 300); do
  ETCDCTL_API=3 "$ETCDCTL" --endpoints "http://127.0.0.1:$EPORT" endpoint health >/dev/null 2>&1 && break
  kill -0 "${PIDS[etcd]}" 2>/dev/null || fail "etcd exited"; sleep 0.1
done
log "etcd ready in $(el "$ts")s"

# ---------- one shim per node, one state dir, one token ----------
start_shim() { # start_shim NODE
  local n=$1 sock=$WORK/kms-$1.sock ts; ts=$(now)
  "$KMSSHIM" --listen "unix://$sock" --keys "$KMS_KEYS" --state-dir "$WORK/state" --key kubernetes-kms \
    --refresh-interval "${REFRESH:-5s}" --metrics-listen "127.0.0.1:${MPORT[$n]}" >>"$WORK/shim-$n.log" 2>&1 &
  PIDS[shim-$n]=$!
  for _ in $(seq 200); do
    [[ -S $sock ]] && curl -sf -m 1 "http://127.0.0.1:${MPORT[$n]}/livez" >/dev/null 2>&1 && break
    kill -0 "${PIDS[shim-$n]}" 2>/dev/null || fail "shim $n exited"; sleep 0.05
  done
  [[ -S $sock ]] || fail "shim $n socket missing"
  log "shim $n listening in $(el "$ts")s (pid ${PIDS[shim-$n]})"
}
start_shim a
start_shim b
[[ $KMS_KEYS != pkcs11 || ! -e $WORK/state/master.key ]] || fail "pkcs11 custody left a software master key"

# ---------- one kube-apiserver per node, one etcd ----------
start_apiserver() { # start_apiserver NODE
  local n=$1 ts c; ts=$(now)
  "$KUBE_APISERVER" \
    --etcd-servers="http://127.0.0.1:$EPORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="${APORT[$n]}" \
    --cert-dir="$WORK/pki-$n" \
    --token-auth-file="$WORK/tokens.csv" \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$WORK/sa.pub" \
    --service-account-signing-key-file="$WORK/sa.key" \
    --service-cluster-ip-range=10.96.0.0/24 \
    --endpoint-reconciler-type=none \
    --encryption-provider-config="$WORK/encryption-$n.yaml" \
    --profiling=false --v=1 >>"$WORK/apiserver-$n.log" 2>&1 &
  PIDS[apiserver-$n]=$!
  for _ in $(seq 1800); do
    c=$(curl -sk -m 2 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:${APORT[$n]}/readyz" || true)
    [[ $c == 200 ]] && break
    kill -0 "${PIDS[apiserver-$n]}" 2>/dev/null || fail "kube-apiserver $n exited"; sleep 0.1
  done
  [[ $c == 200 ]] || fail "kube-apiserver $n not ready: $(api "$n" GET '/readyz?verbose'; cat "$WORK/.body")"
  for _ in $(seq 300); do [[ $(api "$n" GET /api/v1/namespaces/default) == 200 ]] && break; sleep 0.1; done
  log "kube-apiserver $n ready in $(el "$ts")s (pid ${PIDS[apiserver-$n]})"
}
start_apiserver a
start_apiserver b

mk_secret() { # mk_secret NODE NAME VALUE -> HTTP code
  api "$1" POST /api/v1/namespaces/default/secrets -H 'Content-Type: application/json' \
    -d "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"$2\"},\"stringData\":{\"password\":\"$3\"}}"
}
read_secret() { # read_secret NODE NAME VALUE: the API of NODE returns the plaintext
  local c got
  c=$(api "$1" GET "/api/v1/namespaces/default/secrets/$2")
  [[ $c == 200 ]] || fail "GET $2 through apiserver $1: $c $(cat "$WORK/.body")"
  got=$(jq -r .data.password < "$WORK/.body" | base64 -d)
  [[ $got == "$3" ]] || fail "GET $2 through apiserver $1 returned another value"
}
key_id_of() { # key_id_of NAME: the kms v2 key_id etcd holds for the Secret
  etcdget "/registry/secrets/default/$1" > "$WORK/.raw" || fail "etcdctl get $1"
  local raw; raw=$(head -c 40 "$WORK/.raw" | tr -c '[:print:]' '.')
  [[ $raw == k8s:enc:kms:v2:clusterkeys:* ]] || fail "etcd value of $1 is not KMS v2 via clusterkeys: '$raw'"
  grep -aoE '[0-9a-f]{32}' "$WORK/.raw" | head -1 || true
}

# ---------- written through A, read through B ----------
V1="two-node-$(openssl rand -hex 8)"
# B never encrypted this Secret: every Decrypt through shim B from here on
# is of the seed shim A wrapped (B's watch cache decrypts it as soon as it
# lands in etcd, or the GET does).
d0=$(metric b "$DECRYPTS")
c=$(mk_secret a kms-2node-1 "$V1"); [[ $c == 201 ]] || fail "create kms-2node-1 through A: $c $(cat "$WORK/.body")"
OLDID=$(key_id_of kms-2node-1)
[[ -n $OLDID ]] || fail "no key_id in etcd for kms-2node-1"
if grep -aqF "$V1" "$WORK/.raw"; then fail "plaintext visible in etcd"; fi
read_secret b kms-2node-1 "$V1"
d1=$(metric b "$DECRYPTS")
(( d1 > d0 )) || fail "B read A's Secret without a Decrypt through shim B ($d0 -> $d1)"
log "OK kms-2node-1 written through A (key_id $OLDID), read through B: $((d1 - d0)) Decrypt through shim B"
read_secret a kms-2node-1 "$V1"

# ---------- rotation through the gateway on the shared state dir ----------
CKTOKEN=$(openssl rand -hex 16)
echo "$CKTOKEN,e2e-admin,e2e,admin" > "$WORK/ck-tokens.csv"; chmod 600 "$WORK/ck-tokens.csv"
"$LOCALRUN" serve --listen "127.0.0.1:$LPORT" --state-dir "$WORK/state" --keys "$KMS_KEYS" --token-auth-file "$WORK/ck-tokens.csv" >>"$WORK/localrun.log" 2>&1 &
PIDS[localrun]=$!
for _ in $(seq 200); do curl -sf -m 1 "http://127.0.0.1:$LPORT/healthz" >/dev/null 2>&1 && break; kill -0 "${PIDS[localrun]}" 2>/dev/null || fail "localrun exited"; sleep 0.05; done
c=$(curl -s -m 10 -o "$WORK/.rot" -w '%{http_code}' -X POST -H "Authorization: Bearer $CKTOKEN" "http://127.0.0.1:$LPORT/v1/keys/kubernetes-kms/rotate" || true)
[[ $c == 200 ]] || fail "rotate through localrun: $c $(cat "$WORK/.rot")"
NEWID=$(jq -r '.versions[-1].key_id' < "$WORK/.rot")
[[ -n $NEWID && $NEWID != null && $NEWID != "$OLDID" ]] || fail "rotation gave key_id '$NEWID' (old '$OLDID')"
stop localrun
log "rotated the KEK through localrun on the shared state dir: key_id $OLDID -> $NEWID"

# Each kube-apiserver polls its own shim's Status (every 60 s) and writes
# under the new key_id once the shim reports it: poll both with new Secrets.
ts=$(now); n=0
declare -A SEEN=() NAME=() VAL=()
while (( ${#SEEN[@]} < 2 )) && (( $(awk -v a="$ts" -v b="$(now)" 'BEGIN{print int(b-a)}') < ${ROTATE_WAIT:-150} )); do
  n=$((n+1))
  for node in a b; do
    [[ -n ${SEEN[$node]:-} ]] && continue
    name="kms-2node-rot-$node-$n"; v="rot-$node-$n-$(openssl rand -hex 6)"
    c=$(mk_secret "$node" "$name" "$v"); [[ $c == 201 ]] || fail "create $name through $node: $c $(cat "$WORK/.body")"
    if [[ $(key_id_of "$name") == "$NEWID" ]]; then
      SEEN[$node]=$(el "$ts"); NAME[$node]=$name; VAL[$node]=$v
      log "kube-apiserver $node wrote $name under the new key_id ${SEEN[$node]}s after the rotation"
    fi
  done
  (( ${#SEEN[@]} < 2 )) && sleep 3
done
for node in a b; do
  [[ -n ${SEEN[$node]:-} ]] || fail "kube-apiserver $node still writes under the old key_id ${ROTATE_WAIT:-150}s after the rotation"
done
log "rotation seen by both nodes: a after ${SEEN[a]}s, b after ${SEEN[b]}s"

# ---------- both read everything ----------
for node in a b; do
  read_secret "$node" kms-2node-1 "$V1"
  read_secret "$node" "${NAME[a]}" "${VAL[a]}"
  read_secret "$node" "${NAME[b]}" "${VAL[b]}"
done
[[ $(key_id_of kms-2node-1) == "$OLDID" ]] || fail "kms-2node-1 is no longer under the old key_id"
log "both kube-apiservers read the Secret written before the rotation (old key_id) and those written after it by either node"
log "shim errors: a=$(metric a 'clusterkeys_kms_errors_total') b=$(metric b 'clusterkeys_kms_errors_total')"
log "PASS (two nodes, $KMS_KEYS custody)"
