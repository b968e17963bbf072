package sched

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-llm/sluice/scheduler"
)

// Run calibrates the load on fresh engines, then runs the arrival sequence once per
// policy and round, each run on fresh engines, and (unless c.NoSim) the simulator.
func Run(ctx context.Context, c Config) (*Report, error) {
	if err := c.fill(); err != nil {
		return nil, err
	}
	model, err := ensureModel(&c)
	if err != nil {
		return nil, err
	}
	rep := &Report{TargetP90: TargetP90Ratio, TargetThroughput: TargetThroughputRatio, TargetColdWarm: TargetColdWarm}
	w, err := calibrate(ctx, &c, model, rep)
	if err != nil {
		return nil, err
	}
	runs := map[scheduler.Policy][]*policyRun{}
	for r := range c.Rounds {
		for k := range c.Policies {
			// Later rounds rotate the order, so that drift on a shared machine hits every
			// policy alike.
			p := c.Policies[(k+r)%len(c.Policies)]
			fmt.Fprintf(c.Progress, "bench sched: round %d/%d: %s: %d requests at %.1f/s on fresh engines\n",
				r+1, c.Rounds, p, len(w.arr), w.rate)
			pr, err := runPolicy(ctx, &c, model, w, p, r+1)
			if err != nil {
				return nil, err
			}
			row := summarizePolicy(string(p), []*policyRun{pr}, w.slo, c.SystemTokens)
			fmt.Fprintf(c.Progress, "bench sched: round %d/%d: %s: TTFT p50 %.0f ms p90 %.0f ms, %.0f tok/s, goodput %.1f%%, cached %.1f%%, %d errors; other processes used %.2f CPUs\n",
				r+1, c.Rounds, p, row.TTFTP50MS, row.TTFTP90MS, row.OutputTokPerSec, 100*row.Goodput, 100*row.CachedRatio, row.Errors, pr.foreign)
			runs[p] = append(runs[p], pr)
		}
	}
	for _, p := range c.Policies {
		row := summarizePolicy(string(p), runs[p], w.slo, c.SystemTokens)
		for _, pr := range runs[p] {
			one := summarizePolicy(string(p), []*policyRun{pr}, w.slo, c.SystemTokens)
			row.RoundTTFTP90MS = append(row.RoundTTFTP90MS, one.TTFTP90MS)
			row.RoundTokPerSec = append(row.RoundTokPerSec, one.OutputTokPerSec)
			row.CapacityTokPerSec += pr.capTokPerSec / float64(len(runs[p]))
			row.CapacityRPS += pr.capRPS / float64(len(runs[p]))
		}
		rep.Rows = append(rep.Rows, row)
	}
	rep.summarize()
	if len(rep.Rows) > 0 {
		rep.Setup.PromptTokens = rep.Rows[0].PromptTokensMean
	}
	if !c.NoSim {
		runSim(ctx, &c, rep)
	}
	return rep, nil
}

// workload is what every policy's run shares.
type workload struct {
	prompts []string
	arr     []arrival
	rate    float64
	slo     time.Duration
}

