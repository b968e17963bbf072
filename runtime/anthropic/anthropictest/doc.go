// Package anthropictest is a fake Anthropic Messages API for tests and benchmarks. It
// speaks the documented wire format (POST /v1/messages with x-api-key and
// anthropic-version; the message object; the event stream message_start,
// content_block_start/delta/stop with text_delta and input_json_delta, ping,
// message_delta, message_stop and error events; errors as
// {"type":"error","error":{"type","message"}}) and validates requests the way the API
// does: unknown fields, max_tokens required, roles, empty text blocks, tool_use /
// tool_result pairing, tool schemas.
//
// It simulates a cloud model: time to first token and tokens per second (Latency),
// prompts longer than the window ("prompt is too long"), a concurrency limit answered
// with 429, and scripted failures (429 with retry-after, 529 overloaded_error, 5xx, and
// error events in the middle of a stream). Its tests drive it with the official Go SDK
// (github.com/anthropics/anthropic-sdk-go) to prove the format.
//
// It must not import gateway, scheduler or router.
package anthropictest
