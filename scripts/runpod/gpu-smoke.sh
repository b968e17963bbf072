#!/usr/bin/env bash
# GPU smoke test for a fresh pod: starts sluice on the GPU with a model, sends streamed
# requests through the OpenAI API and prints tokens/s, VRAM, power and cost per million
# tokens (the last line is JSON). It is `sluice bench smoke`; see `sluice bench smoke -h`.
#
#   scripts/runpod/gpu-smoke.sh --model /models/model.gguf
#   scripts/runpod/gpu-smoke.sh --vocab tokenizer.json      # generate a 2048-dim, 16-layer test model
#
# In the Docker image sluice and llama-server are on $PATH (SLUICE_LLAMA_SERVER names it).
set -euo pipefail
SLUICE_BIN=${SLUICE_BIN:-sluice}
exec "$SLUICE_BIN" bench smoke --llama-server "${SLUICE_LLAMA_SERVER:-llama-server}" --json "$@"
