#!/usr/bin/env bash
# Installs the npm packages the end-to-end tests use (the official OpenAI and Anthropic SDKs) into
# e2e/js/node_modules, from the lock file. npm's own cache (~/.npm) makes warm runs fast.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
cd "$here/../e2e/js"
if [ -d node_modules/openai ] && [ -d node_modules/@anthropic-ai/sdk ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
	exit 0
fi
log "installing npm packages for the SDK tests"
npm ci --no-audit --no-fund --loglevel=error >/dev/null
