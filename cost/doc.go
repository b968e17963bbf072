// Package cost prices every token. Local work costs hardware time: each engine has a
// price per hour (its GPUs' share at the configured GPU-hour prices, or a CPU box price),
// and a Meter divides that cost among the requests the engine serves at each instant
// (n requests in flight each accrue 1/n of the rate), splitting each request's cost into
// prompt (until its first token) and completion (after it); time with nothing in flight is
// idle cost, reported apart. The Accountant compares every request with what the same
// tokens would cost on a reference cloud model (list prices) and exports cost, tokens,
// cost per million tokens and savings as Prometheus metrics.
//
// It must not import gateway, scheduler, router or runtime/*.
package cost
