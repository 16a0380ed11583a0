#!/usr/bin/env bash
# Build cfssl (the peer the bench measures clusterkeys against) once from the Go
# module proxy into a tool cache keyed by version; exits at once when present.
# Prints the directory holding the cfssl binary.
set -euo pipefail
CFSSL_VERSION="${CFSSL_VERSION:-v1.6.5}"
CACHE="${CLUSTERKEYS_TOOL_CACHE:-$HOME/.cache/clusterkeys}"
dir="$CACHE/cfssl-$CFSSL_VERSION"
if [ -x "$dir/cfssl" ]; then
  echo "$dir"
  exit 0
fi
mkdir -p "$CACHE"
tmp="$(mktemp -d "$CACHE/cfssl-$CFSSL_VERSION.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "building cfssl $CFSSL_VERSION into $dir (several minutes the first time)" >&2
GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -trimpath" go install "github.com/cloudflare/cfssl/cmd/cfssl@$CFSSL_VERSION" >&2
# Rename into place so an interrupted build never leaves a half-filled cache.
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "$dir"
