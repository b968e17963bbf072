// Package geminitest is a fake Gemini API for tests and benchmarks. It speaks the
// documented wire format: POST /v1beta/models/{model}:generateContent and
// :streamGenerateContent (server-sent events with alt=sse, a streamed JSON array
// without), x-goog-api-key (or ?key=), GenerateContentResponse with candidates, parts,
// finishReason and usageMetadata, and errors as google.rpc.Status
// ({"error":{"code","message","status","details"}}). It validates requests the way
// the API does: unknown fields, roles, one data field per part, function responses
// right after the calls they answer, and (with ThoughtSignatures) Gemini 3's thought
// signatures on function calls sent back.
//
// It simulates a cloud model: time to first token and tokens per second (Latency), the
// input-token-count error for prompts over the limit, a concurrency limit answered with
// 429 RESOURCE_EXHAUSTED, and scripted failures (429 with RetryInfo, 503 UNAVAILABLE,
// 500, and errors in the middle of a stream). Its tests drive it with the official Go
// SDK (google.golang.org/genai) to prove the format.
//
// It must not import gateway, scheduler or router.
package geminitest
