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
# Facts this relies on (measured here, see ../shared/recipes/), besides
# those of uwsgi-service.sh: SQLite in WAL mode (else "database is
# locked"); nothing under /etc is written.
set -euo pipefail

NAME=Keystone
# shellcheck source=uwsgi-service.sh
source "$(dirname "${BASH_SOURCE[0]}")/uwsgi-service.sh"

cmd_install() { svc_install python3-keystone python3-keystoneclient uwsgi-core uwsgi-plugin-python3 curl; }

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
  svc_uwsgi_ini "$d" "$port" /usr/bin/keystone-wsgi-public
  svc_spawn "$d" OS_KEYSTONE_CONFIG_FILES="$d/keystone.conf"
  svc_wait "$d" "${KEYSTONE_START_TIMEOUT:-180}" 0.3 keystone_answers "$port"
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
  svc_started "$port"
  echo "http://127.0.0.1:$port/v3"
}

# keystone_answers PORT: whether Keystone serves its v3 root.
keystone_answers() { [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/v3/" 2>/dev/null) == 200 ]]; }

svc_main "$@"
