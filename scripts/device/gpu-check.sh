#!/usr/bin/env bash
# The GPU check run on a lent GPU machine (no network there): builds llama-server with
# CUDA for this GPU from the carried llama.cpp source, then runs `sluice bench smoke`
# (start sluice with every layer on the GPU, streamed load, tokens/s, VRAM, power, cost
# per million tokens). Prepare the carried folder here with scripts/device/prepare.sh.
#   run: scripts/device/gpu-check.sh   (with .device/ carried; results under $OUT)
set -uo pipefail
cd "$(dirname "$0")/../.."
D=.device
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH SLUICE_CACHE=/tmp/sluice-cache
nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit,compute_cap --format=csv | tee "$OUT/nvidia-smi.csv"
nvcc --version | tail -2
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '. ')
mkdir -p "$SLUICE_CACHE/src"
tar xzf "$D/llama-src.tgz" -C "$SLUICE_CACHE/src"
gunzip -c "$D/sluice.gz" >/tmp/sluice && chmod +x /tmp/sluice
t0=$(date +%s)
# Flash-attention kernels are left out to fit the build in the device budget.
bin=$(LLAMA_CUDA_ARCHS=$arch JOBS=$(nproc) LLAMA_CMAKE_EXTRA="${LLAMA_CMAKE_EXTRA--DGGML_CUDA_FA=OFF}" \
	scripts/build-llama-server.sh 2>"$OUT/build.err") || { tail -40 "$OUT/build.err"; exit 1; }
echo "llama-server (CUDA sm_$arch) built in $(( $(date +%s) - t0 ))s: $bin" | tee "$OUT/build.txt"
/tmp/sluice gpus | tee "$OUT/gpus.txt"
/tmp/sluice bench smoke --llama-server "$bin" --vocab "$D/tokenizer.json" --dir /tmp/smoke \
	--requests "${REQUESTS:-64}" --concurrency "${CONCURRENCY:-16}" --slots "${SLOTS:-16}" --max-tokens "${MAX_TOKENS:-256}" \
	--json 2>&1 | tee "$OUT/smoke.txt"
rc=${PIPESTATUS[0]}
tail -c 200000 /tmp/smoke/sluice.log >"$OUT/sluice.log" 2>/dev/null
cp /tmp/smoke/status.txt "$OUT/" 2>/dev/null
exit "$rc"
