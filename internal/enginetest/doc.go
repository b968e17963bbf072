// Package enginetest starts real engines for tests: llama-server and Ollama processes on
// loopback, serving the generated tiny model with the real Llama-2 vocabulary. Binaries
// and the vocabulary come from the cache that scripts/ fill ($SLUICE_CACHE, default
// ~/.cache/sluice) or from SLUICE_LLAMA_SERVER, SLUICE_OLLAMA and SLUICE_VOCAB.
//
// A missing engine FAILS the test: `make test` builds them first. Set
// SLUICE_ALLOW_MISSING_ENGINES=1 to skip such tests instead while iterating on a machine
// without them (never in CI).
package enginetest
