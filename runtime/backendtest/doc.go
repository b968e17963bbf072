// Package backendtest is the conformance suite every backend passes: the same tests run
// against llama-server, Ollama and OpenAI-compatible engines, each a real process on
// loopback, so the gateway can treat all backends alike.
package backendtest
