#!/usr/bin/env bash
# Fills .device/ (ignored by git, carried to the GPU machine) with what the GPU check needs
# and the machine cannot download: the sluice binary (cgo, for NVML), the llama.cpp source
# (trimmed) and the Llama-2 vocabulary.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../common.sh"
cd "$here/../.."
mkdir -p .device
CGO_ENABLED=1 CGO_CFLAGS="-O2 -Wno-deprecated-declarations" go build -o .device/sluice ./cmd/sluice
gzip -f .device/sluice
src=$("$here/../fetch-llama-src.sh")
tar -C "$(dirname "$src")" --exclude=.git --exclude="$(basename "$src")/models" --exclude="$(basename "$src")/docs" \
	--exclude="$(basename "$src")/media" --exclude="$(basename "$src")/tools/server/webui" \
	--exclude="$(basename "$src")/examples" --exclude="$(basename "$src")/gguf-py" --exclude="$(basename "$src")/tests" \
	-czf .device/llama-src.tgz "$(basename "$src")"
cp "$("$here/../fetch-vocab.sh")" .device/tokenizer.json
du -sh .device/*
