// Package anthropic is the backend for Anthropic's Messages API (POST /v1/messages with
// x-api-key and anthropic-version headers), used as a cloud target for overflow and
// routing.
//
// It owns the translation between sluice's vocabulary (OpenAI-shaped) and Anthropic's:
// system and developer messages into the system prompt, tools (OpenAI function format)
// into tools with input_schema, tool_choice, tool calls and tool results into tool_use
// and tool_result blocks, images into base64 image blocks, stop sequences and sampling,
// and a default max_tokens (the API requires one). Answers come back as chunks with the
// structured fields filled in — text deltas, OpenAI-format tool-call deltas, finish
// reasons mapped (end_turn and stop_sequence → stop, max_tokens → length, tool_use →
// tool_calls) and usage — with Raw empty, so the gateway encodes the client's wire format.
//
// Errors map to sluice's categories through runtime/internal/cloud: 429 and the
// overloaded 529 (also as an in-stream error event) are ErrOverloaded with Retry-After,
// "prompt is too long" is ErrInvalid with code context_length_exceeded, credential
// errors never show the provider's message. A provider is not probed: Capacity is the
// configured concurrency, healthy unless a circuit breaker opened the circuit
// (SetCircuit). Package anthropictest is a fake server speaking the same wire format.
//
// It must not import gateway, scheduler or router.
package anthropic
