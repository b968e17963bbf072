// Package sched is `sluice bench sched`: it compares the scheduler's placement policies
// (round-robin, least-loaded and sluice's prefix-affinity policy) on real llama-server
// processes running a generated tiny model, under a shared-prefix workload: many tenants,
// each with a long system prompt, Poisson arrivals near the engines' measured capacity.
//
// Every policy gets fresh engine processes (so none inherits another's warm KV cache),
// the whole sluice pipeline in this process (gateway, router pool, scheduler with that
// policy, llamacpp backends), and the identical arrival sequence (same seed), sent over
// HTTP to the gateway as streamed chat requests. Per request it records the time to the
// first content token (from the scheduled arrival: queueing counts), the completion and
// cached prompt tokens llama-server reports, and the engine and slot the scheduler chose.
// It can also run the scheduler simulator (scheduler/sim) at larger scale.
//
// sched may import gateway, router, scheduler, runtime/* and config; no package of
// sluice's request path may import it.
package sched
