#!/usr/bin/env bash
# Builds Ollama from the Go module proxy (CPU backend compiled in by cgo) and caches the binary
# outside the clone. Prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

dest="$SLUICE_CACHE/engines/ollama-$OLLAMA_VERSION"
if [ -x "$dest/ollama" ]; then echo "$dest/ollama"; exit 0; fi
need_apt nlohmann-json3-dev libstb-dev g++
# Go module zips drop vendor/: take miniaudio.h from the malgo module.
inc="$SLUICE_CACHE/build/ollama-inc"
mkdir -p "$inc/miniaudio"
malgo=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/gen2brain/malgo@$MALGO_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
cp "$malgo/miniaudio.h" "$inc/miniaudio/miniaudio.h"
log "building ollama $OLLAMA_VERSION (about 4 minutes cold)"
mkdir -p "$dest.tmp"
(cd /tmp && CGO_ENABLED=1 CGO_CPPFLAGS="-I$inc" GOBIN="$dest.tmp" GOFLAGS=-mod=mod \
	go install -ldflags "-X github.com/ollama/ollama/version.Version=$OLLAMA_VERSION" \
	"github.com/ollama/ollama@v$OLLAMA_VERSION")
rm -rf "$dest"
mv "$dest.tmp" "$dest"
log "ollama ready: $dest/ollama"
echo "$dest/ollama"
