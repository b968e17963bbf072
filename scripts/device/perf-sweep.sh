#!/usr/bin/env bash
# Issue 14, part 3: sluice on a real-shape model on a lent GPU. On the GPU box (no network
# there; prepare the carried .device/ folder here first with scripts/device/prepare.sh):
#   1. builds llama-server with CUDA for this GPU from the carried llama.cpp source,
#   2. writes the Llama-3.1-8B shape (random weights, Q4_0, Llama-2 vocabulary) with
#      `sluice gen-model --shape`,
#   3. runs a throughput / time-to-first-token sweep, 1 to 64 concurrent streams, through
#      sluice (`sluice bench smoke`, one run per concurrency),
#   4. runs `sluice bench sched` on that model (placement policies on real engines).
# Figures land under $OUT (at most 8 files come back from the device machine):
#   env.txt (GPU, driver, nvcc, build time), sweep.tsv (one row per concurrency),
#   sweep.jsonl (smoke's JSON lines), sched.txt (bench sched's tables and JSON), log.txt.
#
#   scripts/device/perf-sweep.sh               # on the GPU box, with .device/ carried
#   scripts/device/perf-sweep.sh --dry-run     # print the plan and check the carried files
#   scripts/device/perf-sweep.sh --cpu         # the same steps on this CPU: the cached CPU
#                                              # llama-server, a 0.5B shape, 1 and 2 streams,
#                                              # bench sched on the tiny model
# One device command may run 10 minutes: on a fresh machine run the build and the sweep
# first (SKIP_SCHED=1), then at once, while the machine is warm, the scheduler bench
# (SKIP_SWEEP=1; the build and the model are reused from /tmp).
# Knobs (environment): SHAPE (llama-3.1-8b), QUANT (q4_0), STREAMS ("1 2 4 8 16 32 64"),
# MAX_TOKENS (128), SCHED_DURATION (20s a policy), SKIP_SCHED=1, SKIP_SWEEP=1,
# LLAMA_CMAKE_EXTRA (default -DGGML_CUDA_FA=OFF: the build fits the device time; the runs
# then pass "-fa off"), SLUICE_BIN / LLAMA_SERVER (use these binaries, skip the unpacking
# and the build).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
here=scripts/device
D=.device
mode=gpu dry=0
for a in "$@"; do
	case "$a" in
	--dry-run) dry=1 ;;
	--cpu) mode=cpu ;;
	-h | --help) sed -n '2,/^set /p' "$0" | sed '$d'; exit 0 ;;
	*) echo "perf-sweep: unknown argument $a" >&2; exit 2 ;;
	esac
done

OUT=${OUT:-/tmp/perf-sweep}
WORK=${WORK:-/tmp/perf-sweep-work}
SHAPE=${SHAPE:-llama-3.1-8b}
QUANT=${QUANT:-q4_0}
STREAMS=${STREAMS:-1 2 4 8 16 32 64}
MAX_TOKENS=${MAX_TOKENS:-128}
SCHED_DURATION=${SCHED_DURATION:-20s}
FA_ARGS="-fa off"
if [ "$mode" = cpu ]; then
	SHAPE=${CPU_SHAPE:-qwen2.5-0.5b}
	STREAMS=${CPU_STREAMS:-1 2}
	MAX_TOKENS=${CPU_MAX_TOKENS:-16}
	SCHED_DURATION=${CPU_SCHED_DURATION:-3s}
	FA_ARGS=""
fi
export SLUICE_CACHE=${SLUICE_CACHE:-$([ "$mode" = gpu ] && echo /tmp/sluice-cache || echo "$HOME/.cache/sluice")}
mkdir -p "$OUT" "$WORK"
log() { printf '[perf-sweep] %s\n' "$*" | tee -a "$OUT/log.txt" >&2; }

CUDA_EXTRA=${LLAMA_CMAKE_EXTRA--DGGML_CUDA_FA=OFF}

