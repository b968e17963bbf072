package sched

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/sluice-llm/sluice/scheduler"
	"github.com/sluice-llm/sluice/scheduler/sim"
)

// SimRow is one policy in one simulated fleet (the real-engine row's fields where the
// simulator has them). CachedRatio is the simulator's prefix hit ratio: prompt tokens
// served from a cache / prompt tokens.
type SimRow struct {
	Policy                 string   `json:"policy"`
	GPUs                   int      `json:"gpus"`
	Requests               int      `json:"requests"`
	Completed              int      `json:"completed"`
	TTFTP50MS              float64  `json:"ttft_p50_ms"`
	TTFTP90MS              float64  `json:"ttft_p90_ms"`
	TTFTP99MS              float64  `json:"ttft_p99_ms"`
	OutputTokPerSec        float64  `json:"output_tokens_per_s"`
	Goodput                float64  `json:"goodput"`
	CachedRatio            float64  `json:"cached_token_ratio"`
	SimulatedS             float64  `json:"simulated_s"`
	P90VsRoundRobin        *float64 `json:"p90_ttft_vs_round_robin,omitempty"`
	ThroughputVsRoundRobin *float64 `json:"throughput_vs_round_robin,omitempty"`
}

// SimTable is one simulated fleet: its engine model, workload and rows.
type SimTable struct {
	Name         string   `json:"name"`
	Engine       string   `json:"engine"`
	GPUs         int      `json:"gpus"`
	SlotsPerGPU  int      `json:"slots_per_gpu"`
	Tenants      int      `json:"tenants"`
	SystemTokens int      `json:"system_tokens"`
	UserTokens   int      `json:"user_tokens"`
	OutputTokens int      `json:"output_tokens"`
	Load         float64  `json:"load,omitempty"` // 0: the real run's rate was used
	RateRPS      float64  `json:"rate_rps"`
	SLOMS        float64  `json:"slo_ms"`
	Rows         []SimRow `json:"policies"`
}

// runSim simulates the real run's setup on the tiny-CPU engine model (a check of the
// simulator against the measurement), then each of c.SimGPUs H100-class engines with the
// same tenants-per-slot ratio, load and output length. Its failure is reported, not
// fatal: the real-engine figures stand on their own.
func runSim(ctx context.Context, c *Config, rep *Report) {
	userTokens := int(rep.Setup.PromptTokens+0.5) - rep.Setup.SystemTokens
	if userTokens < 1 {
		userTokens = questionTokens / 2
	}
	slotsReal := c.Engines * c.SlotsPerEngine
	type fleetSpec struct {
		name   string
		engine string
		model  sim.EngineModel
		gpus   int
		slo    time.Duration
		rate   float64 // arrivals per second; 0: the real run's load of the model's capacity
	}
	tiny := sim.TinyCPUEngine()
	tiny.Slots = c.SlotsPerEngine
	tiny.KVTokens = c.SlotsPerEngine * c.Context
	slo := time.Duration(rep.Setup.SLOMS * float64(time.Millisecond))
	specs := []fleetSpec{{name: "sim: the real run's setup", engine: "TinyCPUEngine", model: tiny, gpus: c.Engines,
		slo: slo, rate: rep.Setup.RateRPS}}
	fit, fitted := fitTiny(tiny, rep.Calibration, rep.Setup.SystemTokens, userTokens)
	if fitted {
		specs = append(specs, fleetSpec{name: "sim: the real run's setup, fitted to its calibration",
			engine: fmt.Sprintf("TinyCPUEngine fitted (%v engine time per request, %v/prompt token, step %v + %v/sequence)",
				fit.RequestBusy.Round(100*time.Microsecond), fit.PerPrefillToken.Round(time.Microsecond),
				fit.StepBase.Round(10*time.Microsecond), fit.PerDecodeToken.Round(10*time.Microsecond)),
			model: fit, gpus: c.Engines, slo: slo, rate: rep.Setup.RateRPS})
	}
	for _, g := range c.SimGPUs {
		m := sim.DefaultEngine()
		specs = append(specs, fleetSpec{name: fmt.Sprintf("sim: %d GPUs", g), engine: "DefaultEngine (7B F16, H100-class)",
			model: m, gpus: g, slo: 5 * coldTTFT(m, rep.Setup.SystemTokens+userTokens)})
	}
	for _, fs := range specs {
		if err := ctx.Err(); err != nil {
			rep.SimError = err.Error()
			return
		}
		tenants := max(1, (c.Tenants*fs.gpus*fs.model.Slots+slotsReal/2)/slotsReal)
		cfg := sim.Config{GPUs: fs.gpus, Engine: fs.model, SLO: fs.slo, NoPrefixWait: c.NoPrefixWait, Workload: sim.Workload{
			Tenants: tenants, SystemTokens: rep.Setup.SystemTokens, UserTokens: userTokens, OutputTokens: c.OutputTokens,
			Requests: c.SimRequests, Rate: fs.rate, TenantSkew: c.Skew, Seed: c.Seed}}
		if fs.rate == 0 {
			cfg.Workload.Load = rep.Setup.Load
		}
		fmt.Fprintf(c.Progress, "bench sched: simulating %s (%d tenants, %d requests)\n", fs.name, tenants, c.SimRequests)
		res, err := sim.Compare(cfg, c.Policies...)
		if err != nil {
			rep.SimError = err.Error()
			return
		}
		t := SimTable{Name: fs.name, Engine: fs.engine, GPUs: fs.gpus, SlotsPerGPU: fs.model.Slots, Tenants: tenants,
			SystemTokens: rep.Setup.SystemTokens, UserTokens: userTokens, OutputTokens: c.OutputTokens,
			Load: cfg.Workload.Load, SLOMS: ms(fs.slo)}
		for _, r := range res {
			t.RateRPS = r.Rate
			t.Rows = append(t.Rows, SimRow{Policy: r.Policy, GPUs: r.GPUs, Requests: r.Requests, Completed: r.Completed,
				TTFTP50MS: ms(r.TTFTp50), TTFTP90MS: ms(r.TTFTp90), TTFTP99MS: ms(r.TTFTp99),
				OutputTokPerSec: r.OutputTokensPerSec, Goodput: r.Goodput, CachedRatio: r.PrefixHitRatio,
				SimulatedS: r.Simulated.Seconds()})
		}
		for i := range t.Rows {
			if scheduler.Policy(t.Rows[i].Policy) != scheduler.PolicyRoundRobin {
				continue
			}
			rr := t.Rows[i]
			for k := range t.Rows {
				t.Rows[k].P90VsRoundRobin = ratio(rr.TTFTP90MS, t.Rows[k].TTFTP90MS)
				t.Rows[k].ThroughputVsRoundRobin = ratio(t.Rows[k].OutputTokPerSec, rr.OutputTokPerSec)
			}
		}
		rep.Sim = append(rep.Sim, t)
	}
	if fitted {
		rep.SimCapacity = simCapacity(ctx, c, rep, fit, userTokens)
	}
}

