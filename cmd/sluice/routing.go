package main

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/cost"
	"github.com/sluice-llm/sluice/gateway"
	"github.com/sluice-llm/sluice/overflow"
	"github.com/sluice-llm/sluice/router"
	"github.com/sluice-llm/sluice/router/classify"
	"github.com/sluice-llm/sluice/scheduler"
)

// localBackends are the engines on this box (region local): the scheduler's.
func (s *engineSet) localBackends() map[string]scheduler.Backend {
	m := make(map[string]scheduler.Backend, len(s.list))
	for _, e := range s.list {
		if e.cfg.Local() {
			m[e.name] = e.backend
		}
	}
	return m
}

// remoteBackends are the engines off the box (cloud providers, by region), which the
// overflow stage calls directly, each with its concurrency limit and the list prices
// of its catalog entries.
func (s *engineSet) remoteBackends(cfg *config.Config, entries []router.Entry, log *slog.Logger) map[string]overflow.Remote {
	out := map[string]overflow.Remote{}
	for _, e := range s.list {
		if e.cfg.Local() {
			continue
		}
		limit := e.cfg.MaxConcurrency
		if limit <= 0 {
			limit = cfg.Routing.Overflow.MaxConcurrency
		}
		r := overflow.Remote{Backend: e.backend, Region: e.cfg.Region, MaxConcurrency: limit, Prices: map[string]overflow.Price{}}
		for _, en := range entries {
			if en.Backend != e.name {
				continue
			}
			if en.InputPrice == 0 && en.OutputPrice == 0 {
				log.Warn("remote model has no price: its requests are recorded as unpriced, cost unknown (set engines[].models[].price)",
					"engine", e.name, "model", en.Name)
			}
			r.Prices[en.Name] = overflow.Price{Input: en.InputPrice, Output: en.OutputPrice}
		}
		out[e.name] = r
	}
	return out
}

func modelPrice(m config.Model, table map[string]cost.CloudPrice) (overflow.Price, bool) {
	if m.Price != nil {
		return overflow.Price{Input: m.Price.Input, Output: m.Price.Output}, true
	}
	for _, n := range []string{m.Upstream, m.Name} {
		if p, ok := table[n]; ok {
			return overflow.Price{Input: p.Input, Output: p.Output}, true
		}
	}
	return overflow.Price{}, false
}

// routerOptions turns the routing section into the router's options, with the learned
// classifier behind "auto" (routing.auto.weights, or the embedded weights).
func routerOptions(cfg *config.Config) (router.Options, error) {
	r := cfg.Routing
	var m *classify.Model
	var err error
	if r.Auto.Weights != "" {
		m, err = classify.Load(r.Auto.Weights)
	} else {
		m, err = classify.Default()
	}
	if err != nil {
		return router.Options{}, fmt.Errorf("routing.auto.weights: %w", err)
	}
	return router.Options{Tiers: r.Tiers, DefaultTier: r.DefaultTier,
		Auto:       router.Auto{Weak: r.Auto.Weak, Strong: r.Auto.Strong, Threshold: r.Auto.Threshold},
		Remote:     r.Overflow.OverflowEnabled(),
		Classifier: m}, nil
}

// overflowStage wraps next (the scheduler) in the overflow stage.
func overflowStage(cfg *config.Config, next gateway.Scheduler, remote map[string]overflow.Remote, reg prometheus.Registerer, log *slog.Logger) *overflow.Stage {
	f, o := cfg.Routing.Fallback, cfg.Routing.Overflow
	return overflow.New(next, overflow.Options{Remote: remote, MaxAttempts: f.MaxAttempts, Backoff: f.Backoff,
		MaxBackoff: f.MaxBackoff, BudgetRatio: f.BudgetRatio, MinRetries: f.MinRetries,
		BreakerFailures: o.Breaker.Failures, BreakerCooldown: o.Breaker.Cooldown, MaxWait: o.MaxWait, Registry: reg, Logger: log})
}

// entryRouting copies a configured model's routing fields into a catalog entry.
func entryRouting(e *router.Entry, ec config.Engine, m config.Model, table map[string]cost.CloudPrice) {
	e.Region, e.Tier, e.ContextWindow, e.Caps = ec.Region, m.Tier, m.ContextWindow, router.ParseCaps(m.Capabilities)
	if !ec.Local() {
		if m.Upstream == "" {
			m.Upstream = m.Name
		}
		if p, ok := modelPrice(m, table); ok {
			e.InputPrice, e.OutputPrice = p.Input, p.Output
		}
	}
}
