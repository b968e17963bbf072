package route

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/router/classify"
)

// Targets of the classify part (issue 9, part 5).
const (
	TargetAPGR       = 0.7
	TargetShareAt95  = 0.30
	TargetClassifyNS = 5000
)

// DefaultDataDir is RouteLLM's published data, relative to the repository root.
const DefaultDataDir = "../shared/data/route"

// ClassifyConfig sets up the classify part.
type ClassifyConfig struct {
	// DataDir holds RouteLLM's data (routellm_mt_bench; with Train also routellm_mmlu and
	// routellm_gsm8k).
	DataDir string
	// Weights is a weights file; "" uses the embedded default.
	Weights string
	// Train fits fresh weights on DataDir's MMLU and GSM8K (default options) instead of
	// loading them, to check the whole pipeline.
	Train bool
	// LatencyFor is how long to time classifications (default 300ms).
	LatencyFor time.Duration
	// Progress receives a line per step (nil: none).
	Progress io.Writer
}

// ClassifyResult is the classify part's results.
type ClassifyResult struct {
	Weights string // "embedded", a path, or "trained in this run"

	// Latency of Model.Score over MT-Bench's 160 requests, timed one call at a time and
	// per pass over all of them. NS is the median over passes of a pass's mean per call:
	// the figure least disturbed by other processes on a shared machine. MeanNS is the
	// mean of every call.
	Calls     int
	NS        float64
	MeanNS    float64
	P50NS     float64
	P99NS     float64
	MaxNS     float64
	AllocsPer float64
	// LongNS is the mean time for one 64 KiB prompt (the scan is bounded, so it should be
	// close to MeanNS).
	LongNS float64

	// PerTurn evaluates each of MT-Bench's 160 turns as the request a client sends;
	// FirstTurn routes each question on its first turn (RouteLLM's way), 80 requests.
	PerTurn, FirstTurn *classify.Comparison
}

var _ Section = (*ClassifyResult)(nil)

// RunClassify runs the classify part.
func RunClassify(ctx context.Context, c ClassifyConfig) (*ClassifyResult, error) {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.LatencyFor <= 0 {
		c.LatencyFor = 300 * time.Millisecond
	}
	progress := func(format string, args ...any) {
		if c.Progress != nil {
			fmt.Fprintf(c.Progress, "bench route: "+format+"\n", args...)
		}
	}
	res := &ClassifyResult{}
	var m *classify.Model
	var err error
	switch {
	case c.Train:
		progress("training on %s (MMLU + GSM8K)", c.DataDir)
		xs, dropped, err := classify.RouteLLMTrain(c.DataDir)
		if err != nil {
			return nil, err
		}
		if len(dropped) > 0 {
			progress("left out (a model below chance): %s", strings.Join(dropped, ", "))
		}
		f, err := classify.Train(xs, classify.DefaultTrainOptions())
		if err != nil {
			return nil, err
		}
		if m, err = classify.New(f); err != nil {
			return nil, err
		}
		res.Weights = "trained in this run"
	case c.Weights != "":
		m, err = classify.Load(c.Weights)
		res.Weights = c.Weights
	default:
		m, err = classify.Default()
		res.Weights = "embedded"
	}
	if err != nil {
		return nil, err
	}
	perTurn, firstTurn, err := classify.RouteLLMMTBench(c.DataDir)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	progress("timing classifications for %v", c.LatencyFor)
	reqs := make([]*models.Request, len(perTurn))
	for i := range perTurn {
		reqs[i] = perTurn[i].Request()
	}
	res.time(m, reqs, c.LatencyFor)
	long := &models.Request{Kind: models.KindChat, Messages: []models.Message{{Role: "user",
		Content: strings.Repeat("Please review this paragraph of a long report. ", 64<<10/48)}}}
	res.LongNS = meanNS(m, long, 2000)

	progress("evaluating on MT-Bench (%d turns, %d questions)", len(perTurn), len(firstTurn))
	if res.PerTurn, err = classify.Compare(m, perTurn); err != nil {
		return nil, err
	}
	if res.FirstTurn, err = classify.Compare(m, firstTurn); err != nil {
		return nil, err
	}
	return res, nil
}

