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
# shellcheck source=lib.sh
source "$HERE/lib.sh"
kube_work ck-kube-e2e kube-apiserver localrun kmsshim etcd

EPORT=$(free_port); PPORT=$(free_port); APORT=$(free_port); MPORT=$(free_port); LPORT=$(free_port)
SOCK=$WORK/kms.sock
API=https://127.0.0.1:$APORT
log "work dir $WORK; etcd :$EPORT apiserver :$APORT shim $SOCK metrics :$MPORT"
kube_custody software kube-e2e ""
token_keks() { # the KEK objects in the token, as pkcs11-tool sees them
  # The PIN through the environment (env:), not on a command line.
  CK_PIN=$(cat "$CLUSTERKEYS_PKCS11_PIN_FILE") pkcs11-tool --module "$CLUSTERKEYS_PKCS11_MODULE" \
    --token-label "$CLUSTERKEYS_PKCS11_TOKEN_LABEL" --login --pin env:CK_PIN --list-objects 2>/dev/null |
    grep -c 'label: *kek/kubernetes-kms/' || true
}
kube_build
kube_credentials
encryption_config "$SOCK" "$WORK/encryption.yaml"

api() { api_at "$API" "$@"; }
metric() { metric_at "$MPORT" "$1"; }

start_etcd

start_shim() {
  local ts; ts=$(now)
  spawn_shim kmsshim "$SOCK" "$MPORT"
  [[ $(stat -c %a "$SOCK") == 600 ]] || fail "socket mode $(stat -c %a "$SOCK"), want 600"
  log "kmsshim listening in $(el "$ts")s (pid ${PIDS[kmsshim]})"
}
start_shim

start_apiserver() {
  local ts; ts=$(now)
  spawn_apiserver kube-apiserver "$APORT" "" 1200
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
  api POST /api/v1/namespaces/default/secrets -H 'Content-Type: application/json' -d "$(secret_json "$1" "$2")"
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
rotate_kek
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
