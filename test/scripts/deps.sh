#!/usr/bin/env bash
# deps.sh: installs the real components the end-to-end tests use, from
# Debian's packages, when they are missing. Idempotent: a second run
# installs nothing and takes well under a second.
#
#   softhsm2, opensc        PKCS#11 token (SoftHSM2) and pkcs11-tool
#   python3-magnumclient    the OpenStack Magnum client, for the compatible API
#   openssl, jq, curl       fixtures, and the README walkthrough test
#   postgresql              the PostgreSQL store's tests (test/scripts/postgres.sh)
#
# Usage: test/scripts/deps.sh [extra-package ...]
set -euo pipefail

want=(softhsm2 opensc python3-magnumclient openssl jq curl postgresql "$@")
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "deps.sh: missing ${missing[*]}; run as root: apt-get install -y ${missing[*]}" >&2; exit 1
  fi
else SUDO=; fi

echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists once when they are absent or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  $SUDO apt-get update -qq
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
