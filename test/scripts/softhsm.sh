#!/usr/bin/env bash
# softhsm.sh: an isolated SoftHSM2 token for clusterkeys' pkcs11 custody.
#
#   test/scripts/softhsm.sh install
#       installs softhsm2 and opensc (pkcs11-tool) with apt-get when missing;
#       idempotent (a second run installs nothing), `apt-get update` only when
#       the packages are unknown to apt.
#   test/scripts/softhsm.sh init DIR [TOKEN_LABEL]
#       installs when missing, then creates DIR/softhsm2.conf (absolute
#       tokendir DIR/tokens, 0700), initialises one token with a random user
#       PIN written to DIR/pin (0600), and prints export lines on stdout:
#           eval "$(test/scripts/softhsm.sh init /tmp/hsm)"
#       sets SOFTHSM2_CONF, CLUSTERKEYS_PKCS11_MODULE,
#       CLUSTERKEYS_PKCS11_TOKEN_LABEL and CLUSTERKEYS_PKCS11_PIN_FILE.
#       Everything else goes to stderr. A DIR that already holds a token with
#       that label is reused (its exports are printed again).
#   test/scripts/softhsm.sh module
#       prints the path of libsofthsm2.so.
#
# Cleanup is `rm -rf DIR`: /etc/softhsm and the default token store are
# never touched. The token is selected by label: SoftHSM's slot ids change.
# Env: SOFTHSM2_MODULE (library path), SOFTHSM2_UTIL (softhsm2-util binary).
set -euo pipefail

die() { echo "softhsm.sh: $*" >&2; exit 1; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

install_packages() {
  local want=(softhsm2 opensc) missing=() p
  for p in "${want[@]}"; do installed "$p" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install SoftHSM2 and OpenSC with your package manager"
  local sudo=
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "missing ${missing[*]}; run as root: apt-get install -y ${missing[*]}"
    sudo=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  for p in "${missing[@]}"; do
    if ! apt-cache show "$p" >/dev/null 2>&1; then
      echo "softhsm.sh: apt does not know $p yet: apt-get update" >&2
      $sudo apt-get update -qq >&2
      break
    fi
  done
  echo "softhsm.sh: installing ${missing[*]}" >&2
  $sudo apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >&2
}

find_module() {
  if [ -n "${SOFTHSM2_MODULE:-}" ]; then
    [ -e "$SOFTHSM2_MODULE" ] || die "SOFTHSM2_MODULE=$SOFTHSM2_MODULE does not exist"
    echo "$SOFTHSM2_MODULE"; return
  fi
  local m
  for m in /usr/lib/softhsm/libsofthsm2.so \
           /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
           /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so \
           /usr/lib64/pkcs11/libsofthsm2.so \
           /usr/lib/pkcs11/libsofthsm2.so \
           /usr/local/lib/softhsm/libsofthsm2.so \
           /opt/homebrew/lib/softhsm/libsofthsm2.so; do
    if [ -e "$m" ]; then echo "$m"; return; fi
  done
  die "libsofthsm2.so not found (install softhsm2 or set SOFTHSM2_MODULE)"
}

has_token() { # conf label
  SOFTHSM2_CONF=$1 "$UTIL" --show-slots 2>/dev/null | awk -v lbl="$2" '
    /Label:/ { l=$0; sub(/^[ \t]*Label:[ \t]*/, "", l); sub(/[ \t]+$/, "", l); if (l==lbl) found=1 }
    END { exit found ? 0 : 1 }'
}

init_token() { # dir label
  local dir=$1 label=$2 module conf pin sopin
  install_packages
  module=$(find_module)
  command -v "$UTIL" >/dev/null || die "$UTIL not found (apt-get install softhsm2)"
  umask 077
  mkdir -p "$dir/tokens"
  dir=$(cd "$dir" && pwd) # the conf must not depend on the working directory
  chmod 700 "$dir" "$dir/tokens"
  conf=$dir/softhsm2.conf
  cat >"$conf" <<EOF
# isolated SoftHSM2 configuration written by clusterkeys test/scripts/softhsm.sh
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
slots.mechanisms = ALL
library.reset_on_fork = false
EOF
  if ! has_token "$conf" "$label"; then
    # Random PINs: nothing guessable is left in a test directory.
    pin=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    sopin=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    (umask 077 && printf '%s\n' "$pin" >"$dir/pin")
    chmod 600 "$dir/pin"
    SOFTHSM2_CONF=$conf "$UTIL" --init-token --free --label "$label" --pin "$pin" --so-pin "$sopin" >/dev/null \
      || die "softhsm2-util --init-token failed"
    echo "softhsm.sh: token '$label' initialised in $dir" >&2
  else
    [ -s "$dir/pin" ] || die "$dir has a token '$label' but no pin file"
    echo "softhsm.sh: reusing token '$label' in $dir" >&2
  fi
  cat <<EOF
export SOFTHSM2_CONF='$conf'
export CLUSTERKEYS_PKCS11_MODULE='$module'
export CLUSTERKEYS_PKCS11_TOKEN_LABEL='$label'
export CLUSTERKEYS_PKCS11_PIN_FILE='$dir/pin'
EOF
}

UTIL=${SOFTHSM2_UTIL:-softhsm2-util}
case "${1:-}" in
  install) install_packages ;;
  module) find_module ;;
  init)
    [ $# -ge 2 ] || die "usage: $0 init DIR [TOKEN_LABEL]"
    init_token "$2" "${3:-clusterkeys}" ;;
  *) echo "usage: $0 install | init DIR [TOKEN_LABEL] | module" >&2; exit 2 ;;
esac
