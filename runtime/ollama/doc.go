// Package ollama is the backend for an Ollama server driven through its native API
// (/api/chat, /api/generate, /api/embed) with the official client,
// github.com/ollama/ollama/api.
//
// It owns the translation between sluice's vocabulary and Ollama's: messages, images,
// tool calls and tool results, tools, response_format and sampling options on the way
// in; text deltas, OpenAI-shaped tool calls, finish reasons and usage on the way out.
// The client pushes responses to a callback; the package turns that into a pull-based
// models.Stream with one goroutine per request, which Close cancels and waits for.
//
// Ollama does not always end an answer with done:true (it aborts a generation that
// repeats the same token text more than 30 times and just closes the stream): such an
// answer ends with finish reason "stop" and estimated usage when it produced output, and
// with an error when it produced none or the connection broke.
//
// It must not import gateway, scheduler or router.
package ollama
