// Package sim is a deterministic discrete-event simulator of a fleet of GPU engines
// (one continuous-batching engine per GPU, shaped like llama-server) driven by the real
// scheduling code: scheduler.Core makes every queueing and placement decision, exactly as
// the live scheduler calls it, on virtual time.
//
// It owns the engine model (batched steps with chunked prefill and one decode token per
// running sequence, a per-slot prefix cache as the engine really keeps it, an optional
// engine-wide host prompt cache, a KV-capacity admission limit), the synthetic
// shared-prefix workload (tenants with their own system prompts, Poisson arrivals, uniform
// or Zipf tenant popularity), and the measurements (time to first token percentiles,
// goodput against an SLO, output throughput, prefix hit ratio). It is used by tests, by
// `sluice bench sched` and for capacity planning beyond one box: 64 GPUs x 8 slots and
// 5,000 requests simulate in under 0.1 s on two cores (longer when the fleet is
// overloaded and many tenants wait: the core's fair queue then dominates).
//
// The same Config always gives the same Result: all randomness comes from one PCG seeded
// with Workload.Seed, simultaneous events run in a fixed order, and no map is iterated
// where its order could matter. No wall clock is read.
//
// It imports scheduler and models only; nothing on sluice's request path may import it.
package sim
