#!/usr/bin/env bash
# barbican.sh: Debian's Barbican on 127.0.0.1 for clusterkeys' tests.
#
#   test/scripts/barbican.sh install          apt-get install barbican-api + uWSGI when missing (idempotent)
#   test/scripts/barbican.sh start DIR PORT   start Barbican with its state in DIR; prints the endpoint URL
#   test/scripts/barbican.sh stop DIR         stop it (its own process group); idempotent
#
# Barbican runs unauthenticated ("barbican_api" paste pipeline): the project
# comes from the X-Project-Id header, which is how clusterkeys' tests act as
# different projects without Keystone. With BARBICAN_KEYSTONE_URL set (a
# Keystone from keystone.sh) it runs the "barbican-api-keystone" pipeline
# instead and validates tokens as the service user svc/svcpw. Secrets are encrypted by the
# simple_crypto plugin under a random Fernet KEK kept in DIR. Nothing under
# /etc is written: oslo.config finds DIR/.barbican/barbican.conf because the
# server runs with HOME=DIR.
#
# Facts this relies on (measured here, see ../shared/recipes/):
# - Debian's /usr/bin/python3 has the barbican modules; a pyenv python does not.
# - uWSGI's http-socket closes the connection after each response: the
#   "Connection: close" header stops Go clients reusing a dead connection.
# - SQLite wants one thread ("database is locked" otherwise).
# - policy_dirs must not be empty; host_href must carry the real port.
set -euo pipefail

PY=/usr/bin/python3
die() { echo "barbican.sh: $*" >&2; exit 1; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

cmd_install() {
  local want=(barbican-api uwsgi-core uwsgi-plugin-python3 curl) missing=() p
  for p in "${want[@]}"; do installed "$p" || missing+=("$p"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}: run as root: apt-get install -y ${missing[*]}"
  echo "barbican.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-cache show barbican-api >/dev/null 2>&1; then apt-get update -qq; fi
  # Debian's barbican-api starts a system service on install; policy-rc.d
  # keeps it from starting (the tests run their own, on their own port).
  local rc=/usr/sbin/policy-rc.d created=
  if [[ ! -e $rc ]]; then printf '#!/bin/sh\nexit 101\n' > "$rc"; chmod 755 "$rc"; created=1; fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || { [[ -n $created ]] && rm -f "$rc"; die "apt-get install failed"; }
  [[ -n $created ]] && rm -f "$rc"
  return 0
}

running() { [[ -f $1/server.pid ]] && kill -0 "$(cat "$1/server.pid")" 2>/dev/null; }

cmd_start() {
  local d=${1:?usage: start DIR PORT} port=${2:?usage: start DIR PORT}
  cmd_install
  mkdir -p "$d"; d=$(cd "$d" && pwd)
  running "$d" && die "already running in $d"
  mkdir -p "$d/.barbican" "$d/log" "$d/policy.d"
  chmod 700 "$d"
  [[ -f $d/kek ]] || (umask 077; $PY -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' > "$d/kek")
  cat > "$d/.barbican/barbican.conf" <<EOF
[DEFAULT]
host_href = http://127.0.0.1:$port
sql_connection = sqlite:///$d/barbican.sqlite
db_auto_create = True
log_file = $d/log/barbican.log
use_stderr = False

[oslo_policy]
policy_dirs = $d/policy.d

[secretstore]
enable_multiple_secret_stores = False
enabled_secretstore_plugins = store_crypto

[crypto]
enabled_crypto_plugins = simple_crypto

[simple_crypto_plugin]
kek = $(cat "$d/kek")

[keystone_notifications]
enable = False

[queue]
enable = False
EOF
  chmod 600 "$d/.barbican/barbican.conf"
  local pipeline=barbican_api
  if [[ -n ${BARBICAN_KEYSTONE_URL:-} ]]; then
    pipeline=barbican-api-keystone
    cat >> "$d/.barbican/barbican.conf" <<EOF

[keystone_authtoken]
www_authenticate_uri = $BARBICAN_KEYSTONE_URL
auth_url = $BARBICAN_KEYSTONE_URL
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = svc
password = svcpw
region_name = RegionOne
EOF
  fi
  sed -e "s#^/v1: .*#/v1: $pipeline#" \
      -e "s#/etc/barbican/healthcheck_disable#$d/healthcheck_disable#" \
      -e "s#/etc/barbican/api_audit_map.conf#$d/api_audit_map.conf#" \
      /etc/barbican/barbican-api-paste.ini > "$d/barbican-api-paste.ini"
  cat > "$d/wsgi.py" <<EOF
from paste.deploy import loadapp
application = loadapp('config:$d/barbican-api-paste.ini')
EOF
  cat > "$d/uwsgi.ini" <<EOF
[uwsgi]
http-socket = 127.0.0.1:$port
plugins = python3
master = true
processes = 1
threads = 1
lazy-apps = true
need-app = true
die-on-term = true
buffer-size = 65535
add-header = Connection: close
wsgi-file = $d/wsgi.py
chdir = $d
EOF
  local t0; t0=$(date +%s%N)
  ( cd "$d" && HOME=$d exec setsid uwsgi --ini "$d/uwsgi.ini" ) > "$d/log/server.log" 2>&1 < /dev/null &
  echo $! > "$d/server.pid"
  local deadline=$(( $(date +%s) + ${BARBICAN_START_TIMEOUT:-120} )) code=
  while :; do
    running "$d" || { tail -n 30 "$d/log/server.log" >&2; die "Barbican exited during start-up (logs in $d/log)"; }
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Project-Id: healthcheck' -H 'Accept: application/json' \
      "http://127.0.0.1:$port/v1/secrets?limit=1" 2>/dev/null || true)
    [[ $code == 200 || ( $code == 401 && -n ${BARBICAN_KEYSTONE_URL:-} ) ]] && break
    (( $(date +%s) < deadline )) || { cmd_stop "$d"; die "Barbican did not answer in time (last HTTP code $code)"; }
    sleep 0.2
  done
  echo "barbican.sh: started on 127.0.0.1:$port in $(( ($(date +%s%N) - t0) / 1000000 )) ms" >&2
  echo "http://127.0.0.1:$port"
}

cmd_stop() {
  local d=${1:?usage: stop DIR}
  [[ -f $d/server.pid ]] || return 0
  local pid; pid=$(cat "$d/server.pid")
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$d/server.pid"
}

case ${1:-} in
  install) cmd_install ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) echo "usage: $0 install | start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
