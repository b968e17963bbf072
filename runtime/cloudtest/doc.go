// Package cloudtest is what the fake cloud providers (runtime/openai/openaitest,
// runtime/anthropic/anthropictest, runtime/gemini/geminitest) share: latency shaping
// (time to first token, tokens per second), the deterministic reply text and token
// counts, a queue of scripted failures, request statistics and an SSE writer. Each
// fake owns its provider's wire format; this package knows none. Benchmarks use the fakes
// to simulate a cloud (Latency{TTFT: 400 * time.Millisecond, TokensPerSecond: 60}).
//
// It must not import gateway, scheduler or router.
package cloudtest
