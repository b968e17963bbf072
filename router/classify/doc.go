// Package classify is the classifier behind `model: "auto"`: it estimates, in a few
// microseconds and without calling any model, the probability that a request needs the
// strong model rather than the weak one, and says why in a few words.
//
// It owns the request features (length, turns, code, math, multi-step and constraint
// cues, tools, language, question words, hashed words), the learned model over them
// (logistic regression; its weights live in a JSON file, a default one embedded), the
// trainer behind `sluice router train`, the labelled-JSONL format it reads, the
// converters from RouteLLM's published evaluation data, and the RouteLLM-style evaluation
// (quality against the share of strong calls, PGR, APGR) behind `sluice router eval` and
// `sluice bench route`.
//
// Scoring (Model.Score) is the hot path: it reads a bounded prefix of the request's user
// and system text, allocates nothing and is safe for concurrent use. Mapping scores to
// tiers (thresholds) is the router's job, not this package's.
//
// It imports only models and the standard library; it must not import router, gateway,
// scheduler, runtime/* or config.
package classify
