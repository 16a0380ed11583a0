#!/usr/bin/env bash
# postgres.sh: a private PostgreSQL server for clusterkeys' tests, from
# Debian's `postgresql` package: a data directory under DIR, listening on a
# unix socket in DIR/sock only (no TCP), trust authentication for the
# `postgres` role, fsync off. Never for production.
#
#   test/scripts/postgres.sh install
#       installs Debian's postgresql package when its server binaries are
#       missing; idempotent (a second run installs nothing).
#   test/scripts/postgres.sh start DIR [PORT]
#       initdb DIR/data once, starts the server (or finds it running),
#       creates the database clusterkeys, and prints its DSN on stdout:
#           postgres:///clusterkeys?host=DIR/sock&port=PORT&user=postgres
#       PORT (default 5433) only names the socket file. Everything else goes
#       to stderr, DIR/*.log or DIR/log/server.log. Starting again after stop keeps the data.
#   test/scripts/postgres.sh stop DIR
#       fast shutdown of the server started in DIR; stopping a stopped
#       server is not an error.
#
# With POSTGRES_DURABLE=1 in the environment, start keeps PostgreSQL's
# durable defaults (fsync, synchronous_commit, full_page_writes on), for
# measurements to compare with SQLite's synchronous=FULL.
#
# Cleanup is `stop` then `rm -rf DIR`. Run as root, the server runs as
# `nobody` (PostgreSQL refuses root): DIR's parents must let it through
# (chmod 711; a `mktemp -d` directory is 700).
set -euo pipefail

die() { echo "postgres.sh: $*" >&2; exit 1; }

pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

install_packages() {
  local bin; bin=$(pgbin)
  [ -n "$bin" ] && [ -x "$bin/postgres" ] && [ -x "$bin/initdb" ] && return 0
  command -v apt-get >/dev/null || die "no PostgreSQL server and no apt-get: install PostgreSQL with your package manager"
  local sudo=
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "no PostgreSQL server; run as root: apt-get install -y postgresql"
    sudo=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-cache show postgresql >/dev/null 2>&1; then
    echo "postgres.sh: apt does not know postgresql yet: apt-get update" >&2
    $sudo apt-get update -qq >&2
  fi
  echo "postgres.sh: installing postgresql" >&2
  $sudo apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 postgresql >&2
}

# as_pg runs a command as the server's user: nobody when we are root.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups -- "$@"
  else
    "$@"
  fi
}

start() {
  local dir=$1 port=${2:-5433} bin
  bin=$(pgbin)
  [ -n "$bin" ] && [ -x "$bin/postgres" ] || die "no PostgreSQL server under /usr/lib/postgresql: apt-get install postgresql (or $0 install)"
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  chmod 711 "$dir"
  mkdir -p "$dir/data" "$dir/sock" "$dir/log"
  if [ "$(id -u)" -eq 0 ]; then
    as_pg test -x "$dir" || die "user nobody cannot reach $dir: chmod 711 its parent directories"
    chown nobody: "$dir/data" "$dir/sock" "$dir/log"
    chmod 700 "$dir/data"
  fi
  local dsn="postgres:///clusterkeys?host=$dir/sock&port=$port&user=postgres"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    (cd "$dir" && as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync) >"$dir/initdb.log" 2>&1 ||
      die "initdb failed (see $dir/initdb.log)"
  fi
  local fast="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  [ "${POSTGRES_DURABLE:-}" = 1 ] && fast=
  if ! "$bin/pg_isready" -q -h "$dir/sock" -p "$port"; then
    # pg_ctl -w waits until the server accepts connections; its output and
    # the server's go to files, so that no pipe of the caller stays open.
    (cd "$dir" && as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log/server.log" -w -t 60 \
      -o "-k $dir/sock -c listen_addresses= -p $port $fast -c max_connections=300" \
      start) >>"$dir/pg_ctl.log" 2>&1 </dev/null || die "the server did not start (see $dir/log/server.log)"
  fi
  if ! "$bin/psql" -h "$dir/sock" -p "$port" -U postgres -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'clusterkeys'" 2>>"$dir/pg_ctl.log" | grep -q 1; then
    "$bin/createdb" -h "$dir/sock" -p "$port" -U postgres clusterkeys 2>>"$dir/pg_ctl.log" ||
      die "createdb clusterkeys failed (see $dir/pg_ctl.log)"
  fi
  echo "$dsn"
}

stop() {
  local dir bin
  dir=$(cd "$1" && pwd) || die "no directory $1"
  bin=$(pgbin)
  [ -f "$dir/data/postmaster.pid" ] || return 0
  (cd "$dir" && as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop) >>"$dir/pg_ctl.log" 2>&1 </dev/null ||
    [ ! -f "$dir/data/postmaster.pid" ] || die "the server did not stop (see $dir/pg_ctl.log)"
}

case ${1:-} in
install) install_packages ;;
start) [ $# -ge 2 ] || die "usage: $0 start DIR [PORT]"; start "$2" "${3:-5433}" ;;
stop) [ $# -ge 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
*) echo "usage: $0 install | start DIR [PORT] | stop DIR" >&2; exit 2 ;;
esac
