// Package e2e holds sluice's end-to-end tests: the gateway, router, scheduler and
// backends wired as in production, in front of real llama-server and Ollama processes
// running the generated tiny model, driven by the official OpenAI SDKs (Go and npm).
package e2e
