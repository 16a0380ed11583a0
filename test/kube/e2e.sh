#!/usr/bin/env bash
# End to end: real etcd + real kube-apiserver + the clusterkeys KMS shim on a
# unix socket (software custody, or its KEK in a SoftHSM2 token with
# KMS_KEYS=pkcs11), all on loopback in a temp dir. Checks that a Secret is stored
# as k8s:enc:kms:v2:clusterkeys: in etcd (no plaintext), reads back as
# plaintext through the API, survives a graceful shim restart and a SIGKILL
# (stale socket) restart, a KEK rotation made through `localrun serve` on the
# same --state-dir (kube-apiserver then writes under the new key_id), and a
# kube-apiserver restart (cold DEK cache: a real Decrypt through the shim,
# counted by the shim's metrics).
# Every process started here is stopped by its PID on exit.
#
# Env (defaults in brackets):
#   KUBE_APISERVER [$(build-kube-apiserver.sh)]  ETCD [etcd]  ETCDCTL [etcdctl]
#   KMSSHIM, LOCALRUN [built from this repo into the temp dir]  KEEP=1 keeps the temp dir
#   ROTATE_WAIT [120] seconds to wait for kube-apiserver to use the rotated key_id (it polls Status every 60 s)
#   KMS_KEYS [software] the shim's custody: software, or pkcs11 (a fresh SoftHSM2 token
#     made by test/scripts/softhsm.sh; the KEK versions are then generated in the token,
#     and the rotation through localrun uses the same token)
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
WORK=$(mktemp -d /tmp/ck-kube-e2e.XXXXXX)
declare -A PIDS=()
now() { date +%s.%N; }
el() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }
log() { printf '[%6ss] %s\n' "$(el "$T0")" "$*"; }
fail() { log "FAIL: $*"; exit 1; }

stop() { # stop NAME [SIGNAL]: signal by PID (TERM), wait up to 15 s, then KILL that PID; sets STOP_RC
  local n=$1 sig=${2:-TERM} p=${PIDS[$1]:-}
  STOP_RC=0
  [[ -n $p ]] || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill -"$sig" "$p" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  fi
  wait "$p" 2>/dev/null || STOP_RC=$?
  unset "PIDS[$n]"
}
cleanup() {
  local rc=$?
  for n in kube-apiserver localrun kmsshim etcd; do stop "$n"; done
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
EPORT=$(free_port); PPORT=$(free_port); APORT=$(free_port); MPORT=$(free_port); LPORT=$(free_port)
SOCK=$WORK/kms.sock
TOKEN=$(openssl rand -hex 16)
API=https://127.0.0.1:$APORT
log "work dir $WORK; etcd :$EPORT apiserver :$APORT shim $SOCK metrics :$MPORT"
KMS_KEYS=${KMS_KEYS:-software}
case $KMS_KEYS in
  software) ;;
  pkcs11)
    # Exports SOFTHSM2_CONF and CLUSTERKEYS_PKCS11_* (PIN in a 0600 file), for
    # the shim and for localrun alike.
    eval "$(bash "$ROOT/test/scripts/softhsm.sh" init "$WORK/hsm" kube-e2e)" || { echo "softhsm.sh init failed" >&2; exit 2; }
    log "custody: pkcs11, SoftHSM2 token '$CLUSTERKEYS_PKCS11_TOKEN_LABEL'"
    ;;
  *) echo "KMS_KEYS=$KMS_KEYS: want software or pkcs11" >&2; exit 2 ;;
esac
token_keks() { # the KEK objects in the token, as pkcs11-tool sees them
  # The PIN through the environment (env:), not on a command line.
  CK_PIN=$(cat "$CLUSTERKEYS_PKCS11_PIN_FILE") pkcs11-tool --module "$CLUSTERKEYS_PKCS11_MODULE" \
    --token-label "$CLUSTERKEYS_PKCS11_TOKEN_LABEL" --login --pin env:CK_PIN --list-objects 2>/dev/null |
    grep -c 'label: *kek/kubernetes-kms/' || true
}

# ---------- the shim ----------
if [[ -z ${KMSSHIM:-} ]]; then
  ts=$(now)
  (cd "$ROOT" && go build -o "$WORK/kmsshim" ./functions/kmsshim) || fail "go build ./functions/kmsshim"
  KMSSHIM=$WORK/kmsshim
  log "built kmsshim in $(el "$ts")s"
fi
if [[ -z ${LOCALRUN:-} ]]; then
  ts=$(now)
  (cd "$ROOT" && go build -o "$WORK/localrun" ./localrun) || fail "go build ./localrun"
  LOCALRUN=$WORK/localrun
  log "built localrun in $(el "$ts")s"
fi

