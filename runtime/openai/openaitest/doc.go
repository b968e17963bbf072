// Package openaitest is a fake OpenAI-compatible cloud for tests and benchmarks, in
// three flavours that differ where the real services differ:
//
//   - OpenAI: POST /v1/chat/completions with Authorization: Bearer; unknown fields
//     refused ("Unrecognized request argument supplied"); streamed chunks ending with
//     [DONE], usage in a last chunk with empty choices when stream_options.include_usage
//     is set (and "usage": null before it); errors as {"error":{message,type,param,code}},
//     context_length_exceeded for prompts over the window, rate_limit_exceeded 429s.
//   - Azure: POST /openai/deployments/{deployment}/chat/completions?api-version=... with
//     the api-key header; a stream that opens with prompt_filter_results; 429s with
//     retry-after and retry-after-ms; codes as strings ("429", "DeploymentNotFound").
//   - Mistral: POST /v1/chat/completions with Bearer; OpenAI-only fields (stream_options,
//     max_completion_tokens, seed, user, ...) refused with 422 extra_forbidden; usage on
//     the last streamed chunk; errors as {"object":"error","message","type","code"}.
//
// All simulate a cloud model (time to first token, tokens per second, a concurrency
// limit, scripted failures and errors mid-stream). Its tests drive each flavour with the
// official Go SDK (github.com/openai/openai-go/v3, its azure package for Azure).
//
// It must not import gateway, scheduler or router.
package openaitest
