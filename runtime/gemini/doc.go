// Package gemini is the backend for Google's Gemini API (generateContent, and
// streamGenerateContent with alt=sse, authenticated with x-goog-api-key), used as a
// cloud target for overflow and routing.
//
// It owns the translation between sluice's vocabulary (OpenAI-shaped) and Gemini's:
// messages into contents with user/model roles and parts (text, inlineData images,
// functionCall, functionResponse), system and developer messages into
// systemInstruction, tools into functionDeclarations (the JSON schema as
// parametersJsonSchema), tool_choice into toolConfig, sampling, stop sequences and
// response_format into generationConfig. Answers come back as chunks with the
// structured fields filled in (Raw empty): text, OpenAI-format tool-call deltas,
// finishReason mapped (STOP → stop, or tool_calls after function calls; MAX_TOKENS →
// length; safety reasons → content_filter) and usageMetadata as Usage (thinking tokens
// count as completion tokens, as Gemini bills them).
//
// Gemini attaches a thought signature to the function calls of thinking models and
// wants it back in later turns; it travels inside the OpenAI tool call's id (joined
// with "__thought__"), which clients return verbatim.
//
// Errors map through runtime/internal/cloud: 429 RESOURCE_EXHAUSTED is ErrOverloaded
// with the RetryInfo delay, 503 UNAVAILABLE too; the input-token-count message is
// ErrInvalid with code context_length_exceeded; a bad key (400 API_KEY_INVALID)
// is a credential error. Capacity is the configured concurrency, healthy unless a
// circuit breaker opened the circuit (SetCircuit). Package geminitest is a fake server
// speaking the same wire format.
//
// It must not import gateway, scheduler or router.
package gemini
