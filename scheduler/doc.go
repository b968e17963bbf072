// Package scheduler decides which request runs where and when. Core holds every engine
// (its slots, the prompt each slot's KV cache holds, its load) and the waiting requests
// (a fair queue per priority class), and makes every decision: the engine and slot for a
// request (policy: filters and weighted scorers over one view of the state, with prefix
// affinity for llama-server's slots), which waiting request runs when a slot frees
// (work-conserving, fair across tenants, batch after interactive), and which request is
// refused (queue full, no engine, expected to miss its SLO: the saturation signal).
//
// Core is plain single-threaded code without clocks, so the simulator (scheduler/sim)
// runs it on virtual time. Scheduler runs it live under one mutex: the decision runs in
// the goroutine that arrives or in the one that frees a slot, with no goroutine hand-off
// on the fast path. Scheduler declares the Backend interface it drives. An engine that
// answers models.ErrOverloaded backs off for its Retry-After and stays in rotation; one
// that answers models.ErrUnavailable is marked down; the request either refused goes to
// another candidate at once. How a dispatched request ended (Outcome) decides whether its
// time feeds the saturation estimate and what its slot is taken to hold.
//
// It must not import gateway, router or runtime/*.
package scheduler