// SimCapacity compares a policy's capacity measured on the real engines with the fitted
// model's in the simulator, both in a closed loop of twice as many clients as slots (a
// queue always waits, a bounded one: an open loop past capacity grows its queue without
// end, and the policies' prefix hits then collapse in the simulator, unlike on the real
// engines' bounded queue).
type SimCapacity struct {
	Policy       string  `json:"policy"`
	MeasuredRPS  float64 `json:"measured_rps"`
	SimulatedRPS float64 `json:"simulated_rps"`
	// Ratio is SimulatedRPS / MeasuredRPS (1: the model matches).
	Ratio           float64 `json:"simulated_vs_measured"`
	MeasuredCached  float64 `json:"measured_cached_token_ratio"`
	SimulatedCached float64 `json:"simulated_cached_token_ratio"`
}

// simCapacity runs the fitted model of the real setup over every measured policy.
func simCapacity(ctx context.Context, c *Config, rep *Report, m sim.EngineModel, userTokens int) []SimCapacity {
	var out []SimCapacity
	for _, row := range rep.Rows {
		if row.CapacityRPS <= 0 {
			continue
		}
		cfg := sim.Config{GPUs: c.Engines, Engine: m, SLO: time.Duration(rep.Setup.SLOMS * float64(time.Millisecond)), NoPrefixWait: c.NoPrefixWait,
			Policy: scheduler.Policy(row.Policy), Workload: sim.Workload{
				Tenants: c.Tenants, SystemTokens: rep.Setup.SystemTokens, UserTokens: userTokens, OutputTokens: c.OutputTokens,
				Requests: max(2000, 64*c.Engines*c.SlotsPerEngine), Clients: 2 * c.Engines * c.SlotsPerEngine, TenantSkew: c.Skew, Seed: c.Seed}}
		if err := ctx.Err(); err != nil {
			rep.SimError = err.Error()
			return out
		}
		res, err := sim.Run(cfg)
		if err == nil && res.Simulated <= 0 {
			err = errors.New("no simulated time elapsed")
		}
		if err != nil {
			rep.SimError = fmt.Sprintf("capacity of %s: %v", row.Policy, err)
			return out
		}
		rps := res.Rate
		out = append(out, SimCapacity{Policy: row.Policy, MeasuredRPS: row.CapacityRPS, SimulatedRPS: rps,
			Ratio: rps / row.CapacityRPS, MeasuredCached: row.CachedRatio, SimulatedCached: res.PrefixHitRatio})
	}
	return out
}

