#!/usr/bin/env bash
# Build kube-apiserver from the k8s.io/kubernetes module on the Go module proxy and cache it.
#
# The binary lands at ${CLUSTERKEYS_CACHE:-$HOME/.cache/clusterkeys}/kube-apiserver-$KV/kube-apiserver,
# keyed by version: when it already exists this script prints its path and exits at once.
# The wrapper module replaces every ./staging module of k8s.io/kubernetes by its published
# v0.<minor>.<patch> tag (the same approach as shared/recipes/kube-apiserver). Parallelism is
# kept low (-p 1 by default) so the build fits 2 cores and 24 GiB next to other work.
#
# Measured here (2 cores shared with other builds, -p 1, cold module cache):
# 31 min wall, 750 s user + 270 s sys CPU, 2.3 GiB max RSS, 119 MB binary.
#
# Env: KUBE_VERSION [v1.37.2]  CLUSTERKEYS_CACHE [~/.cache/clusterkeys]  BUILD_PARALLELISM [1]
# Prints the binary's path as its last line of stdout.
set -euo pipefail

KV=${KUBE_VERSION:-v1.37.2}
SV=v0.${KV#v1.}
CACHE=${CLUSTERKEYS_CACHE:-$HOME/.cache/clusterkeys}
DEST=$CACHE/kube-apiserver-$KV
BIN=$DEST/kube-apiserver

if [[ -x $BIN ]]; then
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { echo "build-kube-apiserver: go not found in PATH" >&2; exit 2; }

mkdir -p "$DEST"
W=$(mktemp -d "${TMPDIR:-/tmp}/kapi-mod.XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W"

start=$(date +%s)
echo "build-kube-apiserver: building kube-apiserver $KV in $W (cache $DEST)" >&2

gomod=$(go mod download -json "k8s.io/kubernetes@$KV" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
[[ -f $gomod ]] || { echo "build-kube-apiserver: cannot download k8s.io/kubernetes@$KV" >&2; exit 1; }
cp "$gomod" k8s.mod
{
  echo "module example.com/kapi"
  echo
  grep -E '^go ' k8s.mod
  echo
  echo "require k8s.io/kubernetes $KV"
  echo
  echo "replace ("
  grep -E '=> \./staging/' k8s.mod | awk -v sv="$SV" '{print "\t" $1 " => " $1 " " sv}'
  echo ")"
} > go.mod
printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n' > tools.go

# The wrapper module is a throwaway outside any repository, so tidying it is safe.
GOFLAGS=-mod=mod go mod tidy
export CGO_ENABLED=0
export GOFLAGS="-trimpath"
go build -p "${BUILD_PARALLELISM:-1}" -ldflags="-s -w" -o "$W/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
"$W/kube-apiserver" --version >&2
mv "$W/kube-apiserver" "$BIN.tmp"
cp go.mod go.sum "$DEST/"
mv "$BIN.tmp" "$BIN"
echo "build-kube-apiserver: built $BIN in $(( $(date +%s) - start ))s" >&2
echo "$BIN"
