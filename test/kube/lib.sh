# lib.sh: what the kube end-to-end scripts (e2e.sh, e2e-multinode.sh) share,
# sourced by them after `set -Eeuo pipefail` with HERE and ROOT set: the
# components' checks, logging, processes stopped by PID on exit, etcd,
# the KMS shim, kube-apiserver, Secrets, and a KEK rotation through
# `localrun serve`. Every process is started in the background and kept in
# PIDS by name.

ETCD=${ETCD:-$(command -v etcd || true)}
ETCDCTL=${ETCDCTL:-$(command -v etcdctl || true)}
KUBE_APISERVER=${KUBE_APISERVER:-${CLUSTERKEYS_CACHE:-$HOME/.cache/clusterkeys}/kube-apiserver-${KUBE_VERSION:-v1.37.2}/kube-apiserver}
[[ -x $KUBE_APISERVER ]] || { echo "missing kube-apiserver at $KUBE_APISERVER: run test/kube/build-kube-apiserver.sh" >&2; exit 2; }
[[ -n $ETCD && -x $ETCD && -n $ETCDCTL && -x $ETCDCTL ]] || { echo "missing etcd/etcdctl: run test/kube/install-etcd.sh (apt-get install etcd-server etcd-client)" >&2; exit 2; }
for t in curl openssl jq base64; do command -v $t >/dev/null || { echo "missing tool: $t" >&2; exit 2; }; done

T0=$(date +%s.%N)
declare -A PIDS=()
now() { date +%s.%N; }
el() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }
log() { printf '[%6ss] %s\n' "$(el "$T0")" "$*"; }
fail() { log "FAIL: $*"; exit 1; }

