// Package llamacpp is the backend for llama.cpp's llama-server. It speaks to the
// server's OpenAI-compatible endpoints (through runtime/openai, with llama-server's own
// id_slot and cache_prompt fields), reads /slots and /health for capacity, and, when
// given a binary and a GGUF file, runs the server itself under runtime/proc.
//
// It must not import gateway, scheduler or router.
package llamacpp
