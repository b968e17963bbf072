package sched

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-llm/sluice/scheduler"
)

// The targets for sluice's policy against round-robin on real engines.
const (
	TargetP90Ratio        = 3.0 // round-robin P90 TTFT / sluice's, at least
	TargetThroughputRatio = 1.2 // sluice's output tokens/s / round-robin's, at least
)

// Row is one policy's figures. Times are in milliseconds; TTFT runs from each request's
// scheduled arrival to its first content token (queueing included).
type Row struct {
	Policy     string  `json:"policy"`
	Requests   int     `json:"requests"`
	Completed  int     `json:"completed"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	TTFTP50MS  float64 `json:"ttft_p50_ms"`
	TTFTP90MS  float64 `json:"ttft_p90_ms"`
	TTFTP99MS  float64 `json:"ttft_p99_ms"`
	// WaitP50MS and WaitP90MS: from arrival to the scheduler's dispatch (queueing in
	// sluice); EngineP50MS and EngineP90MS: from dispatch to the first token.
	WaitP50MS   float64 `json:"wait_p50_ms"`
	WaitP90MS   float64 `json:"wait_p90_ms"`
	EngineP50MS float64 `json:"engine_ttft_p50_ms"`
	EngineP90MS float64 `json:"engine_ttft_p90_ms"`
	// OutputTokPerSec: completion tokens over the measured window (first arrival to last
	// answer); Goodput: share of requests with no error and TTFT within the SLO.
	OutputTokPerSec float64 `json:"output_tokens_per_s"`
	Goodput         float64 `json:"goodput"`
	// CachedRatio is llama-server's own count: cached prompt tokens / prompt tokens;
	// HitShare the share of requests that found at least half their system prompt cached.
	CachedRatio float64 `json:"cached_token_ratio"`
	HitShare    float64 `json:"hit_request_share"`
	// QueuedShare is the share of requests that waited in the scheduler's queue (all
	// slots busy when they came); HitShareQueued and HitShareDirect split HitShare
	// between those and the ones placed on arrival, when the policy had free slots to
	// choose from.
	QueuedShare    float64 `json:"queued_share"`
	HitShareQueued float64 `json:"hit_share_queued"`
	HitShareDirect float64 `json:"hit_share_direct"`
	// HitTTFTP50MS and MissTTFTP50MS split TTFT by whether the request hit.
	HitTTFTP50MS  float64 `json:"hit_ttft_p50_ms"`
	MissTTFTP50MS float64 `json:"miss_ttft_p50_ms"`
	// SchedHitRatio is the scheduler's own estimate (prefix_hit_blocks_total /
	// prefix_blocks_total, warm-up included); it tracks prompts only under the sluice
	// policy.
	SchedHitRatio *float64 `json:"scheduler_hit_ratio"`
	// EnginesPerTenant is how many engines, on average, served a tenant's requests.
	EnginesPerTenant float64 `json:"engines_per_tenant"`
	WallS            float64 `json:"wall_s"`
	PromptTokensMean float64 `json:"prompt_tokens_mean"`
	// OtherCPUs is how many CPUs other processes on the host used during the runs
	// (mean): noise that the comparison did not control.
	OtherCPUs float64 `json:"other_processes_cpus"`
	// RoundTTFTP90MS and RoundTokPerSec are each round's own figures, in round order:
	// their spread is the run-to-run noise.
	RoundTTFTP90MS []float64 `json:"round_ttft_p90_ms"`
	RoundTokPerSec []float64 `json:"round_output_tokens_per_s"`
	// CapacityTokPerSec and CapacityRPS: the closed-loop throughput under the policy
	// (every slot busy, a queue behind), the mean of the rounds.
	CapacityTokPerSec float64 `json:"capacity_output_tokens_per_s"`
	CapacityRPS       float64 `json:"capacity_rps"`
	// Ratios against round-robin: its P90 TTFT over this row's (open loop), this row's
	// capacity over its (closed loop), and this row's open-loop tokens/s over its.
	P90VsRoundRobin        *float64 `json:"p90_ttft_vs_round_robin,omitempty"`
	ThroughputVsRoundRobin *float64 `json:"throughput_vs_round_robin,omitempty"`
	OfferedTokVsRoundRobin *float64 `json:"open_loop_tokens_per_s_vs_round_robin,omitempty"`
}

// Calibration is what was measured before the runs: unloaded times to first token (cold: a
// prompt sharing no prefix; warm: one already cached) and round-robin's closed-loop capacity
// on the workload.
type Calibration struct {
	ColdTTFTMS float64 `json:"unloaded_cold_ttft_ms"`
	WarmTTFTMS float64 `json:"unloaded_warm_ttft_ms"`
	// ColdWarm is ColdTTFTMS / WarmTTFTMS: what a cached prefix saves (~10x on a GPU
	// serving an 8B model; the default rig is sized for at least TargetColdWarm).
	ColdWarm          float64 `json:"cold_warm_ttft_ratio"`
	CapacityRPS       float64 `json:"round_robin_capacity_rps"`
	CapacityTokPerSec float64 `json:"round_robin_capacity_output_tokens_per_s"`
	Requests          int     `json:"requests"`
	Concurrency       int     `json:"concurrency"`
	OtherCPUs         float64 `json:"other_processes_cpus"`
}

// Report is a whole run. The headline ratios compare sluice's policy with round-robin
// on the real engines (null when either was not run).
type Report struct {
	P90TTFTVsRoundRobin    *float64 `json:"p90_ttft_vs_round_robin"`
	ThroughputVsRoundRobin *float64 `json:"throughput_vs_round_robin"`
	// ColdWarm is the calibration's cold/warm time-to-first-token ratio (the rig's
	// GPU-likeness), with the target the default rig is sized for.
	ColdWarm         float64 `json:"cold_warm_ttft_ratio"`
	TargetColdWarm   float64 `json:"target_cold_warm_ttft_ratio"`
	TargetP90        float64 `json:"target_p90_ttft_vs_round_robin"`
	TargetThroughput float64 `json:"target_throughput_vs_round_robin"`
	// MeetsTargets: P90 and throughput against round-robin, no errors, and on the
	// default (prefill) rig a cold/warm ratio of at least TargetColdWarm.
	MeetsTargets bool          `json:"meets_targets"`
	Setup        Setup         `json:"setup"`
	Calibration  Calibration   `json:"calibration"`
	Rows         []Row         `json:"policies"`
	Sim          []SimTable    `json:"simulator,omitempty"`
	SimCapacity  []SimCapacity `json:"simulator_capacity,omitempty"`
	SimError     string        `json:"simulator_error,omitempty"`
}

// summarizePolicy computes a policy's row from its runs' measured records. Output
// tokens/s divide all completion tokens by the sum of the runs' windows (each from its
// first measured arrival to its last answer).
func summarizePolicy(policy string, runs []*policyRun, slo time.Duration, sysTokens int) Row {
	row := Row{Policy: policy}
	var ttft, wait, eng, hitT, missT []float64
	var prompt, cached, tokens, hits, good int
	var queued, queuedHits, directHits int
	var blocks, hitBlocks float64
	tenantEngines := map[[2]int]map[string]bool{} // (run, tenant) -> engines
	for ri, run := range runs {
		row.OtherCPUs += run.foreign / float64(len(runs))
		blocks += run.blocks
		hitBlocks += run.hits
		var first, last time.Time
		for i := range run.recs {
			r := &run.recs[i]
			row.Requests++
			if first.IsZero() || r.due.Before(first) {
				first = r.due
			}
			if r.end.After(last) {
				last = r.end
			}
			if r.err != nil {
				row.Errors++
				if row.FirstError == "" {
					row.FirstError = r.err.Error()
				}
				continue
			}
			row.Completed++
			t := ms(r.first.Sub(r.due))
			ttft = append(ttft, t)
			if r.first.Sub(r.due) <= slo {
				good++
			}
			tokens += r.completion
			prompt += r.prompt
			cached += r.cached
			if r.cached >= sysTokens/2 {
				hits++
				hitT = append(hitT, t)
			} else {
				missT = append(missT, t)
			}
			if r.placed {
				if r.queued() {
					queued++
					if r.cached >= sysTokens/2 {
						queuedHits++
					}
				} else if r.cached >= sysTokens/2 {
					directHits++
				}
				wait = append(wait, ms(r.dispatched.Sub(r.due)))
				eng = append(eng, ms(r.first.Sub(r.dispatched)))
				k := [2]int{ri, r.tenant}
				if tenantEngines[k] == nil {
					tenantEngines[k] = map[string]bool{}
				}
				tenantEngines[k][r.engine] = true
			}
		}
		if !first.IsZero() {
			row.WallS += last.Sub(first).Seconds()
		}
	}
	if blocks > 0 {
		r := hitBlocks / blocks
		row.SchedHitRatio = &r
	}
	row.TTFTP50MS, row.TTFTP90MS, row.TTFTP99MS = quantile(ttft, 0.5), quantile(ttft, 0.9), quantile(ttft, 0.99)
	row.WaitP50MS, row.WaitP90MS = quantile(wait, 0.5), quantile(wait, 0.9)
	row.EngineP50MS, row.EngineP90MS = quantile(eng, 0.5), quantile(eng, 0.9)
	row.HitTTFTP50MS, row.MissTTFTP50MS = quantile(hitT, 0.5), quantile(missT, 0.5)
	if row.Requests > 0 {
		row.Goodput = float64(good) / float64(row.Requests)
	}
	if row.WallS > 0 {
		row.OutputTokPerSec = float64(tokens) / row.WallS
	}
	if row.Completed > 0 {
		row.PromptTokensMean = float64(prompt) / float64(row.Completed)
	}
	if prompt > 0 {
		row.CachedRatio = float64(cached) / float64(prompt)
	}
	if row.Completed > 0 {
		row.HitShare = float64(hits) / float64(row.Completed)
		row.QueuedShare = float64(queued) / float64(row.Completed)
	}
	if queued > 0 {
		row.HitShareQueued = float64(queuedHits) / float64(queued)
	}
	if direct := len(wait) - queued; direct > 0 {
		row.HitShareDirect = float64(directHits) / float64(direct)
	}
	if len(tenantEngines) > 0 {
		n := 0
		for _, e := range tenantEngines {
			n += len(e)
		}
		row.EnginesPerTenant = float64(n) / float64(len(tenantEngines))
	}
	return row
}

// summarize sets the ratios against round-robin and the headline figures.
func (r *Report) summarize() {
	var rr, sl *Row
	for i := range r.Rows {
		switch scheduler.Policy(r.Rows[i].Policy) {
		case scheduler.PolicyRoundRobin:
			rr = &r.Rows[i]
		case scheduler.PolicySluice:
			sl = &r.Rows[i]
		}
	}
	if rr == nil {
		return
	}
	for i := range r.Rows {
		row := &r.Rows[i]
		row.P90VsRoundRobin = ratio(rr.TTFTP90MS, row.TTFTP90MS)
		row.ThroughputVsRoundRobin = ratio(row.CapacityTokPerSec, rr.CapacityTokPerSec)
		row.OfferedTokVsRoundRobin = ratio(row.OutputTokPerSec, rr.OutputTokPerSec)
	}
	if sl != nil {
		r.P90TTFTVsRoundRobin, r.ThroughputVsRoundRobin = sl.P90VsRoundRobin, sl.ThroughputVsRoundRobin
		r.MeetsTargets = r.P90TTFTVsRoundRobin != nil && *r.P90TTFTVsRoundRobin >= r.TargetP90 &&
			r.ThroughputVsRoundRobin != nil && *r.ThroughputVsRoundRobin >= r.TargetThroughput &&
			sl.Errors == 0 && rr.Errors == 0
		if met, _ := coldWarmMet(r); !met {
			r.MeetsTargets = false
		}
	}
}

func ratio(a, b float64) *float64 {
	if a <= 0 || b <= 0 {
		return nil
	}
	v := a / b
	return &v
}

// WriteTable prints the setup, the real-engine table and the simulator tables.
func (r *Report) WriteTable(w io.Writer) error {
	s, cal := r.Setup, r.Calibration
	var b strings.Builder
	fmt.Fprintf(&b, "real engines: %d llama-server x %d slots, %d thread(s) each, context %d/slot, --cache-ram %s; %s rig, model %s; "+
		"%d CPUs, host load average %.2f before the run; sluice policy's cost-aware waiting %s\n",
		s.Engines, s.SlotsPerEngine, s.Threads, s.ContextPerSlot, cacheRAM(s.CacheRAMMiB), s.Rig, s.Model, s.CPUs, s.LoadAvg,
		onOff(s.PrefixWait))
	fmt.Fprintf(&b, "workload: %d tenants (zipf skew %g), system prompt %d tokens, %.0f prompt tokens/request, %d output tokens; "+
		"%d measured requests per policy and round after %d warm-up, %d round(s), Poisson %.1f req/s (seed %d)\n",
		s.Tenants, s.Skew, s.SystemTokens, s.PromptTokens, s.OutputTokens, s.Requests, s.Warmup, s.Rounds, s.RateRPS, s.Seed)
	fmt.Fprintf(&b, "calibration: unloaded TTFT cold %.1f ms, warm %.1f ms: cold/warm %.1fx (a GPU serving an 8B model: ~10x; target for this rig >= %gx: %s); round-robin capacity on this workload %.1f req/s, %.0f output tok/s "+
		"(closed loop, %d in flight; other processes used %.2f CPUs); load %.2f of it; SLO: TTFT <= %.0f ms\n",
		cal.ColdTTFTMS, cal.WarmTTFTMS, cal.ColdWarm, r.TargetColdWarm, coldWarmVerdict(r), cal.CapacityRPS, cal.CapacityTokPerSec, cal.Concurrency, cal.OtherCPUs, s.Load, s.SLOMS)
	fmt.Fprintf(&b, "%s; path: %s\n\n", s.Fresh, s.Path)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\trequests\tTTFT p50\tp90\tp99\toutput tok/s\tgoodput\tcached tokens\terrors\tcapacity tok/s\tp90 vs RR\tcapacity vs RR\tp90 by round\t")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%d\t%.0f ms\t%.0f ms\t%.0f ms\t%.0f\t%.1f%%\t%.1f%%\t%d\t%.0f\t%s\t%s\t%s\t\n",
			row.Policy, row.Requests, row.TTFTP50MS, row.TTFTP90MS, row.TTFTP99MS, row.OutputTokPerSec,
			100*row.Goodput, 100*row.CachedRatio, row.Errors, row.CapacityTokPerSec, times(row.P90VsRoundRobin),
			times(row.ThroughputVsRoundRobin), msList(row.RoundTTFTP90MS))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w, "\nwhy (TTFT = wait in sluice's queue + engine time; a hit has half its system prompt or more cached):"); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\twait p50\twait p90\tengine p50\tengine p90\thit TTFT p50\tmiss TTFT p50\thits\tqueued\thits if queued\thits if not\tsched hit\tengines/tenant\tother CPUs\t")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%.0f ms\t%.0f ms\t%.0f ms\t%.0f ms\t%.0f ms\t%.0f ms\t%.1f%%\t%.1f%%\t%.1f%%\t%.1f%%\t%s\t%.2f\t%.2f\t\n",
			row.Policy, row.WaitP50MS, row.WaitP90MS, row.EngineP50MS, row.EngineP90MS, row.HitTTFTP50MS, row.MissTTFTP50MS,
			100*row.HitShare, 100*row.QueuedShare, 100*row.HitShareQueued, 100*row.HitShareDirect, pct(row.SchedHitRatio),
			row.EnginesPerTenant, row.OtherCPUs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verdict := "MISSED"
	if r.MeetsTargets {
		verdict = "met"
	}
	if _, err := fmt.Fprintf(w, "sluice vs round-robin: P90 TTFT %s lower (target %gx), throughput at saturation %s (target %gx), cold/warm %.1fx (target %gx: %s): %s\n",
		times(r.P90TTFTVsRoundRobin), r.TargetP90, times(r.ThroughputVsRoundRobin), r.TargetThroughput, r.ColdWarm, r.TargetColdWarm, coldWarmVerdict(r), verdict); err != nil {
		return err
	}
	for _, row := range r.Rows {
		if row.FirstError != "" {
			fmt.Fprintf(w, "%s: first error: %s\n", row.Policy, row.FirstError)
		}
	}
	for _, t := range r.Sim {
		if err := t.write(w); err != nil {
			return err
		}
	}
	if err := writeSimCapacity(w, r.SimCapacity); err != nil {
		return err
	}
	if r.SimError != "" {
		_, err := fmt.Fprintf(w, "\nsimulator: %s\n", r.SimError)
		return err
	}
	return nil
}

func msList(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(s, "/") + " ms"
}

func cacheRAM(v int) string {
	if v < 0 {
		return "default"
	}
	return strconv.Itoa(v)
}

func pct(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(100**v, 'f', 1, 64) + "%"
}

func times(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 2, 64) + "x"
}

// JSON is the report as one line.
func (r *Report) JSON() ([]byte, error) { return json.Marshal(r) }

// writeTrace prints one CSV line per request.
func writeTrace(w io.Writer, policy string, round int, recs []record, start time.Time) {
	for i, r := range recs {
		errs := ""
		if r.err != nil {
			errs = strconv.Quote(r.err.Error())
		}
		wait, ttft, queued := -1.0, -1.0, 0
		if r.placed {
			wait = ms(r.dispatched.Sub(r.due))
			if r.queued() {
				queued = 1
			}
		}
		if !r.first.IsZero() {
			ttft = ms(r.first.Sub(r.due))
		}
		fmt.Fprintf(w, "%s,%d,%d,%d,%s,%d,%.1f,%.1f,%d,%.1f,%.1f,%d,%d,%d,%s\n", policy, round, i, r.tenant, r.engine, r.slot,
			ms(r.due.Sub(start)), wait, queued, ttft, ms(r.end.Sub(r.due)), r.prompt, r.cached, r.completion, errs)
	}
}

// TraceHeader is the header line of Config.Trace's CSV.
const TraceHeader = "policy,round,i,tenant,engine,slot,due_ms,wait_ms,queued,ttft_ms,end_ms,prompt_tokens,cached_tokens,completion_tokens,error\n"

// coldWarmMet says whether the cold/warm ratio applies to the rig (the default one: the
// quick rig exists to be fast, and a given model is what it is) and whether it met it.
func coldWarmMet(r *Report) (met, applies bool) {
	if r.Setup.Rig == RigQuick || r.Setup.Rig == RigGiven {
		return true, false
	}
	return r.ColdWarm >= r.TargetColdWarm, true
}

// coldWarmVerdict says coldWarmMet in words.
func coldWarmVerdict(r *Report) string {
	switch met, applies := coldWarmMet(r); {
	case r.Setup.Rig == RigQuick:
		return "n/a, the quick rig"
	case !applies:
		return "n/a, a given model"
	case met:
		return "met"
	}
	return "MISSED"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