# kube_work PREFIX NAME...: make the work dir WORK (/tmp/PREFIX.XXXXXX) and,
# on exit, stop the processes NAME... in that order and remove WORK unless
# the run failed or KEEP=1.
kube_work() {
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  shift
  STOP_ORDER=("$@")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

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
  for n in "${STOP_ORDER[@]}"; do stop "$n"; done
  if [[ $rc -ne 0 ]]; then
    log "exit $rc; last log lines:"
    for f in "$WORK"/*.log; do [[ -f $f ]] && { echo "--- $f"; tail -n 20 "$f"; }; done
  fi
  if [[ ${KEEP:-0} == 1 || $rc -ne 0 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  log "total $(el "$T0")s rc=$rc"
}

free_port() { local p; while :; do p=$((20000 + RANDOM % 20000)); (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }; done; }

# kube_custody DEFAULT LABEL WHAT: KMS_KEYS (DEFAULT when unset), software or
# pkcs11; pkcs11 makes a fresh SoftHSM2 token LABEL and exports
# SOFTHSM2_CONF and CLUSTERKEYS_PKCS11_* (PIN in a 0600 file), for the
# shims and for localrun alike. WHAT ends the log line.
kube_custody() {
  KMS_KEYS=${KMS_KEYS:-$1}
  case $KMS_KEYS in
    software) ;;
    pkcs11)
      eval "$(bash "$ROOT/test/scripts/softhsm.sh" init "$WORK/hsm" "$2")" || { echo "softhsm.sh init failed" >&2; exit 2; }
      log "custody: pkcs11, SoftHSM2 token '$CLUSTERKEYS_PKCS11_TOKEN_LABEL'$3"
      ;;
    *) echo "KMS_KEYS=$KMS_KEYS: want software or pkcs11" >&2; exit 2 ;;
  esac
}

# kube_build: KMSSHIM and LOCALRUN, built from this repo into WORK unless set.
kube_build() {
  local b v pkg ts
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
}

# kube_credentials: the service-account key pair and a token file whose
# TOKEN is a system:masters user.
kube_credentials() {
  TOKEN=$(openssl rand -hex 16)
  openssl genrsa -out "$WORK/sa.key" 2048 2>/dev/null
  openssl rsa -in "$WORK/sa.key" -pubout -out "$WORK/sa.pub" 2>/dev/null
  echo "$TOKEN,e2e-admin,e2e-admin,system:masters" > "$WORK/tokens.csv"
  chmod 600 "$WORK/tokens.csv" "$WORK/sa.key"
}

# encryption_config SOCK OUT: the checked-in EncryptionConfiguration (the
# same provider name on every node), pointed at SOCK.
encryption_config() {
  sed "s#unix:///var/run/clusterkeys/kms.sock#unix://$1#" "$ROOT/infra/kmsshim/encryption-config.yaml" > "$2"
  grep -q "unix://$1" "$2" || fail "could not point encryption-config.yaml at $1"
}

# api_at BASE METHOD PATH [curl args]: an API request as TOKEN; the body
# lands in WORK/.body, the HTTP code is printed.
api_at() {
  local u=$1 m=$2 p=$3; shift 3
  curl -sk -m 10 -o "$WORK/.body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $TOKEN" "$@" "$u$p" 2>/dev/null || true
}
etcdget() { ETCDCTL_API=3 "$ETCDCTL" --endpoints "http://127.0.0.1:$EPORT" get "$1" --print-value-only; }
metric_at() { # metric_at PORT REGEX: sum of a shim's matching metric lines
  { curl -s -m 5 "http://127.0.0.1:$1/metrics" || true; } | awk -v re="^$2" '$0 ~ re {s+=$NF} END{printf "%d", s}'
}
secret_json() { # secret_json NAME VALUE: a Secret holding password VALUE
  echo "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"$1\"},\"stringData\":{\"password\":\"$2\"}}"
}

# start_etcd: one etcd member on EPORT (clients) and PPORT (peers).
start_etcd() {
  local ts; ts=$(now)
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
}

# spawn_shim NAME SOCK MPORT [FLAG...]: a KMS shim on SOCK with its metrics
# on MPORT and its state in WORK/state, logging to WORK/NAME.log; waits
# until it listens and serves /livez.
spawn_shim() {
  local n=$1 sock=$2 mport=$3; shift 3
  "$KMSSHIM" --listen "unix://$sock" --keys "$KMS_KEYS" --state-dir "$WORK/state" --key kubernetes-kms \
    --metrics-listen "127.0.0.1:$mport" "$@" >>"$WORK/$n.log" 2>&1 &
  PIDS[$n]=$!
  for _ in $(seq 200); do
    [[ -S $sock ]] && curl -sf -m 1 "http://127.0.0.1:$mport/livez" >/dev/null 2>&1 && break
    kill -0 "${PIDS[$n]}" 2>/dev/null || fail "$n exited"; sleep 0.05
  done
  [[ -S $sock ]] || fail "$n socket missing"
}

# spawn_apiserver NAME PORT SUFFIX TRIES: a kube-apiserver on PORT on the
# etcd, encrypting with WORK/encryption$SUFFIX.yaml, its certificates in
# WORK/pki$SUFFIX, logging to WORK/NAME.log; waits up to TRIES tenths of a
# second until it is ready and serves the default namespace.
spawn_apiserver() {
  local n=$1 port=$2 sfx=$3 tries=$4 c
  "$KUBE_APISERVER" \
    --etcd-servers="http://127.0.0.1:$EPORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$port" \
    --cert-dir="$WORK/pki$sfx" \
    --token-auth-file="$WORK/tokens.csv" \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$WORK/sa.pub" \
    --service-account-signing-key-file="$WORK/sa.key" \
    --service-cluster-ip-range=10.96.0.0/24 \
    --endpoint-reconciler-type=none \
    --encryption-provider-config="$WORK/encryption$sfx.yaml" \
    --profiling=false --v=1 >>"$WORK/$n.log" 2>&1 &
  PIDS[$n]=$!
  for _ in $(seq "$tries"); do
    c=$(curl -sk -m 2 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$port/readyz" || true)
    [[ $c == 200 ]] && break
    kill -0 "${PIDS[$n]}" 2>/dev/null || fail "$n exited"; sleep 0.1
  done
  [[ $c == 200 ]] || fail "$n not ready: $(api_at "https://127.0.0.1:$port" GET '/readyz?verbose'; cat "$WORK/.body")"
  for _ in $(seq 300); do [[ $(api_at "https://127.0.0.1:$port" GET /api/v1/namespaces/default) == 200 ]] && break; sleep 0.1; done
}

# rotate_kek: rotate KEK kubernetes-kms through `localrun serve` on the
# shims' state dir (LPORT); sets NEWID, which must differ from OLDID.
rotate_kek() {
  local c cktoken; cktoken=$(openssl rand -hex 16)
  echo "$cktoken,e2e-admin,e2e,admin" > "$WORK/ck-tokens.csv"; chmod 600 "$WORK/ck-tokens.csv"
  "$LOCALRUN" serve --listen "127.0.0.1:$LPORT" --state-dir "$WORK/state" --keys "$KMS_KEYS" --token-auth-file "$WORK/ck-tokens.csv" >>"$WORK/localrun.log" 2>&1 &
  PIDS[localrun]=$!
  for _ in $(seq 200); do curl -sf -m 1 "http://127.0.0.1:$LPORT/healthz" >/dev/null 2>&1 && break; kill -0 "${PIDS[localrun]}" 2>/dev/null || fail "localrun exited"; sleep 0.05; done
  c=$(curl -s -m 10 -o "$WORK/.rot" -w '%{http_code}' -X POST -H "Authorization: Bearer $cktoken" "http://127.0.0.1:$LPORT/v1/keys/kubernetes-kms/rotate" || true)
  [[ $c == 200 ]] || fail "rotate through localrun: $c $(cat "$WORK/.rot")"
  NEWID=$(jq -r '.versions[-1].key_id' < "$WORK/.rot")
  [[ -n $NEWID && $NEWID != null && $NEWID != "$OLDID" ]] || fail "rotation gave key_id '$NEWID' (old '$OLDID')"
  stop localrun
  log "rotated the KEK through localrun on the shared state dir: key_id $OLDID -> $NEWID"
}