# The steps, printed by --dry-run and run otherwise.
plan() {
	local sb=${SLUICE_BIN:-"unpacked from $D/sluice.gz (gpu) or go build (cpu)"}
	local lb=${LLAMA_SERVER:-"built (gpu: CUDA for the GPU's compute capability, cmake $CUDA_EXTRA; cpu: scripts/build-llama-server.sh, cached)"}
	cat <<EOF
mode:         $mode
sluice:       $sb
llama-server: $lb
model:        sluice gen-model --shape $SHAPE --quant $QUANT --vocab <tokenizer.json> --out $WORK/$SHAPE-$QUANT.gguf
sweep:        for n in $STREAMS: sluice bench smoke --model <model> --concurrency n --slots max(n,4) --requests max(2n,8) --max-tokens $MAX_TOKENS --engine-args "$FA_ARGS" --json
sched:        sluice bench sched --engines 2 --slots 8 --duration $SCHED_DURATION --rounds 1 --engine-args "$FA_ARGS" --json
              gpu: --model <model> --threads 4 --system-tokens 1500 --sim-gpus 8,64; cpu: --quick (the tiny model), --system-tokens 300, no simulation
figures:      $OUT/{env.txt,sweep.tsv,sweep.jsonl,sched.txt,log.txt}
EOF
}

if [ "$dry" = 1 ]; then
	plan
	rc=0
	if [ "$mode" = gpu ] && [ -z "${SLUICE_BIN:-}" ]; then
		for f in "$D/sluice.gz" "$D/llama-src.tgz" "$D/tokenizer.json"; do
			if [ -s "$f" ]; then echo "carried:      $f ($(du -h "$f" | cut -f1))"; else echo "MISSING:      $f (run $here/prepare.sh here first)"; rc=1; fi
		done
	fi
	exit "$rc"
fi

: >"$OUT/log.txt"
plan >>"$OUT/log.txt"
t0=$(date +%s)

# 1. Binaries.
vocab=$D/tokenizer.json
if [ "$mode" = gpu ]; then
	export PATH=/usr/local/cuda/bin:$PATH
	{
		nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit,compute_cap --format=csv
		nvcc --version | tail -2
		echo "cpus: $(nproc)"
	} >"$OUT/env.txt" 2>&1
	cat "$OUT/env.txt" >&2
	if [ -z "${SLUICE_BIN:-}" ]; then
		if ! gunzip -c "$D/sluice.gz" >"$WORK/sluice"; then
			log "no $D/sluice.gz: run $here/prepare.sh here first"
			exit 1
		fi
		chmod +x "$WORK/sluice"
		SLUICE_BIN=$WORK/sluice
	fi
	if [ -z "${LLAMA_SERVER:-}" ]; then
		arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '. ')
		mkdir -p "$SLUICE_CACHE/src"
		tar xzf "$D/llama-src.tgz" -C "$SLUICE_CACHE/src" || { log "no $D/llama-src.tgz: run $here/prepare.sh here first"; exit 1; }
		tb=$(date +%s)
		LLAMA_SERVER=$(LLAMA_CUDA_ARCHS=$arch JOBS=$(nproc) LLAMA_CMAKE_EXTRA="$CUDA_EXTRA" \
			scripts/build-llama-server.sh 2>>"$OUT/log.txt") || { log "CUDA build failed (see log.txt)"; exit 1; }
		echo "llama-server: CUDA sm_$arch, cmake $CUDA_EXTRA, built in $(($(date +%s) - tb)) s" | tee -a "$OUT/env.txt" >&2
	fi
else
	{
		echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
		echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
	} >"$OUT/env.txt"
	if [ -z "${SLUICE_BIN:-}" ]; then
		go build -o "$WORK/sluice" ./cmd/sluice || exit 1
		SLUICE_BIN=$WORK/sluice
	fi
	[ -n "${LLAMA_SERVER:-}" ] || LLAMA_SERVER=$(scripts/build-llama-server.sh 2>>"$OUT/log.txt") || { log "no CPU llama-server"; exit 1; }
	[ -s "$vocab" ] || vocab=$(scripts/fetch-vocab.sh 2>>"$OUT/log.txt") || exit 1
