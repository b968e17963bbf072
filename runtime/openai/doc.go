// Package openai is the backend for any engine or cloud API that speaks OpenAI's HTTP
// API: vLLM, SGLang, llama-server's /v1 endpoints, Ollama's /v1 endpoints, and the
// OpenAI-compatible clouds. It forwards the client's JSON body with only the fields it
// must change spliced in (model, stream_options, and llama-server's id_slot/cache_prompt),
// reads the engine's answer without re-encoding it, and fills in usage by counting tokens
// when the engine reports none.
//
// Options.Provider selects a cloud (cloud.go): OpenAI (Bearer key), Azure OpenAI (the
// api-key header, /openai/deployments/{deployment}/...?api-version=), Mistral (Bearer;
// the OpenAI-only fields Mistral refuses are dropped or renamed). A cloud backend is
// never probed: its Capacity is its configured concurrency, healthy unless the circuit
// breaker opened its circuit (SetCircuit, also available on local engines); its errors
// map through runtime/internal/cloud (429 and 503 → ErrOverloaded with Retry-After,
// context_length_exceeded → ErrInvalid with that code, credential errors without the
// provider's message). Package openaitest is a fake of the three clouds.
//
// It must not import gateway, scheduler or router.
package openai
