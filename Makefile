# sluice: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
SLUICE_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/sluice
export SLUICE_CACHE
BIN := bin/sluice
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: build run test engines llama-server ollama vocab model npm lint bench-gateway clean

build:
	@echo "[sluice] building $(BIN)"
	@$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/sluice

llama-server:
	@scripts/build-llama-server.sh >/dev/null

ollama:
	@scripts/build-ollama.sh >/dev/null

engines: llama-server ollama

vocab:
	@scripts/fetch-vocab.sh >/dev/null

# The demo models: a tiny llama-architecture chat model and an embedding variant with the
# real Llama-2 vocabulary, generated deterministically (about 9 MB each).
model: build vocab
	@test -f $(SLUICE_CACHE)/models/tiny.gguf || $(BIN) gen-model --out $(SLUICE_CACHE)/models/tiny.gguf
	@test -f $(SLUICE_CACHE)/models/tiny-embed.gguf || $(BIN) gen-model --embedding --out $(SLUICE_CACHE)/models/tiny-embed.gguf

# Serve the OpenAI API on 127.0.0.1:8080 with a llama-server that sluice runs.
run: build llama-server model
	@$(BIN) serve $(ARGS)

npm:
	@scripts/npm-deps.sh

lint:
	@echo "[sluice] gofmt + go vet"
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	@$(GO) vet ./...

# Every test, including end-to-end tests against real llama-server and Ollama processes
# and the official OpenAI SDKs (Go and npm). Engines are built and cached on first use.
test: engines vocab npm lint
	@echo "[sluice] go test -race ./..."
	@SLUICE_VOCAB=$(SLUICE_CACHE)/vocab/llama2/tokenizer.json SLUICE_REQUIRE_VOCAB=1 $(GO) test -race -count=1 -timeout 20m ./...

bench-gateway: build
	@$(BIN) bench gateway $(ARGS)

clean:
	rm -rf bin