fi

# 2. The real-shape model.
model=$WORK/$SHAPE-$QUANT.gguf
if [ -s "$model" ]; then
	echo "model: $SHAPE $QUANT, $(du -h "$model" | cut -f1), from an earlier run" | tee -a "$OUT/env.txt" >&2
else
	tg=$(date +%s)
	"$SLUICE_BIN" gen-model --shape "$SHAPE" --quant "$QUANT" --vocab "$vocab" --out "$model.tmp" >>"$OUT/log.txt" 2>&1 ||
		{ log "gen-model failed (see log.txt)"; exit 1; }
	mv "$model.tmp" "$model"
	echo "model: $SHAPE $QUANT, $(du -h "$model" | cut -f1), written in $(($(date +%s) - tg)) s" | tee -a "$OUT/env.txt" >&2
fi

# 3. Throughput and TTFT, 1 to 64 streams.
rc=0
if [ -z "${SKIP_SWEEP:-}" ]; then
	printf 'streams\trequests\trequests_ok\ttokens_per_s\ttokens_per_s_1_stream\tttft_p50_ms\tvram_gib\tpower_w\tusd_per_m_tokens_full_load\n' >"$OUT/sweep.tsv"
	: >"$OUT/sweep.jsonl"
	port=18080
	for n in $STREAMS; do
		slots=$((n < 4 ? 4 : n))
		reqs=$((2 * n < 8 ? 8 : 2 * n))
		log "sweep: $n streams, $reqs requests"
		port=$((port + 1))
		"$SLUICE_BIN" bench smoke --llama-server "$LLAMA_SERVER" --model "$model" --dir "$WORK/smoke-$n" --port "$port" \
			--concurrency "$n" --slots "$slots" --requests "$reqs" --max-tokens "$MAX_TOKENS" --engine-args "$FA_ARGS" --json \
			>"$WORK/smoke-$n.out" 2>&1
		cat "$WORK/smoke-$n.out" >>"$OUT/log.txt"
		line=$(tail -1 "$WORK/smoke-$n.out")
		if ! printf '%s' "$line" | grep -q '^{'; then
			log "sweep: $n streams failed (see log.txt)"
			rc=1
			continue
		fi
		printf '%s\n' "$line" >>"$OUT/sweep.jsonl"
		printf '%s' "$line" | python3 -c '
import json, sys
r = json.load(sys.stdin)
n = sys.argv[1]
print("\t".join(str(x) for x in [n, r["requests"], r["requests_ok"], r["tps"], r["tps_single"], r["ttft_p50_ms"],
      r["vram_gib"], r["power_w"], r["usd_per_m_tokens_full_load"]]))' "$n" >>"$OUT/sweep.tsv" || rc=1
	done
	column -t -s $'\t' "$OUT/sweep.tsv" >&2
fi

# 4. Placement policies on the real shape.
if [ -z "${SKIP_SCHED:-}" ]; then
	log "bench sched on $SHAPE"
	sched=(--llama-server "$LLAMA_SERVER" --engines 2 --slots 8 --duration "$SCHED_DURATION" --rounds 1 --engine-args "$FA_ARGS" --json)
	if [ "$mode" = gpu ]; then
		sched+=(--model "$model" --threads 4 --system-tokens 1500 --sim-gpus "8,64")
	else
		# On a CPU the real shape's prefills take minutes: the tiny model proves the step.
		sched+=(--quick --system-tokens 300 --sim-gpus "")
	fi
	"$SLUICE_BIN" bench sched "${sched[@]}" >"$OUT/sched.txt" 2>>"$OUT/log.txt" ||
		{ log "bench sched failed (see log.txt)"; rc=1; }
	tail -c 4000 "$OUT/sched.txt" >&2
fi
log "done in $(($(date +%s) - t0)) s, rc $rc"
exit "$rc"
