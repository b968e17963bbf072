// Package overflow is the stage between the router and the scheduler that decides where
// a request finally runs. It tries the target's local candidates through the scheduler
// (the next stage) and, when the scheduler refuses with models.ErrSaturated (local
// capacity would miss the SLO) or a target fails before its first token, moves down the
// router's fallbacks: other local models, and remote (cloud) engines of at least the
// requested tier. Remote engines are called directly, each behind a concurrency limit
// and a circuit breaker, and priced per token. Every candidate has already passed the
// key's residency filter in the router; the stage checks the region of each remote
// engine against the key's policy once more, where it opens it.
//
// A stream is opened and, when another target is left to try, read up to its first
// token before Open returns: a failure before any token reached the client becomes a
// fallback (bounded attempts, backoff and a retry budget shared by all requests); after
// the first token nothing is retried.
//
// It must not import gateway, router, scheduler or runtime/*.
package overflow
