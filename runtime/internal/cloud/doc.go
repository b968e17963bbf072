// Package cloud holds what the cloud-provider backends (runtime/openai in its cloud
// modes, runtime/anthropic, runtime/gemini) share: the capacity of a provider that is
// never probed (a configured concurrency, healthy unless a circuit is open), the mapping
// of a provider's HTTP status to sluice's error categories, Retry-After parsing,
// transport-error mapping, and small wire helpers (tool-call ids, image MIME types).
//
// Provider-specific reading of error bodies (Anthropic's error.type, Gemini's
// google.rpc status, OpenAI's error.code) stays in each backend's package; this package
// only owns the table they all end in, so the categories agree across providers.
//
// It must not import gateway, scheduler or router.
package cloud
