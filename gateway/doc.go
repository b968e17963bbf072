// Package gateway is sluice's HTTP front end: a fasthttp server that speaks OpenAI's API
// (chat completions, completions, embeddings, models) to existing clients and SDKs, with
// streaming (SSE), authentication, body limits, health, readiness and Prometheus metrics.
//
// It is the only package that imports fasthttp's server side and the only place that maps
// errors to HTTP status codes. It consumes a Router and a Scheduler (interfaces declared
// here, filled in by cmd/sluice) and must not import runtime/*, scheduler or router.
package gateway