// time measures Score one call at a time, round-robin over reqs, for about d.
func (res *ClassifyResult) time(m *classify.Model, reqs []*models.Request, d time.Duration) {
	for _, r := range reqs { // warm up
		m.Score(r)
	}
	const maxCalls = 1 << 20
	ns := make([]float64, 0, maxCalls+len(reqs))
	passes := make([]float64, 0, maxCalls/len(reqs)+1)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	for (time.Since(start) < d && len(ns) < maxCalls) || len(passes) < 3 {
		p0 := time.Now()
		for _, r := range reqs {
			t0 := time.Now()
			m.Score(r)
			ns = append(ns, float64(time.Since(t0).Nanoseconds()))
		}
		passes = append(passes, float64(time.Since(p0).Nanoseconds())/float64(len(reqs)))
	}
	runtime.ReadMemStats(&ms1)
	slices.Sort(passes)
	res.NS = passes[len(passes)/2]
	res.Calls = len(ns)
	res.AllocsPer = float64(ms1.Mallocs-ms0.Mallocs) / float64(len(ns))
	var sum float64
	for _, x := range ns {
		sum += x
	}
	res.MeanNS = sum / float64(len(ns))
	slices.Sort(ns)
	res.P50NS = ns[len(ns)/2]
	res.P99NS = ns[len(ns)*99/100]
	res.MaxNS = ns[len(ns)-1]
}

func meanNS(m *classify.Model, r *models.Request, n int) float64 {
	m.Score(r)
	start := time.Now()
	for range n {
		m.Score(r)
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

// Name is "classify".
func (res *ClassifyResult) Name() string { return "classify" }

// WriteTable prints the latency and both MT-Bench evaluations.
func (res *ClassifyResult) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "classifier (%s weights): %.0f ns per request (median pass over MT-Bench's requests); %d calls: mean %.0f ns, p50 %.0f ns, p99 %.0f ns, max %.0f ns; %.2f allocs per call; a 64 KiB prompt %.0f ns\n\n",
		res.Weights, res.NS, res.Calls, res.MeanNS, res.P50NS, res.P99NS, res.MaxNS, res.AllocsPer, res.LongNS)
	if err := res.PerTurn.WriteTable(w, "MT-Bench, each turn routed as sent (headline)"); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return res.FirstTurn.WriteTable(w, "MT-Bench, each question routed on its first turn (RouteLLM's way)")
}

func (res *ClassifyResult) row(c *classify.Comparison, name string) classify.Row {
	if r := c.Row(name); r != nil {
		return *r
	}
	return classify.Row{}
}

// Figures are the classify part's JSON figures.
func (res *ClassifyResult) Figures() map[string]any {
	cls := res.row(res.PerTurn, classify.RowClassifier)
	re := res.row(res.PerTurn, classify.RowRegex)
	rnd := res.row(res.PerTurn, classify.RowRandom)
	orc := res.row(res.PerTurn, classify.RowOracle)
	cls1 := res.row(res.FirstTurn, classify.RowClassifier)
	re1 := res.row(res.FirstTurn, classify.RowRegex)
	return map[string]any{
		"classify_ns":                        round1(res.NS),
		"classify_mean_ns":                   round1(res.MeanNS),
		"classify_p99_ns":                    round1(res.P99NS),
		"classify_allocs":                    round3(res.AllocsPer),
		"classify_long_ns":                   round1(res.LongNS),
		"apgr_mt_bench":                      round3(cls.APGR),
		"strong_share_at_95_mt_bench":        round3(cls.ShareAt95),
		"regex_apgr_mt_bench":                round3(re.APGR),
		"regex_strong_share_at_95_mt_bench":  round3(re.ShareAt95),
		"random_apgr_mt_bench":               round3(rnd.APGR),
		"random_strong_share_at_95_mt_bench": round3(rnd.ShareAt95),
		"oracle_apgr_mt_bench":               round3(orc.APGR),
		"apgr_mt_bench_turn1":                round3(cls1.APGR),
		"strong_share_at_95_mt_bench_turn1":  round3(cls1.ShareAt95),
		"regex_apgr_mt_bench_turn1":          round3(re1.APGR),
	}
}

// Misses checks the targets on the headline (per-turn) evaluation.
func (res *ClassifyResult) Misses() []string {
	var out []string
	cls := res.row(res.PerTurn, classify.RowClassifier)
	if cls.APGR < TargetAPGR {
		out = append(out, fmt.Sprintf("APGR on MT-Bench %.3f < %.2f", cls.APGR, TargetAPGR))
	}
	if cls.ShareAt95 > TargetShareAt95 {
		out = append(out, fmt.Sprintf("strong share at 95%% quality on MT-Bench %.1f%% > %.0f%%", 100*cls.ShareAt95, 100*TargetShareAt95))
	}
	if res.NS > TargetClassifyNS {
		out = append(out, fmt.Sprintf("classification %.0f ns > %d ns (on a loaded machine, rerun quiet)", res.NS, TargetClassifyNS))
	}
	return out
}

func round1(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }
func round3(x float64) float64 {
	if x < 0 {
		return -round3(-x)
	}
	return float64(int64(x*1000+0.5)) / 1000
}
