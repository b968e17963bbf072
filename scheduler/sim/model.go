package sim

import (
	"errors"
	"fmt"
	"time"

	"github.com/sluice-llm/sluice/scheduler"
)

// EngineModel is the cost model of one engine (one GPU). Each step of the engine's loop
// runs one batch: every running sequence either processes up to PrefillChunk tokens of
// its prompt or decodes one token, and the step takes
//
//	StepBase + PerDecodeToken x decoding sequences + PerPrefillToken x prompt tokens.
//
// A sequence's first token comes out at the end of the step that finishes its prompt.
type EngineModel struct {
	Slots           int           // sequences per engine (llama-server --parallel)
	StepBase        time.Duration // fixed cost of one batched decoding step
	PerDecodeToken  time.Duration // added per sequence decoding in the step
	PerPrefillToken time.Duration // per prompt token processed (prefill), chunked into the steps
	PrefillChunk    int           // prompt tokens processed per step per sequence (default 512)
	// KVTokens is the KV capacity in tokens per engine (0: unlimited). A sequence
	// reserves its prompt plus its output when it joins the batch; one that does not fit
	// waits (in its slot) until running sequences finish.
	KVTokens int
	// HostCache is an engine-wide prompt cache (llama-server --cache-ram > 0): a prompt
	// evicted from a slot is kept in host memory, and any slot can restore the longest
	// prefix the engine saw recently.
	HostCache bool
	// HostCacheTokens bounds the host cache (default 4 x KVTokens, or 262,144 tokens
	// when KVTokens is unlimited); least recently used prompts are dropped first.
	HostCacheTokens int
	// RequestOverhead is per-request latency outside the batch (HTTP, chat template,
	// tokenization): the sequence joins the batch that long after dispatch. It costs
	// no GPU time.
	RequestOverhead time.Duration
	// RequestBusy is engine time every request costs once, in the step that starts its
	// prompt, cached or not (on llama-server with the tiny CPU model: evaluating the
	// uncached tail in a small batch and the first logits, ~35 ms a request on the 2-vCPU
	// machine with two engines, measured by `sluice bench sched`). It delays the whole
	// batch, unlike RequestOverhead.
	RequestBusy time.Duration
}

// DefaultEngine resembles llama-server with a 7B model in F16 on one H100, 8 slots of
// 8,192 tokens of context, host prompt cache off (as `sluice bench sched` runs it; set
// HostCache for llama-server's own default --cache-ram 8192).
//
// Sources and assumptions: llama.cpp's CUDA numbers for LLaMA 7B F16 (llama-bench in
// ggml-org/llama.cpp PR #6017 on A100: pp512 8.4k tok/s, pp2048 14.7k tok/s; PR #4766 on
// RTX 4090: pp512 11k tok/s, tg128 61 tok/s) put prompt processing on an H100 near
// 10,000 tok/s (0.1 ms per token) and single-stream decoding near 80 tok/s, memory-bound
// (14 GB of weights read per step at ~3 TB/s is ~5 ms, plus kernel launches and
// sampling): a 12 ms step. Batched decoding is nearly free per extra sequence while the
// weights dominate (batched-bench in PR #3776): 0.2 ms per sequence. Prompt chunks of
// 512 tokens match llama-server's default micro-batch (-ub 512). About 1 ms of HTTP and
// tokenization precedes each request.
func DefaultEngine() EngineModel {
	return EngineModel{
		Slots:           8,
		StepBase:        12 * time.Millisecond,
		PerDecodeToken:  200 * time.Microsecond,
		PerPrefillToken: 100 * time.Microsecond,
		PrefillChunk:    512,
		KVTokens:        8 * 8192,
		RequestOverhead: time.Millisecond,
	}
}

