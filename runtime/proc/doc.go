// Package proc supervises engine processes (llama-server, Ollama): it starts one on a
// loopback port, waits until its health URL answers, captures its output with a prefix,
// restarts it with backoff when it dies, and drains it before stopping. Each process is
// an explicit state machine; every change goes through the transition table, so an
// impossible change is a bug that shows up as an error, not as silent drift.
//
// It must not import gateway, scheduler, router or other runtime packages.
package proc
