// Package fakecloud is a stand-in for an OpenAI-compatible cloud API (OpenAI, Azure
// OpenAI, Mistral) for tests and benchmarks: POST /v1/chat/completions and
// GET /v1/models in OpenAI's wire format, streaming (SSE chunks, tool-call deltas, the
// include_usage chunk) included, with realistic latency (time to first token and
// tokens per second), a context window, and the provider's error answers (429 with
// retry-after, 500, 503, context_length_exceeded) on demand. It records what it was
// sent, so tests can check where requests went.
//
// It must not import other sluice packages.
package fakecloud