func writeSimCapacity(w io.Writer, cs []SimCapacity) error {
	if len(cs) == 0 {
		return nil
	}
	if _, err := fmt.Fprintln(w, "\ncapacity, real engines vs the fitted model in the simulator (closed loop, twice as many clients as slots, both):"); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tmeasured req/s\tsimulated req/s\tsim/measured\tcached measured\tcached simulated\t")
	for _, c := range cs {
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2fx\t%.1f%%\t%.1f%%\t\n", c.Policy, c.MeasuredRPS, c.SimulatedRPS, c.Ratio,
			100*c.MeasuredCached, 100*c.SimulatedCached)
	}
	return tw.Flush()
}

// fitTiny fits the tiny-CPU model to what the calibration measured on this machine (two
// engines, the gateway and the client sharing its CPUs, which TinyCPUEngine, measured on
// one engine alone, does not see): the per-token costs and a fixed cost per request are
// solved from the unloaded cold and warm times to first token, and the decode costs scale
// with the prompt cost (the same machine slowed down alike). The fixed cost is charged as
// engine time (RequestBusy), not as latency beside the engine: llama-server spends it on
// its thread (the uncached tail evaluated in a small batch costs ~0.9 ms a token there,
// 30 times a long prompt's per-token cost), and only so does the model's capacity match
// the measured one. ok is false when the measurements cannot be fitted (warm not faster
// than cold).
func fitTiny(m sim.EngineModel, cal Calibration, systemTokens, userTokens int) (sim.EngineModel, bool) {
	cold := time.Duration(cal.ColdTTFTMS * float64(time.Millisecond))
	warm := time.Duration(cal.WarmTTFTMS * float64(time.Millisecond))
	if cold <= warm || warm <= 0 || systemTokens <= 0 || m.PerPrefillToken <= 0 {
		return m, false
	}
	chunk := m.PrefillChunk
	if chunk <= 0 {
		chunk = sim.DefaultPrefillChunk
	}
	prompt := systemTokens + userTokens
	steps := (prompt + chunk - 1) / chunk
	// cold - warm = system x p + (steps-1) x StepBase x s, with p = PerPrefillToken x s.
	base := float64(m.StepBase) / float64(m.PerPrefillToken)
	p := float64(cold-warm) / (float64(systemTokens) + float64(steps-1)*base)
	scale := p / float64(m.PerPrefillToken)
	f := m
	f.PerPrefillToken = time.Duration(p)
	f.StepBase = time.Duration(float64(m.StepBase) * scale)
	f.PerDecodeToken = time.Duration(float64(m.PerDecodeToken) * scale)
	f.RequestOverhead = 0
	f.RequestBusy = max(0, warm-time.Duration(float64(userTokens)*p)-f.StepBase)
	return f, true
}

// coldTTFT is the model's unloaded time to first token for a prompt with nothing cached.
func coldTTFT(m sim.EngineModel, prompt int) time.Duration {
	chunk := m.PrefillChunk
	if chunk <= 0 {
		chunk = sim.DefaultPrefillChunk
	}
	steps := (prompt + chunk - 1) / chunk
	return m.RequestOverhead + m.RequestBusy + time.Duration(prompt)*m.PerPrefillToken + time.Duration(steps)*m.StepBase
}

func (t *SimTable) write(w io.Writer) error {
	load := "the real run's arrival rate"
	if t.Load > 0 {
		load = fmt.Sprintf("load %.2f of the model's no-reuse capacity", t.Load)
	}
	if _, err := fmt.Fprintf(w, "\n%s: %d x %d slots, %s; %d tenants, %d+%d prompt tokens, %d output tokens; "+
		"%s (%.1f req/s); SLO %.0f ms\n",
		t.Name, t.GPUs, t.SlotsPerGPU, t.Engine, t.Tenants, t.SystemTokens, t.UserTokens, t.OutputTokens,
		load, t.RateRPS, t.SLOMS); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tTTFT p50\tp90\tp99\ttok/s\tgoodput\tcached\tdone\tp90 vs RR\ttok/s vs RR\t")
	for _, r := range t.Rows {
		fmt.Fprintf(tw, "%s\t%.0f ms\t%.0f ms\t%.0f ms\t%.0f\t%.1f%%\t%.1f%%\t%d/%d\t%s\t%s\t\n", r.Policy,
			r.TTFTP50MS, r.TTFTP90MS, r.TTFTP99MS, r.OutputTokPerSec, 100*r.Goodput, 100*r.CachedRatio,
			r.Completed, r.Requests, times(r.P90VsRoundRobin), times(r.ThroughputVsRoundRobin))
	}
	return tw.Flush()
}