# ---------- credentials / config ----------
openssl genrsa -out "$WORK/sa.key" 2048 2>/dev/null
openssl rsa -in "$WORK/sa.key" -pubout -out "$WORK/sa.pub" 2>/dev/null
echo "$TOKEN,e2e-admin,e2e-admin,system:masters" > "$WORK/tokens.csv"
chmod 600 "$WORK/tokens.csv" "$WORK/sa.key"
# The checked-in EncryptionConfiguration, pointed at this run's socket.
sed "s#unix:///var/run/clusterkeys/kms.sock#unix://$SOCK#" "$ROOT/infra/kmsshim/encryption-config.yaml" > "$WORK/encryption.yaml"
grep -q "unix://$SOCK" "$WORK/encryption.yaml" || fail "could not point encryption-config.yaml at $SOCK"

api() { local m=$1 p=$2; shift 2; curl -sk -m 10 -o "$WORK/.body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $TOKEN" "$@" "$API$p" 2>/dev/null || true; }
etcdget() { ETCDCTL_API=3 "$ETCDCTL" --endpoints "http://127.0.0.1:$EPORT" get "$1" --print-value-only; }
metric() { # metric REGEX: sum of the shim's matching metric lines
  { curl -s -m 5 "http://127.0.0.1:$MPORT/metrics" || true; } | awk -v re="^$1" '$0 ~ re {s+=$NF} END{printf "%d", s}'
}

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
ETCDCTL_API=3 "$ETCDCTL" --endpoints "http://127.0.0.1:$EPORT" endpoint health >/dev/null 2>&1 || fail "etcd not healthy"
log "etcd ready in $(el "$ts")s"

# ---------- shim ----------
start_shim() {
  local ts; ts=$(now)
  "$KMSSHIM" --listen "unix://$SOCK" --keys "$KMS_KEYS" --state-dir "$WORK/state" --key kubernetes-kms \
    --metrics-listen "127.0.0.1:$MPORT" >>"$WORK/kmsshim.log" 2>&1 &
  PIDS[kmsshim]=$!
  for _ in $(seq 200); do
    [[ -S $SOCK ]] && curl -sf -m 1 "http://127.0.0.1:$MPORT/livez" >/dev/null 2>&1 && break
    kill -0 "${PIDS[kmsshim]}" 2>/dev/null || fail "kmsshim exited"; sleep 0.05
  done
  [[ -S $SOCK ]] || fail "kmsshim socket missing"
  [[ $(stat -c %a "$SOCK") == 600 ]] || fail "socket mode $(stat -c %a "$SOCK"), want 600"
  log "kmsshim listening in $(el "$ts")s (pid ${PIDS[kmsshim]})"
}
start_shim

