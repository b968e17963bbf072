#!/usr/bin/env bash
# Entrypoint of the image built from Dockerfile.cuda (it also works on any box with sluice
# on $PATH). It makes sure the model file is there, then runs `sluice serve`.
#
#   SLUICE_MODEL         the GGUF file to serve (default /models/model.gguf)
#   SLUICE_MODEL_URL     when SLUICE_MODEL is missing, download it from here first
#                        (`sluice fetch-model`: progress on stderr, atomic rename)
#   SLUICE_MODEL_SHA256  the download's expected SHA-256 (recommended; checked on the fly)
#   SLUICE_CONFIG        config file (default /etc/sluice/sluice.yaml, which the image holds:
#                        scripts/runpod/sluice.yaml); "none" serves SLUICE_MODEL from flags
#   SLUICE_LISTEN        listen address in flags mode (default 0.0.0.0:8080)
#   SLUICE_BIN           the sluice binary (default: sluice on $PATH)
#
# Arguments starting with "-" are added to `sluice serve` (e.g. --log-level debug
# --ready-timeout 15m). A first argument that is a sluice command runs that command
# (`docker run IMAGE gpus`, `docker run IMAGE status`); any other runs as a program
# (`docker run -it IMAGE bash`).
set -euo pipefail

log() { printf '[entrypoint] %s\n' "$*" >&2; }

sluice=${SLUICE_BIN:-sluice}
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
	case $1 in
	serve | status | gpus | fetch-model | gen-model | bench | version) exec "$sluice" "$@" ;;
	*) exec "$@" ;;
	esac
fi

model=${SLUICE_MODEL:-/models/model.gguf}
config=${SLUICE_CONFIG:-/etc/sluice/sluice.yaml}
export SLUICE_MODEL="$model" # the config file reads it too

# fetch runs `sluice fetch-model` in the background so that a SIGTERM (docker stop) reaches
# it: it then removes its partial file and exits instead of being killed mid-write.
fetch() {
	local dir pid="" rc stop=0
	dir=$(dirname "$model")
	mkdir -p "$dir" 2>/dev/null || true
	if [ ! -w "$dir" ]; then
		log "cannot write $dir as $(id -un) (uid $(id -u)): make the volume writable for that uid," \
			"put the model there beforehand, or set SLUICE_MODEL to a writable path"
		exit 1
	fi
	# Partial files of a download killed outright (SIGKILL, power loss) would fill the volume.
	rm -f "$dir/.$(basename "$model")".*.part
	log "$model is missing: downloading it (SLUICE_MODEL_URL)"
	# The trap is set first: a signal that lands before $pid is known is passed on below.
	trap 'stop=1; [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true' TERM INT
	"$sluice" fetch-model --url "$SLUICE_MODEL_URL" --sha256 "${SLUICE_MODEL_SHA256:-}" --out "$model" &
	pid=$!
	[ "$stop" = 0 ] || kill -TERM "$pid" 2>/dev/null || true
	rc=0
	wait "$pid" || rc=$?
	# A trapped signal makes wait return early (>128) while fetch-model is still cleaning up:
	# wait again for its own status (bash keeps it, so waiting twice is harmless).
	while [ "$stop" = 1 ]; do
		stop=0
		rc=0
		wait "$pid" || rc=$?
	done
	trap - TERM INT
	if [ "$rc" -ne 0 ]; then
		log "model download failed (exit $rc)"
		exit "$rc"
	fi
}

if [ ! -e "$model" ] && [ -n "${SLUICE_MODEL_URL:-}" ]; then
	fetch
fi

if [ "$config" != none ] && [ -f "$config" ]; then
	[ -e "$model" ] || log "warning: $model does not exist (mount a volume holding it or set SLUICE_MODEL_URL)"
	exec "$sluice" serve --config "$config" "$@"
fi
if [ ! -e "$model" ]; then
	log "no model at $model: mount a volume holding it, or set SLUICE_MODEL_URL (and SLUICE_MODEL_SHA256)"
	exit 1
fi
# Flags mode has no API keys. A container must listen on all its interfaces to be reached
# through its published port, so the refusal of a public key-less server is overridden
# here, deliberately and loudly: put authentication in front, or use a config file.
log "no config file ($config): serving $model from flags, without API keys, to anyone who reaches the port"
exec "$sluice" serve --model "$model" --listen "${SLUICE_LISTEN:-0.0.0.0:8080}" --insecure-public "$@"
