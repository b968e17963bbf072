// Package router decides where a request goes. It resolves the model a client names
// (or one of its aliases, `auto`, `auto-<tier>`, or a tier forced with X-Sluice-Tier)
// to a models.Target: the chosen model's candidate backends and, in Target.Fallbacks,
// every other backend and model of at least the requested tier the request may go to
// when those cannot take it. Residency comes first: each key policy (any, eu,
// local-only) has its own precomputed plans holding only the candidates it allows, so
// nothing later (overflow, fallbacks) can choose outside them. The key's model and tier
// lists, the capabilities a request uses (tools, vision, JSON) and its estimated length
// against context windows filter next. `auto` asks a Classifier (a heuristic built in;
// router/classify provides a learned one) and explains itself in Trace.Route.
//
// It must not import gateway, scheduler, runtime/* or the stages.
package router
