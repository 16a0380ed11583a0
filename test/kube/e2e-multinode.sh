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
# shellcheck source=lib.sh
source "$HERE/lib.sh"
kube_work ck-kube-2node apiserver-a apiserver-b localrun shim-a shim-b etcd

EPORT=$(free_port); PPORT=$(free_port); LPORT=$(free_port)
declare -A APORT=([a]=$(free_port) [b]=$(free_port)) MPORT=([a]=$(free_port) [b]=$(free_port))
# One token for both nodes.
kube_custody pkcs11 kube-2node " for both nodes"
log "work dir $WORK; etcd :$EPORT; node a: apiserver :${APORT[a]} shim metrics :${MPORT[a]}; node b: apiserver :${APORT[b]} shim metrics :${MPORT[b]}"
kube_build
kube_credentials
for n in a b; do encryption_config "$WORK/kms-$n.sock" "$WORK/encryption-$n.yaml"; done

api() { # api NODE METHOD PATH [curl args]
  local n=$1; shift
  api_at "https://127.0.0.1:${APORT[$n]}" "$@"
}
metric() { metric_at "${MPORT[$1]}" "$2"; } # metric NODE REGEX
DECRYPTS='clusterkeys_kms_operations_total\{code="OK",op="decrypt"\}'

start_etcd

# ---------- one shim per node, one state dir, one token ----------
start_shim() { # start_shim NODE
  local n=$1 ts; ts=$(now)
  spawn_shim "shim-$n" "$WORK/kms-$n.sock" "${MPORT[$n]}" --refresh-interval "${REFRESH:-5s}"
  log "shim $n listening in $(el "$ts")s (pid ${PIDS[shim-$n]})"
}
start_shim a
start_shim b
[[ $KMS_KEYS != pkcs11 || ! -e $WORK/state/master.key ]] || fail "pkcs11 custody left a software master key"

# ---------- one kube-apiserver per node, one etcd ----------
start_apiserver() { # start_apiserver NODE
  local n=$1 ts; ts=$(now)
  spawn_apiserver "apiserver-$n" "${APORT[$n]}" "-$n" 1800
  log "kube-apiserver $n ready in $(el "$ts")s (pid ${PIDS[apiserver-$n]})"
}
start_apiserver a
start_apiserver b

mk_secret() { # mk_secret NODE NAME VALUE -> HTTP code
  api "$1" POST /api/v1/namespaces/default/secrets -H 'Content-Type: application/json' -d "$(secret_json "$2" "$3")"
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
rotate_kek

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
