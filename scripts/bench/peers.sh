#!/usr/bin/env bash
# Issue 14, part 4: gateways that users choose between, measured beside sluice in one
# `sluice bench gateway` run, in front of the same fake engine. Installs each peer at a
# pinned version, starts it pointed at the fake engine's fixed address, runs
# `bin/sluice bench gateway --engine-addr ... --peer NAME=URL ...` with the arguments given
# here, and stops the peers again.
#
#   scripts/bench/peers.sh --rates 500,2000 --json     # any `bench gateway` flags
#   scripts/bench/peers.sh --install-only              # install the peers, start nothing
#
# Peers:
#   portkey  Portkey's AI gateway, npm @portkey-ai/gateway 1.15.2 (Node), from the lock file
#            in scripts/bench/peers/portkey/ (it pins @hono/node-server to 1.13.8: with
#            newer versions every streamed answer fails, Portkey-AI/gateway issues 1389 and
#            1550). Headless, NODE_ENV=production; it has no rate limits to raise. The
#            upstream is named on each request (x-portkey-provider: openai,
#            x-portkey-custom-host: the fake engine), sent with --peer-header.
#   caddy    Caddy 2.11.9 (Go module proxy, `go install`), the reverse proxy a team puts in
#            front of its engines by hand: the API key checked on every request, answers
#            passed through and streamed ones flushed at once (scripts/bench/peers/caddy/
#            Caddyfile). It has no rate limits; its idle engine connections are raised.
# Not built here, see docs/benchmarks.md: llama-swap and olla. The Go module proxy that
# this project's machines reach refuses both modules (403); the script says so again at
# each run, so that a machine where they are served is noticed.
#
# Environment: ENGINE_ADDR (127.0.0.1:19100), PORTKEY_PORT (18787), CADDY_PORT (18788), SLUICE_BIN
# (a sluice binary to measure, used as it is; unset: bin/sluice, built from this checkout
# first so that a run never measures a stale binary), SLUICE_CACHE (where the peers are
# installed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/common.sh
. "$here/../common.sh"
cd "$here/../.."

ENGINE_ADDR=${ENGINE_ADDR:-127.0.0.1:19100}
PORTKEY_PORT=${PORTKEY_PORT:-18787}
PORTKEY_VERSION=1.15.2
CADDY_PORT=${CADDY_PORT:-18788}
CADDY_VERSION=2.11.9
CADDY_KEY=peer-bench-key # what the bench's requests to Caddy carry (--peer-header)
build_sluice=0
if [ -z "${SLUICE_BIN:-}" ]; then
	SLUICE_BIN=bin/sluice
	build_sluice=1
fi
install_only=0
if [ "${1:-}" = --install-only ]; then
	install_only=1
	shift
fi

# Go peers: check whether the module proxy serves them (it did not on any machine so far).
for m in github.com/mostlygeek/llama-swap github.com/thushan/olla; do
	if out=$(GOFLAGS=-mod=mod timeout 60 go list -m -versions "$m" 2>&1); then
		log "$m is served by the module proxy now ($out): it can be added to this script"
	else
		log "skipping $m: the module proxy refuses it ($(printf '%s' "$out" | head -1 | sed 's/.*: //'))"
	fi
done

# Portkey, from the lock file.
command -v node >/dev/null || { log "node is required for the Portkey peer (apt-get install nodejs npm)"; exit 1; }
pk="$SLUICE_CACHE/peers/portkey-$PORTKEY_VERSION"
if [ ! -f "$pk/node_modules/@portkey-ai/gateway/build/start-server.js" ] || [ "$here/peers/portkey/package-lock.json" -nt "$pk/node_modules/.package-lock.json" ]; then
	log "installing Portkey's gateway $PORTKEY_VERSION (npm, from the lock file)"
	mkdir -p "$pk"
	cp "$here/peers/portkey/package.json" "$here/peers/portkey/package-lock.json" "$pk/"
	(cd "$pk" && npm ci --ignore-scripts --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
fi

# Caddy, built from the Go module proxy.
cd_dir="$SLUICE_CACHE/peers/caddy-$CADDY_VERSION"
if [ ! -x "$cd_dir/caddy" ]; then
	log "building Caddy $CADDY_VERSION (go install, about a minute)"
	mkdir -p "$cd_dir"
	GOBIN="$cd_dir" GOFLAGS=-mod=mod go install "github.com/caddyserver/caddy/v2/cmd/caddy@v$CADDY_VERSION"
fi
[ "$install_only" = 1 ] && { log "installed: $pk $cd_dir"; exit 0; }

if [ "$build_sluice" = 1 ]; then
	make --no-print-directory build # the Makefile's flags (the version) included
elif [ ! -x "$SLUICE_BIN" ]; then
	echo "peers.sh: SLUICE_BIN=$SLUICE_BIN is not an executable" >&2
	exit 1
fi

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# wait_port waits until something listens on 127.0.0.1:$1.
wait_port() {
	for _ in $(seq 1 150); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.2
	done
	return 1
}

log "starting Portkey on 127.0.0.1:$PORTKEY_PORT (log: $pk/portkey.log)"
NODE_ENV=production node "$pk/node_modules/@portkey-ai/gateway/build/start-server.js" --port="$PORTKEY_PORT" --headless \
	>"$pk/portkey.log" 2>&1 &
pids+=($!)
wait_port "$PORTKEY_PORT" || { log "Portkey did not start:"; tail -20 "$pk/portkey.log" >&2; exit 1; }

log "starting Caddy on 127.0.0.1:$CADDY_PORT (log: $cd_dir/caddy.log)"
CADDY_PORT="$CADDY_PORT" CADDY_KEY="$CADDY_KEY" ENGINE_ADDR="$ENGINE_ADDR" XDG_DATA_HOME="$cd_dir/data" XDG_CONFIG_HOME="$cd_dir/config" \
	"$cd_dir/caddy" run --adapter caddyfile --config "$here/peers/caddy/Caddyfile" >"$cd_dir/caddy.log" 2>&1 &
pids+=($!)
wait_port "$CADDY_PORT" || { log "Caddy did not start:"; tail -20 "$cd_dir/caddy.log" >&2; exit 1; }

"$SLUICE_BIN" bench gateway --engine-addr "$ENGINE_ADDR" \
	--peer "portkey=http://127.0.0.1:$PORTKEY_PORT" \
	--peer-header "portkey=x-portkey-provider:openai" \
	--peer-header "portkey=x-portkey-custom-host:http://$ENGINE_ADDR/v1" \
	--peer "caddy=http://127.0.0.1:$CADDY_PORT" \
	--peer-header "caddy=Authorization:Bearer $CADDY_KEY" \
	"$@"
