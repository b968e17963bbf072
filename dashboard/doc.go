// Package dashboard is the live page sluice serves at /dashboard: a Sampler reads the
// Prometheus registry every few seconds and keeps a ring of derived points (requests
// per second, time to first token, engines and their slots, GPUs, cache hit rate,
// compression savings, routing mix, overflow, cost per million tokens, savings), and the
// page (embedded HTML, CSS and hand-written JavaScript that draws on canvas; no build
// step, no network) polls them as JSON with the admin key.
//
// It reads metrics only by name from a prometheus.Gatherer, so it imports no other
// sluice package; it must not import gateway, scheduler, router or runtime/*.
package dashboard
