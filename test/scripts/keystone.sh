#!/usr/bin/env bash
# keystone.sh: Debian's Keystone on 127.0.0.1 for clusterkeys' tests.
#
#   test/scripts/keystone.sh install          apt-get install python3-keystone + uWSGI when missing (idempotent)
#   test/scripts/keystone.sh start DIR PORT   set up (first time, ~1 min) and start Keystone; prints the v3 URL
#   test/scripts/keystone.sh stop DIR         stop it; idempotent
#
# What it sets up (idempotent, password of every user: <name>pw):
#   projects service, team-a, team-b
#   svc    service + admin in service   clusterkeys' own service user (validates tokens)
#   alice  member, creator in team-a    rita   reader in team-a  (creator: Barbican's role to store secrets)
#   bob    member in team-b             olga   observer (a role clusterkeys ignores) in team-a
#   admin  admin in admin, and on the system (keystone-manage bootstrap)
#   dora   member on the Default domain (a domain-scoped token carries no project)
# Token lifetime: KEYSTONE_TOKEN_EXPIRATION seconds (default 3600).
#
# Facts this relies on (measured here, see ../shared/recipes/): Debian's
# /usr/bin/python3; SQLite in WAL mode (else "database is locked"); uWSGI
# with "Connection: close"; nothing under /etc is written.
set -euo pipefail

PY=/usr/bin/python3
die() { echo "keystone.sh: $*" >&2; exit 1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

cmd_install() {
  local want=(python3-keystone python3-keystoneclient uwsgi-core uwsgi-plugin-python3 curl) missing=() p
  for p in "${want[@]}"; do installed "$p" || missing+=("$p"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}: run as root: apt-get install -y ${missing[*]}"
  echo "keystone.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-cache show python3-keystone >/dev/null 2>&1; then apt-get update -qq; fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

running() { [[ -f $1/server.pid ]] && kill -0 "$(cat "$1/server.pid")" 2>/dev/null; }

cmd_start() {
  local d=${1:?usage: start DIR PORT} port=${2:?usage: start DIR PORT}
  cmd_install
  mkdir -p "$d"; d=$(cd "$d" && pwd); chmod 700 "$d"
  running "$d" && die "already running in $d"
  mkdir -p "$d/fernet-keys" "$d/credential-keys" "$d/log"
  chmod 700 "$d/fernet-keys" "$d/credential-keys"
  cat > "$d/keystone.conf" <<EOF
[DEFAULT]
log_file = $d/log/keystone.log
use_stderr = False
[database]
connection = sqlite:///$d/keystone.sqlite
[token]
provider = fernet
expiration = ${KEYSTONE_TOKEN_EXPIRATION:-3600}
[fernet_tokens]
key_repository = $d/fernet-keys
[fernet_receipts]
key_repository = $d/fernet-keys
[credential]
key_repository = $d/credential-keys
[cache]
enabled = False
EOF
  local km=(keystone-manage --config-file "$d/keystone.conf")
  if [[ ! -f $d/bootstrapped ]]; then
    ( cd "$d" && HOME=$d "${km[@]}" db_sync ) > "$d/log/manage.log" 2>&1 || die "db_sync failed ($d/log/manage.log)"
    $PY -c "import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute('PRAGMA journal_mode=WAL')" "$d/keystone.sqlite"
    ( cd "$d" && HOME=$d "${km[@]}" fernet_setup --keystone-user "$(id -u)" --keystone-group "$(id -g)" \
      && HOME=$d "${km[@]}" credential_setup --keystone-user "$(id -u)" --keystone-group "$(id -g)" \
      && HOME=$d "${km[@]}" bootstrap --bootstrap-password adminpw --bootstrap-region-id RegionOne \
           --bootstrap-admin-url "http://127.0.0.1:$port/v3/" --bootstrap-internal-url "http://127.0.0.1:$port/v3/" \
           --bootstrap-public-url "http://127.0.0.1:$port/v3/" ) >> "$d/log/manage.log" 2>&1 \
      || die "keystone-manage setup failed ($d/log/manage.log)"
    touch "$d/bootstrapped"
  fi
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
add-header = Connection: close
buffer-size = 65535
wsgi-file = /usr/bin/keystone-wsgi-public
chdir = $d
EOF
  local t0; t0=$(date +%s%N)
  ( cd "$d" && HOME=$d OS_KEYSTONE_CONFIG_FILES=$d/keystone.conf exec setsid uwsgi --ini "$d/uwsgi.ini" ) > "$d/log/server.log" 2>&1 < /dev/null &
  echo $! > "$d/server.pid"
  local deadline=$(( $(date +%s) + ${KEYSTONE_START_TIMEOUT:-180} ))
  until [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v3/" 2>/dev/null) == 200 ]]; do
    running "$d" || { tail -n 30 "$d/log/server.log" >&2; die "Keystone exited during start-up (logs in $d/log)"; }
    (( $(date +%s) < deadline )) || { cmd_stop "$d"; die "Keystone did not answer in time"; }
    sleep 0.3
  done
  $PY - "http://127.0.0.1:$port/v3" > "$d/log/setup.log" 2>&1 <<'EOF' || die "user setup failed ($d/log/setup.log)"
import sys
from keystoneauth1.identity import v3
from keystoneauth1 import session
from keystoneclient.v3 import client
url = sys.argv[1]
ks = client.Client(session=session.Session(auth=v3.Password(
    auth_url=url, username='admin', password='adminpw', project_name='admin',
    user_domain_name='Default', project_domain_name='Default')))
def get_or(create, lst, name, **kw):
    for x in lst(name=name):
        return x
    return create(name=name, **kw)
project = lambda n: get_or(ks.projects.create, ks.projects.list, n, domain='default')
role = lambda n: get_or(ks.roles.create, ks.roles.list, n)
user = lambda n: get_or(ks.users.create, ks.users.list, n, domain='default', password=n + 'pw')
for u, p, roles in [('svc', 'service', ('service', 'admin')), ('alice', 'team-a', ('member', 'creator')),
                    ('rita', 'team-a', ('reader',)), ('bob', 'team-b', ('member',)), ('olga', 'team-a', ('observer',))]:
    for r in roles:
        ks.roles.grant(role(r), user=user(u), project=project(p))
ks.roles.grant(role('member'), user=user('dora'), domain='default')
print('ok')
EOF
  echo "keystone.sh: started on 127.0.0.1:$port in $(( ($(date +%s%N) - t0) / 1000000 )) ms" >&2
  echo "http://127.0.0.1:$port/v3"
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
