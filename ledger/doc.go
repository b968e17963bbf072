// Package ledger keeps sluice's books: one record per request (key, tenant, user,
// feature, model, target, region, cache status, tokens before and after compression,
// latency, TTFT, marginal cost, reference costs, status), API keys kept in the store
// (hashed) beside those in the config file, rate limits and budgets per key, hardware
// cost per minute for effective cost, and usage reports with savings split by cause.
//
// A record is appended to a per-process write-ahead journal before the request is
// acknowledged (Ledger.Add), then written to the Store in batches by Ledger.Run, off the
// request path. The default Store is SQLite (WAL; several processes may share the file);
// the Store interface is what a PostgreSQL store would implement. Budget is a stage (the
// scheduler's Open shape) that reserves a request's estimate against its key's limits
// before dispatch; the reservation is replaced by the actual figures when the record is
// stored. KeyRing resolves bearer keys on the hot path from an atomic snapshot.
//
// Per-key, per-user and per-feature figures live here, never in metric labels. The
// package must not import gateway, scheduler, router, runtime/*, cost or config.
package ledger
