// Package route is `sluice bench route`: the benchmark of routing, in parts whose
// results merge into one report (one table per part, one JSON object for all).
//
// Part "classify" (classify.go) measures the classifier behind model "auto": its latency
// per request and its RouteLLM-style evaluation on MT-Bench (held out of training) next
// to a keyword-regex router, random routing and the oracle. Further parts (overflow under
// load) add a Section of their own the same way.
//
// route may import router/classify, router, gateway, scheduler, runtime/* and config; no
// package of sluice's request path may import it.
package route
