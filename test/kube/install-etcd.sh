#!/usr/bin/env bash
# Install what test/kube/e2e.sh needs from Debian's packages when missing:
# etcd (etcd-server, etcd-client for etcdctl), curl, jq and openssl.
# Idempotent: exits at once when everything is present.
# Usage: test/kube/install-etcd.sh   (root, or sudo available)
set -euo pipefail
declare -A pkg=([etcd]=etcd-server [etcdctl]=etcd-client [curl]=curl [jq]=jq [openssl]=openssl)
missing=()
for cmd in "${!pkg[@]}"; do
  command -v "$cmd" >/dev/null || missing+=("${pkg[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-etcd: run as root: apt-get install -y ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  $SUDO apt-get update -qq
fi
echo "install-etcd: installing ${missing[*]}" >&2
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
# The package's own etcd service is not wanted: e2e.sh runs its own etcd on loopback.
if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
  $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true
fi
for cmd in "${!pkg[@]}"; do command -v "$cmd" >/dev/null || { echo "install-etcd: $cmd still missing" >&2; exit 1; }; done
