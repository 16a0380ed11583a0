#!/usr/bin/env bash
# Install etcd (server and etcdctl) from Debian's packages when missing, for
# test/kube/e2e.sh. Idempotent: exits at once when both are present.
# Usage: test/kube/install-etcd.sh   (root, or sudo available)
set -euo pipefail
if command -v etcd >/dev/null && command -v etcdctl >/dev/null; then
  exit 0
fi
SUDO=
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-etcd: run as root: apt-get install -y etcd-server etcd-client" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  $SUDO apt-get update -qq
fi
echo "install-etcd: installing etcd-server etcd-client" >&2
# The package's service is not wanted: e2e.sh runs its own etcd on loopback.
$SUDO apt-get install -y -qq --no-install-recommends etcd-server etcd-client >&2
if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
  $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true
fi
command -v etcd >/dev/null && command -v etcdctl >/dev/null