// calibrate starts a fleet, sizes the system prompts, and measures (through sluice with
// round-robin, on prompts that share no prefix) the unloaded time to first token and the
// closed-loop capacity with every slot busy; it derives the arrival rate and the SLO.
func calibrate(ctx context.Context, c *Config, model string, rep *Report) (*workload, error) {
	loadAvg := hostLoad()
	fmt.Fprintf(c.Progress, "bench sched: calibrating on %d fresh engines x %d slots\n", c.Engines, c.SlotsPerEngine)
	f, err := startFleet(ctx, c, model)
	if err != nil {
		return nil, err
	}
	defer f.stop()
	w := &workload{}
	var sysTokens float64
	w.prompts, sysTokens, err = systemPrompts(ctx, f.tokenize, c.Seed, c.Tenants, c.SystemTokens)
	if err != nil {
		return nil, err
	}
	p, err := newPipeline(ctx, f, scheduler.PolicyRoundRobin, c.NoPrefixWait)
	if err != nil {
		return nil, err
	}
	defer p.close()
	cl := newClient(p.url())
	defer cl.close()
	// Prompts with a unique nonce in front share no prefix with anything.
	nonce := 0
	cold := func(tenant int) string {
		nonce++
		return fmt.Sprintf("Session %d-%d. ", c.Seed, nonce) + w.prompts[tenant%len(w.prompts)]
	}
	rng := rand.New(rand.NewPCG(c.Seed, 0xca1))
	var coldT, warmT []float64
	for i := range 6 {
		o := cl.chat(ctx, cold(i), question(rng, -1-i), c.OutputTokens)
		if o.err != nil {
			return nil, fmt.Errorf("bench sched: calibration request: %w", o.err)
		}
		if i > 0 { // the first request of a fresh process is slower
			coldT = append(coldT, ms(o.first.Sub(o.sent)))
		}
	}
	warm := cold(0)
	for i := range 6 {
		o := cl.chat(ctx, warm, question(rng, -100-i), c.OutputTokens)
		if o.err != nil {
			return nil, fmt.Errorf("bench sched: calibration request: %w", o.err)
		}
		if i >= c.Engines { // round-robin: every engine has seen the prompt once
			warmT = append(warmT, ms(o.first.Sub(o.sent)))
		}
	}
	cal := Calibration{ColdTTFTMS: median(coldT), WarmTTFTMS: median(warmT),
		Concurrency: 2 * c.Engines * c.SlotsPerEngine}
	if cal.WarmTTFTMS > 0 {
		cal.ColdWarm = cal.ColdTTFTMS / cal.WarmTTFTMS
	}
	rep.ColdWarm = cal.ColdWarm
	// Round-robin's capacity on this very workload (its tenants and prompts, closed loop,
	// a queue behind every slot): "near capacity" means near the baseline's capacity.
	n := closedLoopRequests(c)
	w.arr = arrivals(c.Seed+1, n, c.Tenants, 1, c.Skew)
	cpu0 := sampleCPU(f.pids())
	tokPerSec, rps, err := closedLoop(ctx, c, cl, w)
	if err != nil {
		return nil, err
	}
	cal.OtherCPUs = foreignCPU(cpu0, sampleCPU(f.pids()))
	cal.Requests, cal.CapacityRPS, cal.CapacityTokPerSec = n, rps, tokPerSec
	rep.Calibration = cal

	w.rate = c.Rate
	if w.rate == 0 {
		w.rate = c.Load * cal.CapacityRPS
	}
	w.slo = c.SLO
	if w.slo == 0 {
		w.slo = time.Duration(5 * cal.ColdTTFTMS * float64(time.Millisecond)).Round(time.Millisecond)
	}
	n = c.Requests
	if c.Duration > 0 {
		n = max(1, int(c.Duration.Seconds()*w.rate))
	}
	w.arr = arrivals(c.Seed, c.Warmup+n, c.Tenants, w.rate, c.Skew)
	rep.Setup = Setup{Engines: c.Engines, SlotsPerEngine: c.SlotsPerEngine, Threads: c.Threads,
		ContextPerSlot: c.Context, CacheRAMMiB: c.CacheRAM, Tenants: c.Tenants, Skew: c.Skew,
		SystemTokens: int(sysTokens + 0.5), OutputTokens: c.OutputTokens, Requests: n, Rounds: c.Rounds, Warmup: c.Warmup,
		Load: w.rate / cal.CapacityRPS, RateRPS: w.rate, SLOMS: ms(w.slo), Seed: c.Seed,
		Fresh: "every policy starts new llama-server processes (empty slots, nothing cached)",
		Path:  "HTTP client -> gateway -> router pool -> scheduler (policy) -> llamacpp backend -> llama-server",
		Model: model, Rig: RigPrefill, CPUs: runtime.NumCPU(), LoadAvg: loadAvg, PrefixWait: !c.NoPrefixWait}
	switch {
	case c.Model != "":
		rep.Setup.Rig = RigGiven
	case c.Quick:
		rep.Setup.Rig = RigQuick
	}
	for _, p := range c.Policies {
		rep.Setup.Policies = append(rep.Setup.Policies, string(p))
	}
	fmt.Fprintf(c.Progress, "bench sched: calibration: system prompts %.0f tokens; unloaded TTFT cold %.1f ms, warm %.1f ms (%.1fx); "+
		"round-robin capacity on the workload %.1f req/s (%.0f output tok/s, %d requests, %d in flight, other processes %.2f CPUs); rate %.1f req/s (load %.2f), SLO %v\n",
		sysTokens, cal.ColdTTFTMS, cal.WarmTTFTMS, cal.ColdWarm, cal.CapacityRPS, cal.CapacityTokPerSec, cal.Requests, cal.Concurrency, cal.OtherCPUs,
		w.rate, rep.Setup.Load, w.slo)
	return w, nil
}

// record is one request of a policy's run.
type record struct {
	arrival
	due time.Time
	outcome
	placement
	placed bool
}

// policyRun is one run of the arrival sequence under one policy: its measured records
// (warm-up dropped) and the scheduler's prefix counters.
type policyRun struct {
	recs         []record
	blocks, hits float64
	foreign      float64 // CPUs other processes used meanwhile
	// capTokPerSec and capRPS are the closed-loop capacity under the policy: every slot
	// busy and a queue behind them, the workload's tenants in its order.
	capTokPerSec, capRPS float64
}

