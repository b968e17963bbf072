#!/usr/bin/env bash
# GPU smoke test: starts sluice on a real GPU with a model (a GGUF you give, or a generated
# one), sends streamed requests through the OpenAI API and prints tokens/s, VRAM, power and
# cost per million tokens. Run it on a fresh RunPod pod (or any CUDA box) after deploying.
#
#   SLUICE_BIN=sluice LLAMA_SERVER=/usr/local/bin/llama-server MODEL=/models/model.gguf \
#     scripts/runpod/gpu-smoke.sh
#
# Without MODEL it generates a 2048-dim, 16-layer llama with the Llama-2 vocabulary
# (VOCAB=tokenizer.json, from scripts/fetch-vocab.sh): nonsense text, real GPU load.
# Env: PORT (18080), SLOTS (8), CONCURRENCY (8), REQUESTS (32), MAX_TOKENS (256),
# GPU_PRICE (override $/GPU-hour), OUT_DIR (where logs and results go).
set -euo pipefail
SLUICE_BIN=${SLUICE_BIN:-sluice}
LLAMA_SERVER=${LLAMA_SERVER:-llama-server}
PORT=${PORT:-18080}
SLOTS=${SLOTS:-8}
CONCURRENCY=${CONCURRENCY:-8}
REQUESTS=${REQUESTS:-32}
MAX_TOKENS=${MAX_TOKENS:-256}
OUT_DIR=${OUT_DIR:-$(mktemp -d)}
mkdir -p "$OUT_DIR"
base="http://127.0.0.1:$PORT"
now() { date +%s.%N; }
say() { printf '[smoke] %s\n' "$*" >&2; }

if [ -z "${MODEL:-}" ]; then
	MODEL="$OUT_DIR/smoke-model.gguf"
	say "generating a 2048-dim, 16-layer test model"
	t0=$(now)
	"$SLUICE_BIN" gen-model --dim 2048 --layers 16 --context 4096 --vocab "${VOCAB:?set MODEL or VOCAB}" --out "$MODEL" >&2
	say "model generated in $(echo "$(now) - $t0" | bc)s"
fi

cat >"$OUT_DIR/sluice.yaml" <<YAML
server:
  listen: 127.0.0.1:$PORT
  admin_key_file: $OUT_DIR/admin-key
engines:
  - name: gpu
    kind: llamacpp
    binary: $LLAMA_SERVER
    model_path: $MODEL
    slots: $SLOTS
    context: 2048
    gpu_layers: -1
    models: [{name: smoke}]
${GPU_PRICE:+pricing:
  gpu_per_hour: {"NVIDIA": $GPU_PRICE}}
YAML

say "starting sluice"
"$SLUICE_BIN" serve --config "$OUT_DIR/sluice.yaml" >"$OUT_DIR/sluice.out" 2>"$OUT_DIR/sluice.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
	grep -q '^sluice ready' "$OUT_DIR/sluice.out" 2>/dev/null && break
	kill -0 $pid 2>/dev/null || { cat "$OUT_DIR/sluice.out" "$OUT_DIR/sluice.log" >&2; exit 1; }
	sleep 0.2
done
grep -q '^sluice ready' "$OUT_DIR/sluice.out" || { say "sluice not ready in 120s"; tail -20 "$OUT_DIR/sluice.log" >&2; exit 1; }
cat "$OUT_DIR/sluice.out" >&2

metric() { # metric NAME [label filter]: first value
	curl -s "$base/metrics" | grep "^$1" | grep -- "${2:-}" | head -1 | awk '{print $NF}'
}
request() { # one streamed chat; prints completion tokens
	curl -sN "$base/v1/chat/completions" -H 'Content-Type: application/json' -d "{\"model\":\"smoke\",\"stream\":true,\
\"max_tokens\":$MAX_TOKENS,\"stream_options\":{\"include_usage\":true},\"messages\":[{\"role\":\"user\",\"content\":\"Request $1: tell a long story about GPUs.\"}]}" \
		| grep -o '"completion_tokens":[0-9]*' | tail -1 | cut -d: -f2
}
export -f request
export base MAX_TOKENS

say "warm-up"
request 0 >/dev/null
t0=$(now)
single=$(request 1)
t1=$(now)
single_tps=$(echo "$single / ($t1 - $t0)" | bc -l)

# Sample power and memory during the load.
( while :; do metric sluice_gpu_power_watts; sleep 0.3; done ) >"$OUT_DIR/power.txt" 2>/dev/null &
sampler=$!
say "load: $REQUESTS streamed requests, $CONCURRENCY at a time, $MAX_TOKENS tokens each"
t0=$(now)
seq 1 "$REQUESTS" | xargs -P "$CONCURRENCY" -I{} bash -c 'request {}' >"$OUT_DIR/tokens.txt"
t1=$(now)
vram=$(metric sluice_gpu_memory_used_bytes)
kill $sampler 2>/dev/null || true
total=$(awk '{s+=$1} END {print s+0}' "$OUT_DIR/tokens.txt")
ok=$(grep -c . "$OUT_DIR/tokens.txt" || true)
wall=$(echo "$t1 - $t0" | bc -l)
tps=$(echo "$total / $wall" | bc -l)
power_max=$(sort -g "$OUT_DIR/power.txt" | tail -1)
price=$(metric sluice_engine_price_usd_per_hour 'engine="gpu"')
per_m=$(metric sluice_cost_per_million_tokens_usd 'type="total"')
full_load=$(echo "$price / ($tps * 3600) * 1000000" | bc -l)
gpu_name=$(curl -s "$base/metrics" | grep '^sluice_gpu_info' | head -1 | sed 's/.*name="\([^"]*\)".*/\1/')
"$SLUICE_BIN" status --url "$base" --admin-key-file "$OUT_DIR/admin-key" >"$OUT_DIR/status.txt" 2>&1 || true

printf '\n%-34s %s\n' "GPU" "$gpu_name"
printf '%-34s %s\n' "model" "$MODEL"
printf '%-34s %d/%d ok, %d completion tokens in %.2fs\n' "requests" "$ok" "$REQUESTS" "$total" "$wall"
printf '%-34s %.0f\n' "tokens/s, one stream" "$single_tps"
printf '%-34s %.0f\n' "tokens/s, $CONCURRENCY streams" "$tps"
printf '%-34s %.2f GiB\n' "VRAM used" "$(echo "${vram:-0} / 1073741824" | bc -l)"
printf '%-34s %s W\n' "power (max during load)" "${power_max:-n/a}"
printf '%-34s $%s\n' "engine price per hour" "$price"
printf '%-34s $%.4f\n' "cost per 1M tokens (measured)" "${per_m:-0}"
printf '%-34s $%.4f\n' "cost per 1M tokens (full load)" "$full_load"
printf '{"gpu":"%s","requests_ok":%d,"tokens":%d,"tps_single":%.1f,"tps":%.1f,"vram_gib":%.3f,"power_w":%s,"usd_per_hour":%s,"usd_per_m_tokens":%.5f,"usd_per_m_tokens_full_load":%.5f}\n' \
	"$gpu_name" "$ok" "$total" "$single_tps" "$tps" "$(echo "${vram:-0} / 1073741824" | bc -l)" "${power_max:-0}" "${price:-0}" "${per_m:-0}" "$full_load" | tee "$OUT_DIR/result.json"
[ "$ok" = "$REQUESTS" ] || { say "some requests failed"; exit 1; }