// TinyCPUEngine matches llama-server running the generated tiny model (dim 64, 2 layers,
// 32,000-token vocabulary) with one thread on this project's 2-core CPU machine, 4 slots
// of 2,048 tokens, host cache off (shared/notes/cpu-backends.md): cold prefill of a
// 1,500-token prompt ~50-75 ms, a reused prefix ~10-15 ms, ~1,400 tok/s decoding one
// stream. Decoding is dominated by the 32,000 x 64 output layer, which prefill computes
// only for the last token: so a decoded token costs ~10x a prompt token. The model:
// 10 ms of request overhead + 3 steps x 0.35 ms + 1,500 x 33 us = 60.5 ms cold, ~11 ms
// reused, and 0.35 + 0.36 ms per single-stream step = 1,400 tok/s.
func TinyCPUEngine() EngineModel {
	return EngineModel{
		Slots:           4,
		StepBase:        350 * time.Microsecond,
		PerDecodeToken:  360 * time.Microsecond,
		PerPrefillToken: 33 * time.Microsecond,
		PrefillChunk:    512,
		KVTokens:        4 * 2048,
		RequestOverhead: 10 * time.Millisecond,
	}
}

// Workload is the synthetic traffic: Tenants each own a system prompt of SystemTokens
// tokens; a request is its tenant's system prompt plus UserTokens unique tokens and asks
// for OutputTokens tokens (generation never stops early).
type Workload struct {
	Tenants      int // default 1
	SystemTokens int
	UserTokens   int
	OutputTokens int // default 1
	Requests     int
	// Rate is arrivals per second (Poisson); if 0, Load is used.
	Rate float64
	// Load is the arrival rate as a fraction of Capacity (with no prefix reuse), e.g. 0.9.
	Load float64
	// TenantSkew is 0 for uniform tenants, or the Zipf exponent of tenant popularity.
	TenantSkew float64
	Seed       uint64
	// Clients, when positive, makes the run a closed loop instead: that many clients each
	// send their next request the moment their last one completes (Rate and Load are
	// ignored; Result.Rate is the achieved completions per second). This is how `sluice
	// bench sched` measures capacity on real engines: a queue always waits, but a bounded
	// one.
	Clients int
}

// Config is one simulation.
type Config struct {
	GPUs     int // engines (one per GPU)
	Engine   EngineModel
	Policy   scheduler.Policy // default scheduler.PolicySluice
	Workload Workload
	// SLO is the time-to-first-token target for goodput (default 2s). It is not given
	// to the core: no request is refused as saturated, so every request completes.
	SLO time.Duration
	// TokensPerBlock is how many tokens one 256-byte prefix block holds (default 64).
	TokensPerBlock int
	// KVBudget tells the core each engine's KVTokens (scheduler.EngineOptions.KVTokens,
	// set for engines whose sequences share one KV cache, such as vLLM), so it holds back
	// work that would not fit instead of the engine. Off, as sluice runs llama-server.
	KVBudget bool
	// NoPrefixWait turns off the core's cost-aware waiting (scheduler.Config.NoPrefixWait).
	NoPrefixWait bool
}

// Result is one simulation's measurements.
type Result struct {
	Policy             string
	GPUs               int
	Requests           int
	Completed          int
	TTFTp50            time.Duration // arrival to first token (queueing included)
	TTFTp90            time.Duration
	TTFTp99            time.Duration
	OutputTokensPerSec float64
	Goodput            float64       // fraction of requests whose TTFT met the SLO
	PrefixHitRatio     float64       // prompt tokens served from cache / prompt tokens
	Simulated          time.Duration // virtual time from the first arrival to the last completion
	Rate               float64       // arrivals per second offered
	OutputTokens       int64         // tokens generated in all
}

// Defaults.
const (
	DefaultSLO            = 2 * time.Second
	DefaultTokensPerBlock = 64
	DefaultPrefillChunk   = 512
	// RefreshEvery is how often the simulated scheduler probes its engines (the live
	// scheduler's default): GPU utilization and KV use go to the core then.
	RefreshEvery = 2 * time.Second
)