# ---------- kube-apiserver ----------
start_apiserver() {
  local ts c; ts=$(now)
  "$KUBE_APISERVER" \
    --etcd-servers="http://127.0.0.1:$EPORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APORT" \
    --cert-dir="$WORK/pki" \
    --token-auth-file="$WORK/tokens.csv" \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$WORK/sa.pub" \
    --service-account-signing-key-file="$WORK/sa.key" \
    --service-cluster-ip-range=10.96.0.0/24 \
    --endpoint-reconciler-type=none \
    --encryption-provider-config="$WORK/encryption.yaml" \
    --profiling=false --v=1 >>"$WORK/kube-apiserver.log" 2>&1 &
  PIDS[kube-apiserver]=$!
  for _ in $(seq 1200); do
    c=$(curl -sk -m 2 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$API/readyz" || true)
    [[ $c == 200 ]] && break
    kill -0 "${PIDS[kube-apiserver]}" 2>/dev/null || fail "kube-apiserver exited"; sleep 0.1
  done
  [[ $c == 200 ]] || fail "kube-apiserver not ready: $(api GET '/readyz?verbose'; cat "$WORK/.body")"
  for _ in $(seq 300); do [[ $(api GET /api/v1/namespaces/default) == 200 ]] && break; sleep 0.1; done
  log "kube-apiserver ready in $(el "$ts")s (pid ${PIDS[kube-apiserver]})"
}
start_apiserver

# ---------- create + verify ----------
check_secret() { # check_secret NAME VALUE
  local name=$1 val=$2 raw got c
  etcdget "/registry/secrets/default/$name" > "$WORK/.raw" || fail "etcdctl get $name"
  raw=$(head -c 40 "$WORK/.raw" | tr -c '[:print:]' '.')
  [[ $raw == k8s:enc:kms:v2:clusterkeys:* ]] || fail "etcd value of $name is not KMS v2 via clusterkeys: '$raw'"
  if grep -aqF "$val" "$WORK/.raw"; then fail "plaintext visible in etcd for $name"; fi
  c=$(api GET "/api/v1/namespaces/default/secrets/$name")
  [[ $c == 200 ]] || fail "GET $name: $c $(cat "$WORK/.body")"
  got=$(jq -r .data.password < "$WORK/.body" | base64 -d)
  [[ $got == "$val" ]] || fail "GET $name returned another value"
  log "OK $name: etcd has '${raw:0:27}', the API returns the plaintext"
}
mk_secret() { # mk_secret NAME VALUE -> HTTP code
  api POST /api/v1/namespaces/default/secrets -H 'Content-Type: application/json' \
    -d "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"$1\"},\"stringData\":{\"password\":\"$2\"}}"
}
wait_kms_healthy() {
  local c
  for _ in $(seq 240); do c=$(api GET /healthz/kms-providers); [[ $c == 200 ]] && break; sleep 0.5; done
  [[ $c == 200 ]] || fail "/healthz/kms-providers = $c after shim restart: $(cat "$WORK/.body")"
}

V1="e2e-secret-$(openssl rand -hex 8)"
c=$(mk_secret kms-e2e-1 "$V1"); [[ $c == 201 ]] || fail "create kms-e2e-1: $c $(cat "$WORK/.body")"
check_secret kms-e2e-1 "$V1"
log "shim calls so far: encrypt=$(metric 'clusterkeys_kms_operations_total\{code="OK",op="encrypt"\}') status=$(metric 'clusterkeys_kms_operations_total\{code="OK",op="status"\}')"

# ---------- graceful shim restart ----------
stop kmsshim TERM
[[ $STOP_RC == 0 ]] || fail "kmsshim exited $STOP_RC on SIGTERM, want 0"
[[ -e $SOCK ]] && fail "socket left behind after SIGTERM"
log "kmsshim stopped by SIGTERM: exit 0, socket removed"
c=$(api GET /api/v1/namespaces/default/secrets/kms-e2e-1); log "  GET secret while the shim is down -> $c (DEK cache)"
start_shim
wait_kms_healthy
check_secret kms-e2e-1 "$V1"
V2="after-restart-$(openssl rand -hex 8)"
c=$(mk_secret kms-e2e-2 "$V2"); [[ $c == 201 ]] || fail "create kms-e2e-2: $c $(cat "$WORK/.body")"
check_secret kms-e2e-2 "$V2"

# ---------- SIGKILL: the stale socket must be replaced ----------
stop kmsshim KILL
[[ -S $SOCK ]] || fail "expected a stale socket after SIGKILL"
start_shim
wait_kms_healthy
log "kmsshim replaced the stale socket after SIGKILL"

# ---------- KEK rotation through the gateway sharing the shim's state dir ----------
OLDID=$(grep -aoE '[0-9a-f]{32}' "$WORK/.raw" | head -1 || true)   # key_id of kms-e2e-2, last checked
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
if [[ $KMS_KEYS == pkcs11 ]]; then
  k=$(token_keks)
  (( k >= 2 )) || fail "the token holds $k KEK objects after the rotation, want one per version (2)"
  log "the SoftHSM2 token holds $k KEK versions (pkcs11-tool)"
  [[ -e $WORK/state/master.key ]] && fail "pkcs11 custody left a software master key"
fi
ts=$(now); n=0; rotated=0
while (( $(awk -v a="$ts" -v b="$(now)" 'BEGIN{print int(b-a)}') < ${ROTATE_WAIT:-120} )); do
  n=$((n+1)); V="rot-$n-$(openssl rand -hex 6)"
  c=$(mk_secret "kms-e2e-rot-$n" "$V"); [[ $c == 201 ]] || fail "create kms-e2e-rot-$n: $c $(cat "$WORK/.body")"
  etcdget "/registry/secrets/default/kms-e2e-rot-$n" > "$WORK/.raw"
  if grep -aqF "$NEWID" "$WORK/.raw"; then rotated=1; VROT=$V; NROT=$n; break; fi
  sleep 5
done
(( rotated )) || fail "kube-apiserver still writes under the old key_id ${ROTATE_WAIT:-120}s after the rotation"
log "kube-apiserver wrote kms-e2e-rot-$NROT under the new key_id $(el "$ts")s after the rotation"
check_secret "kms-e2e-rot-$NROT" "$VROT"
etcdget /registry/secrets/default/kms-e2e-1 | grep -aqF "$OLDID" || fail "kms-e2e-1 is not stored under the old key_id"

# ---------- kube-apiserver restart: cold cache, real Decrypt ----------
d0=$(metric 'clusterkeys_kms_operations_total\{code="OK",op="decrypt"\}')
stop kube-apiserver
start_apiserver
check_secret kms-e2e-1 "$V1"
check_secret kms-e2e-2 "$V2"
check_secret "kms-e2e-rot-$NROT" "$VROT"
d1=$(metric 'clusterkeys_kms_operations_total\{code="OK",op="decrypt"\}')
(( d1 > d0 )) || fail "no Decrypt reached the shim after the kube-apiserver restart ($d0 -> $d1)"
log "Decrypt calls through the shim after the kube-apiserver restart: $((d1 - d0))"
log "shim errors: $(metric 'clusterkeys_kms_errors_total') connections: $(metric 'clusterkeys_kms_connections_total')"
log "PASS ($KMS_KEYS custody)"
