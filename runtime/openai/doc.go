// Package openai is the backend for any engine or cloud API that speaks OpenAI's HTTP
// API: vLLM, SGLang, llama-server's /v1 endpoints, Ollama's /v1 endpoints, OpenAI itself.
// It forwards the client's JSON body with only the fields it must change spliced in
// (model, stream_options, and llama-server's id_slot/cache_prompt), reads the engine's
// answer without re-encoding it, and fills in usage by counting tokens when the engine
// reports none.
//
// It must not import gateway, scheduler or router.
package openai