// fill applies the defaults and checks the configuration.
func (c Config) fill() (Config, error) {
	if c.Policy == "" {
		c.Policy = scheduler.PolicySluice
	}
	if c.SLO <= 0 {
		c.SLO = DefaultSLO
	}
	if c.TokensPerBlock <= 0 {
		c.TokensPerBlock = DefaultTokensPerBlock
	}
	e := &c.Engine
	if e.PrefillChunk <= 0 {
		e.PrefillChunk = DefaultPrefillChunk
	}
	if e.HostCacheTokens <= 0 {
		e.HostCacheTokens = 4 * e.KVTokens
		if e.KVTokens <= 0 {
			e.HostCacheTokens = 1 << 18
		}
	}
	w := &c.Workload
	if w.Tenants <= 0 {
		w.Tenants = 1
	}
	if w.OutputTokens <= 0 {
		w.OutputTokens = 1
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("sim: "+format, args...)) }
	switch c.Policy {
	case scheduler.PolicySluice, scheduler.PolicyLeastLoaded, scheduler.PolicyRoundRobin:
	default:
		bad("policy: unknown %q", c.Policy)
	}
	if c.GPUs < 1 {
		bad("gpus: need at least 1, got %d", c.GPUs)
	}
	if e.Slots < 1 {
		bad("engine.slots: need at least 1, got %d", e.Slots)
	}
	if e.StepBase <= 0 || e.PerDecodeToken < 0 || e.PerPrefillToken < 0 || e.RequestOverhead < 0 || e.RequestBusy < 0 {
		bad("engine: step base must be positive, per-token costs and overheads not negative")
	}
	if w.SystemTokens < 0 || w.UserTokens < 0 || w.SystemTokens+w.UserTokens < 1 {
		bad("workload: a prompt needs at least 1 token (system %d, user %d)", w.SystemTokens, w.UserTokens)
	}
	if need := w.SystemTokens + w.UserTokens + w.OutputTokens; e.KVTokens > 0 && need > e.KVTokens {
		bad("engine.kv_tokens: %d cannot hold one request of %d tokens", e.KVTokens, need)
	}
	if w.Requests < 1 {
		bad("workload.requests: need at least 1, got %d", w.Requests)
	}
	if w.Rate < 0 || w.Load < 0 || (w.Rate == 0 && w.Load == 0 && w.Clients <= 0) {
		bad("workload: set a positive rate or load")
	}
	if w.TenantSkew < 0 {
		bad("workload.tenant_skew: must not be negative, got %v", w.TenantSkew)
	}
	return c, errors.Join(errs...)
}

// Capacity estimates the requests per second the fleet sustains with every slot busy and
// no prefix reuse: per request, an engine spends its prompt's prefill and its decode
// tokens, plus its share (1/concurrency) of the fixed cost of every step it is in, where
// concurrency is the slots, or fewer if the KV capacity holds fewer requests. Workload.Load
// is a fraction of this.
func Capacity(cfg Config) float64 {
	cfg, _ = cfg.fill() // defaults only: an estimate needs no request count or rate
	e, w := cfg.Engine, cfg.Workload
	if cfg.GPUs < 1 || w.SystemTokens+w.UserTokens < 1 {
		return 0
	}
	prompt := w.SystemTokens + w.UserTokens
	conc := max(e.Slots, 1)
	if e.KVTokens > 0 {
		conc = max(1, min(conc, e.KVTokens/(prompt+w.OutputTokens)))
	}
	steps := (prompt+e.PrefillChunk-1)/e.PrefillChunk + w.OutputTokens - 1
	perReq := e.RequestBusy.Seconds() + float64(prompt)*e.PerPrefillToken.Seconds() +
		float64(w.OutputTokens-1)*e.PerDecodeToken.Seconds() +
		float64(steps)*e.StepBase.Seconds()/float64(conc)
	if perReq <= 0 {
		return 0
	}
	return float64(cfg.GPUs) / perReq
}
