package sched

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/scheduler"
)

// Config sets up a run. Zero values take the defaults documented on each field.
type Config struct {
	// Engines is the number of llama-server processes (default 2), each with
	// SlotsPerEngine slots (--parallel, default 8) and Threads threads (-t, default 1).
	Engines, SlotsPerEngine, Threads int
	// Context is the context per slot in tokens (default: the prompt plus the output
	// rounded up to a power of two, at least 2048); -c gets Context*SlotsPerEngine.
	Context int
	// CacheRAM is llama-server's --cache-ram in MiB (default 0: off, so only the slots
	// hold prefixes; -1 leaves llama-server's own default).
	CacheRAM int
	// EngineArgs are extra llama-server arguments (e.g. "-fa", "off" on a CUDA build
	// without flash-attention kernels).
	EngineArgs []string
	// Tenants each have their own system prompt of about SystemTokens tokens (defaults
	// 12 and 1500); a request is that prompt plus a short unique question and asks for
	// OutputTokens tokens (default 8; the tiny model never stops early).
	Tenants, SystemTokens, OutputTokens int
	// Skew is the Zipf exponent of tenant popularity (0, the default: uniform).
	Skew float64
	// Requests is the number of measured requests per policy and round (default 1,500:
	// shorter runs are dominated by the fresh engines' first minute and by bursts, and
	// round-robin's P90 then varies several-fold between identical runs). Duration, when
	// set, replaces it: Requests = Duration x the arrival rate.
	Requests int
	Duration time.Duration
	// Warmup requests precede the measured ones in the same arrival sequence and are not
	// counted (default Tenants).
	Warmup int
	// Load is the arrival rate as a fraction of round-robin's capacity measured on the
	// same workload (closed loop; default 0.95); Rate, when set, is the arrival rate in requests per second instead.
	Load, Rate float64
	// SLO is the time to first token a request must meet to count as goodput (default:
	// 5 x the unloaded time to first token of a request with no cached prefix).
	SLO time.Duration
	// Rounds repeats every policy's run (default 2), rotating the policies' order each
	// round; a policy's figures pool its rounds.
	Rounds int
	// Seed fixes the prompts, the tenants' order and the arrival times (default 1).
	Seed uint64
	// Policies to compare, in run order (default round-robin, least-loaded, sluice).
	Policies []scheduler.Policy
	// NoPrefixWait runs the sluice policy without cost-aware waiting (an A/B of it).
	NoPrefixWait bool
	// LlamaServer and Model are paths; defaults: config.DefaultLlamaServer and a model
	// generated into the cache from Vocab (default: the cached Llama-2 vocabulary) in the
	// rig's shape.
	LlamaServer, Model, Vocab string
	// Quick selects the quick rig: the 4 M-parameter tiny model, on which a cached prefix
	// saves only ~2x of the time to first token (the engine's fixed costs dominate). The
	// default rig generates a model sized for this CPU so that prefill dominates, as it
	// does on a GPU serving an 8B model (its calibration prints the cold/warm ratio).
	Quick bool
	// ModelDim, ModelLayers and ModelFF shape the generated model (defaults: the rig's;
	// ignored with Model).
	ModelDim, ModelLayers, ModelFF int
	// SimGPUs are the fleet sizes to simulate (default 8 and 64; empty after fill only
	// when NoSim is set), each with SimRequests requests (default 20000).
	SimGPUs     []int
	SimRequests int
	NoSim       bool
	// Progress receives a line per phase; nil: silent. Logger receives engine output.
	Progress io.Writer
	Logger   *slog.Logger
	// Trace, when set, receives one CSV line per request of every policy's run (tenant,
	// engine, slot, wait, time to first token, prompt and cached tokens, error).
	Trace io.Writer
}

// Defaults for Config. The prefixes' working set is larger than one engine holds and
// about 75% of the cluster's slots (12 system prompts on 2 x 8 slots, as llm-d sized its
// benchmark), the requests are short answers over a long shared context (8 tokens), and
// arrivals come near the baseline's capacity (0.95 of round-robin's, measured on the same
// workload). The issue's own example (16 tenants on
// 2 x 4 slots, 32 tokens, 0.9) is `--slots 4 --tenants 16 --output-tokens 32 --load 0.9`.
const (
	DefaultEngines      = 2
	DefaultSlots        = 8
	DefaultTenants      = 12
	DefaultSystemTokens = 1500
	DefaultOutputTokens = 8
	DefaultRequests     = 1500
	DefaultRounds       = 2
	DefaultLoad         = 0.95
)

// The default rig's model: wide enough that evaluating a long prompt costs far more than
// the engine's fixed work per request (tokenizing, the uncached tail in a small batch, the
// first sampled token), as on a GPU. Measured with llama-server alone on this project's
// 2-vCPU machine, 1 thread, a 1,500-token system prompt: dim 256 x 4 layers gave a cold
// time to first token of ~280 ms against ~43 ms warm (6.5x); dim 384 ~420 / ~40 ms
// (10.5x); dim 512 ~680 / ~61 ms (11x); the tiny model (dim 64 x 2) ~2.3x. Its capacity
// is lower than the tiny model's, so a run measures fewer requests.
const (
	PrefillRigDim      = 384
	PrefillRigLayers   = 4
	PrefillRigRequests = 600
)

// Rigs, as Setup.Rig names them.
const (
	RigPrefill = "prefill"
	RigQuick   = "quick"
	RigGiven   = "given" // --model: the cold/warm ratio is what it is
)

