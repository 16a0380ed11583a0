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
# Facts this relies on (measured here, see ../shared/recipes/), besides
# those of uwsgi-service.sh: policy_dirs must not be empty; host_href must
# carry the real port.
set -euo pipefail

NAME=Barbican
# shellcheck source=uwsgi-service.sh
source "$(dirname "${BASH_SOURCE[0]}")/uwsgi-service.sh"

cmd_install() { svc_install barbican-api uwsgi-core uwsgi-plugin-python3 curl; }

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
  svc_uwsgi_ini "$d" "$port" "$d/wsgi.py"
  svc_spawn "$d"
  svc_wait "$d" "${BARBICAN_START_TIMEOUT:-120}" 0.2 barbican_answers "$port"
  svc_started "$port"
  echo "http://127.0.0.1:$port"
}

# barbican_answers PORT: whether Barbican lists secrets (or, behind
# Keystone, asks for a token).
barbican_answers() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Project-Id: healthcheck' -H 'Accept: application/json' \
    "http://127.0.0.1:$1/v1/secrets?limit=1" 2>/dev/null || true)
  svc_detail=" (last HTTP code $code)"
  [[ $code == 200 || ( $code == 401 && -n ${BARBICAN_KEYSTONE_URL:-} ) ]]
}

svc_main "$@"
