// Package cache is the answer cache: a stage with the scheduler's shape
// (Open(ctx, Target, *Request) (models.Stream, error)) in front of the next stage. A hit
// comes back as a replayed models.Stream that the gateway writes like any engine's
// answer, at zero cost; a miss opens the next stage and keeps a copy of the answer as it
// streams by, stored when it completes.
//
// Two lookups: exact (a hash of the canonical request: tenant, model, messages, tools,
// response format, every sampling parameter) and semantic (the last user turn embedded
// and searched in a nearest-neighbour index scoped to the tenant, the model and a digest
// of everything else in the request), the latter checked by false-hit guards (negation,
// numbers, dates, names, opposite key words, question kind, competing candidates,
// swapped subjects). Stores: in memory, an embedded bbolt file (survives restarts) and
// Redis (shared by replicas, which follow each other's writes). Embedders: a built-in
// one that needs no model, or an engine's embeddings endpoint.
//
// Everything fails open: a store or embedder error is a miss (and a metric).
//
// It must not import gateway, router, scheduler or runtime/*.
package cache
