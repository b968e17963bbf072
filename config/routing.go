package config

import (
	"fmt"
	"strings"
	"time"
)

// Routing configures tiers, the `auto` model, fallbacks and cloud overflow. Each model
// has a tier (ModelRouting.Tier) and each engine a region (Engine.Region).
type Routing struct {
	// Tiers are the model tiers, weakest and cheapest first (default small, large,
	// frontier). "At least tier X" means X or a later one.
	Tiers []string `yaml:"tiers"`
	// DefaultTier is the tier of models that name none (default: the first tier).
	DefaultTier string `yaml:"default_tier"`
	// Auto decides the tier of `model: "auto"` requests.
	Auto Auto `yaml:"auto"`
	// Fallback bounds the retries after a target fails before the first token.
	Fallback Fallback `yaml:"fallback"`
	// Overflow sends requests to cloud targets when local capacity would miss the SLO.
	Overflow Overflow `yaml:"overflow"`
}

// Auto maps the classifier's score (the probability that a request needs the strong
// model) to a tier: Strong at or above Threshold, Weak below it.
type Auto struct {
	Weak   string `yaml:"weak"`   // default: the first tier
	Strong string `yaml:"strong"` // default: the second tier (the first if only one)
	// Threshold is the score at or above which "auto" picks Strong. The default, 0.23,
	// sends about a quarter of requests to the strong tier with the embedded classifier
	// (its score's 75th percentile on MT-Bench's first turns; see docs/routing.md).
	Threshold float64 `yaml:"threshold"`
	// Weights is a classifier weights file from `sluice router train` (default: the
	// weights embedded in sluice, trained on RouteLLM's MMLU and GSM8K data).
	Weights string `yaml:"weights"`
}

