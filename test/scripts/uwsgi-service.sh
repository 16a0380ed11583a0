# uwsgi-service.sh: what barbican.sh and keystone.sh share, sourced by them:
# install Debian packages when missing, start an OpenStack service under
# uWSGI on 127.0.0.1 in its own process group with its state in a
# directory, wait until it answers, stop it.
#
# The sourcing script sets NAME (e.g. Barbican, for messages) and defines
# cmd_install (with svc_install) and cmd_start (with svc_uwsgi_ini,
# svc_spawn and svc_wait), then calls svc_main "$@".
#
# Facts this relies on (measured here, see ../shared/recipes/): Debian's
# /usr/bin/python3 has the services' modules (a pyenv python does not);
# uWSGI's http-socket closes the connection after each response, and the
# "Connection: close" header stops Go clients reusing a dead connection;
# SQLite wants one thread ("database is locked" otherwise).

PY=/usr/bin/python3
die() { echo "${0##*/}: $*" >&2; exit 1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# svc_install PACKAGE...: apt-get install the packages that are missing
# (as root). A package's service is kept from starting on install
# (policy-rc.d): the tests run their own, on their own port.
svc_install() {
  local missing=() p
  for p in "$@"; do installed "$p" || missing+=("$p"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}: run as root: apt-get install -y ${missing[*]}"
  echo "${0##*/}: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-cache show "$1" >/dev/null 2>&1; then apt-get update -qq; fi
  local rc=/usr/sbin/policy-rc.d created=
  if [[ ! -e $rc ]]; then printf '#!/bin/sh\nexit 101\n' > "$rc"; chmod 755 "$rc"; created=1; fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || { [[ -n $created ]] && rm -f "$rc"; die "apt-get install failed"; }
  [[ -n $created ]] && rm -f "$rc"
  return 0
}

running() { [[ -f $1/server.pid ]] && kill -0 "$(cat "$1/server.pid")" 2>/dev/null; }

# svc_uwsgi_ini DIR PORT WSGI_FILE: the uWSGI configuration, one process
# of one thread, in DIR/uwsgi.ini.
svc_uwsgi_ini() {
  cat > "$1/uwsgi.ini" <<INI
[uwsgi]
http-socket = 127.0.0.1:$2
plugins = python3
master = true
processes = 1
threads = 1
lazy-apps = true
need-app = true
die-on-term = true
buffer-size = 65535
add-header = Connection: close
wsgi-file = $3
chdir = $1
INI
}

# svc_spawn DIR [VAR=VALUE...]: start uWSGI in DIR in its own process
# group, with HOME=DIR and the given variables; logs in DIR/log/server.log.
svc_spawn() {
  local d=$1; shift
  svc_t0=$(date +%s%N)
  ( cd "$d" && exec env HOME="$d" "$@" setsid uwsgi --ini "$d/uwsgi.ini" ) > "$d/log/server.log" 2>&1 < /dev/null &
  echo $! > "$d/server.pid"
}

# svc_wait DIR TIMEOUT STEP PROBE [ARG...]: wait until PROBE ARG... succeeds,
# every STEP seconds for at most TIMEOUT; stop the service and fail when it
# exits or does not answer in time (PROBE may set svc_detail to say why).
svc_wait() {
  local d=$1 deadline=$(( $(date +%s) + $2 )) step=$3; shift 3
  svc_detail=
  until "$@"; do
    running "$d" || { tail -n 30 "$d/log/server.log" >&2; die "$NAME exited during start-up (logs in $d/log)"; }
    (( $(date +%s) < deadline )) || { cmd_stop "$d"; die "$NAME did not answer in time$svc_detail"; }
    sleep "$step"
  done
}

# svc_started PORT: say how long the start took.
svc_started() {
  echo "${0##*/}: started on 127.0.0.1:$1 in $(( ($(date +%s%N) - svc_t0) / 1000000 )) ms" >&2
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

svc_main() {
  case ${1:-} in
    install) cmd_install ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    *) echo "usage: $0 install | start DIR PORT | stop DIR" >&2; exit 2 ;;
  esac
}