// runPolicy runs the arrival sequence through a fresh fleet under policy pol.
func runPolicy(ctx context.Context, c *Config, model string, w *workload, pol scheduler.Policy, round int) (*policyRun, error) {
	f, err := startFleet(ctx, c, model)
	if err != nil {
		return nil, err
	}
	defer f.stop()
	p, err := newPipeline(ctx, f, pol, c.NoPrefixWait)
	if err != nil {
		return nil, err
	}
	defer p.close()
	cl := newClient(p.url())
	defer cl.close()
	recs := make([]record, len(w.arr))
	cpu0 := sampleCPU(f.pids())
	start := time.Now().Add(20 * time.Millisecond)
	var wg sync.WaitGroup
	tm := time.NewTimer(0)
	defer tm.Stop()
	<-tm.C
	for i, a := range w.arr {
		due := start.Add(a.at)
		if d := time.Until(due); d > 0 {
			tm.Reset(d)
			select {
			case <-tm.C:
			case <-ctx.Done():
				wg.Wait()
				return nil, ctx.Err()
			}
		}
		recs[i].arrival, recs[i].due = a, due
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs[i].outcome = cl.chat(ctx, w.prompts[a.tenant], a.question, c.OutputTokens)
		}()
	}
	wg.Wait()
	cpu1 := sampleCPU(f.pids())
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i := range recs {
		recs[i].placement, recs[i].placed = p.log.get(recs[i].id)
	}
	pr := &policyRun{recs: recs[min(c.Warmup, len(recs)):], foreign: foreignCPU(cpu0, cpu1)}
	pr.blocks, pr.hits = p.prefixStats()
	if pr.capTokPerSec, pr.capRPS, err = closedLoop(ctx, c, cl, w); err != nil {
		return nil, err
	}
	if c.Trace != nil {
		writeTrace(c.Trace, string(pol), round, recs, start)
	}
	return pr, nil
}

// closedLoop measures throughput at saturation: twice as many clients as slots send the
// workload's requests back to back (each tenant's prompt, in the arrival order), so the
// scheduler always has a queue to choose from. An open-loop run below capacity delivers
// the offered load whatever the policy; this is where a policy's capacity shows.
//
// Only the steady part counts: completions after the first fifth (fresh engines start
// with empty caches) and before the last requests were sent (the clients then run out
// of work and slots empty). Counting the whole run, as an earlier version did, put the
// calibrated capacity anywhere from 19 to 28 req/s on the same machine.
func closedLoop(ctx context.Context, c *Config, cl *client, w *workload) (tokPerSec, rps float64, err error) {
	n, conc := closedLoopRequests(c), 2*c.Engines*c.SlotsPerEngine
	var mu sync.Mutex
	type done struct {
		at     time.Time
		tokens int
	}
	var ends []done
	var firstErr error
	var lastSent time.Time
	next := 0
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next >= n || firstErr != nil {
					mu.Unlock()
					return
				}
				a := w.arr[next%len(w.arr)]
				next++
				if next == n {
					lastSent = time.Now()
				}
				mu.Unlock()
				o := cl.chat(ctx, w.prompts[a.tenant], a.question, c.OutputTokens)
				mu.Lock()
				if o.err != nil && firstErr == nil {
					firstErr = o.err
				}
				ends = append(ends, done{time.Now(), o.completion})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, 0, fmt.Errorf("bench sched: closed-loop run: %w", firstErr)
	}
	sort.Slice(ends, func(a, b int) bool { return ends[a].at.Before(ends[b].at) })
	from := n / 5
	to := from
	for to+1 < len(ends) && !ends[to+1].at.After(lastSent) {
		to++
	}
	if to-from < n/4 { // too few in the window (cannot happen with n >= 8 x conc): take all
		from, to = 0, len(ends)-1
	}
	tokens := 0
	for _, e := range ends[from+1 : to+1] {
		tokens += e.tokens
	}
	el := ends[to].at.Sub(ends[from].at).Seconds()
	if el <= 0 {
		return 0, 0, errors.New("bench sched: closed-loop run: no time elapsed")
	}
	return float64(tokens) / el, float64(to-from) / el, nil
}

// closedLoopRequests is how many requests a closed-loop run sends: 16 per slot, so that
// its steady part holds enough of them.
func closedLoopRequests(c *Config) int { return max(16*c.Engines*c.SlotsPerEngine, 128) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(xs []float64) float64 { return quantile(xs, 0.5) }

// quantile is the q-quantile of xs (nearest rank); xs is sorted in place.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	if !sort.Float64sAreSorted(xs) {
		slices.Sort(xs)
	}
	i := int(q*float64(len(xs))+0.5) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

// hostLoad is the 1-minute load average (Linux; 0 elsewhere).
func hostLoad() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