// TargetColdWarm is the cold/warm time-to-first-token ratio the default rig is sized for
// (an H100 serving an 8B model prefills 1.5k tokens ~10x slower than it serves the same
// prompt cached).
const TargetColdWarm = 8.0

// DefaultPolicies are compared when Config.Policies is empty; round-robin is the
// reference the ratios divide by.
func DefaultPolicies() []scheduler.Policy {
	return []scheduler.Policy{scheduler.PolicyRoundRobin, scheduler.PolicyLeastLoaded, scheduler.PolicySluice}
}

// questionTokens bounds the tokens of the chat template and the user question.
const questionTokens = 64

func (c *Config) fill() error {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	if !c.Quick {
		def(&c.ModelDim, PrefillRigDim)
		def(&c.ModelLayers, PrefillRigLayers)
		def(&c.ModelFF, 2*c.ModelDim)
		def(&c.Requests, PrefillRigRequests)
	}
	def(&c.Engines, DefaultEngines)
	def(&c.SlotsPerEngine, DefaultSlots)
	def(&c.Threads, 1)
	def(&c.Tenants, DefaultTenants)
	def(&c.SystemTokens, DefaultSystemTokens)
	def(&c.OutputTokens, DefaultOutputTokens)
	def(&c.Requests, DefaultRequests)
	def(&c.Rounds, DefaultRounds)
	if c.Warmup == 0 {
		c.Warmup = c.Tenants
	}
	if c.Load == 0 {
		c.Load = DefaultLoad
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if len(c.Policies) == 0 {
		c.Policies = DefaultPolicies()
	}
	need := c.SystemTokens + questionTokens + c.OutputTokens
	if c.Context == 0 {
		c.Context = 2048
		for c.Context < need {
			c.Context *= 2
		}
	}
	if c.LlamaServer == "" {
		c.LlamaServer = config.DefaultLlamaServer(config.OSEnv)
	}
	if c.Vocab == "" {
		c.Vocab = filepath.Join(config.CacheDir(config.OSEnv), "vocab", "llama2", "tokenizer.json")
	}
	if !c.NoSim && len(c.SimGPUs) == 0 {
		c.SimGPUs = []int{8, 64}
	}
	def(&c.SimRequests, 20000)
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("bench sched: "+format, args...)) }
	if c.Engines < 1 || c.SlotsPerEngine < 1 || c.Threads < 1 {
		bad("engines, slots and threads must be at least 1")
	}
	if c.Tenants < 1 || c.SystemTokens < 16 || c.OutputTokens < 1 {
		bad("tenants must be at least 1, system tokens at least 16, output tokens at least 1")
	}
	if !c.Quick && (c.ModelDim < 64 || c.ModelDim%64 != 0 || c.ModelLayers < 1 || c.ModelFF < 1) {
		bad("model dim must be a multiple of 64 (heads of 64), layers and ff at least 1")
	}
	if c.Context < need {
		bad("context %d per slot is below the %d tokens a request needs", c.Context, need)
	}
	if c.Requests < 1 || c.Rounds < 1 || c.Warmup < 0 || c.Duration < 0 {
		bad("requests must be at least 1; warmup and duration not negative")
	}
	if c.Load <= 0 || c.Rate < 0 || c.SLO < 0 || c.Skew < 0 {
		bad("load must be positive; rate, slo and skew not negative")
	}
	for _, p := range c.Policies {
		switch p {
		case scheduler.PolicyRoundRobin, scheduler.PolicyLeastLoaded, scheduler.PolicySluice:
		default:
			bad("unknown policy %q", p)
		}
	}
	for _, g := range c.SimGPUs {
		if g < 1 {
			bad("simulated GPUs must be at least 1, got %d", g)
		}
	}
	return errors.Join(errs...)
}

// Setup records how a run was set up (printed above the tables, and in the JSON).
type Setup struct {
	Engines        int      `json:"engines"`
	SlotsPerEngine int      `json:"slots_per_engine"`
	Threads        int      `json:"threads_per_engine"`
	ContextPerSlot int      `json:"context_per_slot"`
	CacheRAMMiB    int      `json:"cache_ram_mib"`
	Tenants        int      `json:"tenants"`
	Skew           float64  `json:"tenant_zipf_skew"`
	SystemTokens   int      `json:"system_tokens"` // measured with llama-server's /tokenize (mean)
	PromptTokens   float64  `json:"prompt_tokens_mean"`
	OutputTokens   int      `json:"output_tokens"`
	Requests       int      `json:"requests_per_policy"` // per round
	Rounds         int      `json:"rounds"`
	Warmup         int      `json:"warmup_requests"`
	Load           float64  `json:"load"`
	RateRPS        float64  `json:"rate_rps"`
	SLOMS          float64  `json:"slo_ms"`
	Seed           uint64   `json:"seed"`
	Policies       []string `json:"policies"`
	PrefixWait     bool     `json:"prefix_wait"` // the sluice policy's cost-aware waiting
	Fresh          string   `json:"fresh_engines"`
	Path           string   `json:"path"`
	Model          string   `json:"model"`
	Rig            string   `json:"rig"` // "prefill" (default), "quick" (the tiny model) or "given" (--model)
	CPUs           int      `json:"cpus"`
	// LoadAvg is the host's 1-minute load average before the calibration (Linux): a
	// value well above zero means something else competed for the CPUs.
	LoadAvg float64 `json:"host_loadavg_before"`
}