// Fallback bounds retries on other targets.
type Fallback struct {
	// MaxAttempts is how many targets one request may be opened on (default 3).
	MaxAttempts int `yaml:"max_attempts"`
	// Backoff is the wait before the second attempt, doubled for each later one up to
	// MaxBackoff (defaults 50ms and 1s); a request's deadline cuts it short.
	Backoff    time.Duration `yaml:"backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// BudgetRatio caps retries at this share of requests (default 0.2), with a reserve
	// of MinRetries (default 10) so that a quiet gateway can still retry.
	BudgetRatio float64 `yaml:"budget_ratio"`
	MinRetries  int     `yaml:"min_retries"`
}

// Overflow configures requests leaving the box's engines for remote (cloud) engines.
type Overflow struct {
	// Enabled lets saturated or failing local work go to remote engines of at least the
	// requested tier that the key's residency policy allows (default true).
	Enabled *bool `yaml:"enabled"`
	// MaxConcurrency caps requests in flight on each remote engine that sets no
	// max_concurrency of its own (default 32).
	MaxConcurrency int `yaml:"max_concurrency"`
	// MaxWait bounds how long an interactive request that may overflow waits for its
	// first local token, from its arrival; past it, it goes to the cloud (default 0:
	// no bound, the scheduler's SLO estimate alone decides). Set it to the TTFT you
	// promise minus the cloud's own TTFT.
	MaxWait time.Duration `yaml:"max_wait"`
	// Breaker opens a remote engine's circuit after Failures consecutive failures and
	// lets one probe through after Cooldown (defaults 5 and 30s).
	Breaker Breaker `yaml:"breaker"`
}

// Breaker is a circuit breaker's thresholds.
type Breaker struct {
	Failures int           `yaml:"failures"`
	Cooldown time.Duration `yaml:"cooldown"`
}

// ModelRouting is a model's tier, context window, capabilities and price (inline in
// Model).
type ModelRouting struct {
	Tier string `yaml:"tier"` // default routing.default_tier
	// ContextWindow in tokens (default: the engine's context for llama-server; 0:
	// unknown, never checked).
	ContextWindow int `yaml:"context_window"`
	// Capabilities the model has: tools, vision, json. Empty: not declared (every
	// request may go to it).
	Capabilities []string `yaml:"capabilities"`
	// Price per million input and output tokens, for remote models (default: the
	// pricing.cloud entry for the upstream name or the name). Local models are priced
	// by GPU-seconds instead.
	Price *CloudPrice `yaml:"price"`
}

// Capabilities a model may declare.
var capabilities = []string{"tools", "vision", "json"}

// DefaultTiers is the tier list when none is configured.
func DefaultTiers() []string { return []string{"small", "large", "frontier"} }

// OverflowEnabled reports whether overflow is on.
func (o Overflow) OverflowEnabled() bool { return o.Enabled == nil || *o.Enabled }

// Local reports whether the engine runs on this box (region local).
func (e *Engine) Local() bool { return e.Region == "" || e.Region == RegionLocal }

func (r *Routing) applyDefaults(c *Config) {
	if len(r.Tiers) == 0 {
		r.Tiers = DefaultTiers()
	}
	if r.DefaultTier == "" {
		r.DefaultTier = r.Tiers[0]
	}
	if r.Auto.Weak == "" {
		r.Auto.Weak = r.Tiers[0]
	}
	if r.Auto.Strong == "" {
		r.Auto.Strong = r.Tiers[min(1, len(r.Tiers)-1)]
	}
	if r.Auto.Threshold == 0 {
		r.Auto.Threshold = 0.23
	}
	f := &r.Fallback
	if f.MaxAttempts == 0 {
		f.MaxAttempts = 3
	}
	if f.Backoff == 0 {
		f.Backoff = 50 * time.Millisecond
	}
	if f.MaxBackoff == 0 {
		f.MaxBackoff = time.Second
	}
	if f.BudgetRatio == 0 {
		f.BudgetRatio = 0.2
	}
	if f.MinRetries == 0 {
		f.MinRetries = 10
	}
	o := &r.Overflow
	if o.MaxConcurrency == 0 {
		o.MaxConcurrency = 32
	}
	if o.Breaker.Failures == 0 {
		o.Breaker.Failures = 5
	}
	if o.Breaker.Cooldown == 0 {
		o.Breaker.Cooldown = 30 * time.Second
	}
	for i := range c.Engines {
		e := &c.Engines[i]
		if e.Region == "" && !remoteURL(e) {
			e.Region = RegionLocal
		}
		for j := range e.Models {
			m := &e.Models[j]
			if m.Tier == "" {
				m.Tier = r.DefaultTier
			}
			if m.ContextWindow == 0 && e.Kind == "llamacpp" {
				m.ContextWindow = e.Context
			}
			if m.Price == nil && !e.Local() {
				for _, n := range []string{m.Upstream, m.Name} {
					if p, ok := c.Pricing.Cloud[n]; ok {
						m.Price = &p
						break
					}
				}
			}
		}
	}
}

// remoteURL reports whether an engine may run off this box: it has a URL whose host is
// not loopback or private, or it is of a kind sluice does not run itself and names no
// URL (a cloud provider's default endpoint). Such an engine must name its region.
func remoteURL(e *Engine) bool {
	if e.URL == "" {
		return e.Kind != "llamacpp" && e.Kind != "ollama" && e.Kind != "openai"
	}
	return offBoxURL(e.URL)
}

func (r *Routing) validate(c *Config, bad func(path, format string, args ...any)) {
	tiers := map[string]bool{}
	for i, t := range r.Tiers {
		if t == "" || strings.ContainsAny(t, " ;,=") || t == "auto" {
			bad(fmt.Sprintf("routing.tiers[%d]", i), "%q is not a tier name (letters, digits, - and _)", t)
		}
		if tiers[t] {
			bad(fmt.Sprintf("routing.tiers[%d]", i), "%q is listed twice", t)
		}
		tiers[t] = true
	}
	tier := func(path, t string) {
		if !tiers[t] {
			bad(path, "unknown tier %q; routing.tiers lists %s", t, strings.Join(r.Tiers, ", "))
		}
	}
	tier("routing.default_tier", r.DefaultTier)
	tier("routing.auto.weak", r.Auto.Weak)
	tier("routing.auto.strong", r.Auto.Strong)
	if r.Auto.Threshold < 0 || r.Auto.Threshold > 1 {
		bad("routing.auto.threshold", "must be in [0, 1], got %g", r.Auto.Threshold)
	}
	f := r.Fallback
	if f.MaxAttempts < 1 || f.MaxAttempts > 10 {
		bad("routing.fallback.max_attempts", "must be between 1 and 10, got %d", f.MaxAttempts)
	}
	if f.Backoff < 0 || f.MaxBackoff < f.Backoff {
		bad("routing.fallback.backoff", "must be >= 0 and at most max_backoff")
	}
	if f.BudgetRatio < 0 || f.BudgetRatio > 1 {
		bad("routing.fallback.budget_ratio", "must be in [0, 1], got %g", f.BudgetRatio)
	}
	if f.MinRetries < 0 {
		bad("routing.fallback.min_retries", "must not be negative")
	}
	if r.Overflow.MaxWait < 0 {
		bad("routing.overflow.max_wait", "must not be negative")
	}
	if r.Overflow.MaxConcurrency < 1 {
		bad("routing.overflow.max_concurrency", "must be at least 1")
	}
	if r.Overflow.Breaker.Failures < 1 || r.Overflow.Breaker.Cooldown <= 0 {
		bad("routing.overflow.breaker", "failures must be at least 1 and cooldown positive")
	}
	for i, e := range c.Engines {
		p := fmt.Sprintf("engines[%d]", i)
		switch {
		case e.Region == "":
			bad(p+".region", "is required for an engine off this box (%s): local if it runs here or on your network, else the provider region (eu, us, ...)", e.Name)
		case strings.ToLower(e.Region) != e.Region || strings.ContainsAny(e.Region, " ;,="):
			bad(p+".region", "%q must be a lower-case region name such as local, eu or us", e.Region)
		}
		for j, m := range e.Models {
			mp := fmt.Sprintf("%s.models[%d]", p, j)
			tier(mp+".tier", m.Tier)
			if m.ContextWindow < 0 {
				bad(mp+".context_window", "must not be negative")
			}
			for k, cp := range m.Capabilities {
				ok := false
				for _, known := range capabilities {
					ok = ok || cp == known
				}
				if !ok {
					bad(fmt.Sprintf("%s.capabilities[%d]", mp, k), "%q is not one of %s", cp, strings.Join(capabilities, ", "))
				}
			}
			if m.Price != nil && (m.Price.Input < 0 || m.Price.Output < 0) {
				bad(mp+".price", "prices must not be negative")
			}
		}
	}
}
