package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Row is one target's figures at one rate and mode. Latencies are in microseconds, from
// each request's scheduled send time to its whole answer read; added latencies are the
// target's minus the direct call's; ratios (sluice and control rows only) divide the
// target's added latency by the null proxy's.
type Row struct {
	Rate             int      `json:"rate"`
	Mode             Mode     `json:"mode"`
	Target           string   `json:"target"`
	Requests         int      `json:"requests"`
	AchievedRPS      float64  `json:"achieved_rps"`
	P50US            float64  `json:"p50_us"`
	P90US            float64  `json:"p90_us"`
	P99US            float64  `json:"p99_us"`
	TTFBP50US        float64  `json:"ttfb_p50_us,omitempty"` // streams: time to the response headers
	AddedP50US       float64  `json:"added_p50_us"`
	AddedP99US       float64  `json:"added_p99_us"`
	RatioP50         *float64 `json:"ratio_p50,omitempty"`
	RatioP99         *float64 `json:"ratio_p99,omitempty"`
	CPUPerReqUS      float64  `json:"cpu_us_per_req"` // the hop's process (in process: the whole benchmark)
	AllocBytesPerReq float64  `json:"alloc_bytes_per_req"`
	AllocsPerReq     float64  `json:"allocs_per_req"`
	// EngineConns is how many connections to the engine were opened while measuring: a
	// hop that reuses its connections opens none.
	EngineConns  int64  `json:"engine_conns_opened"`
	Errors       int    `json:"errors"`
	WarmupErrors int    `json:"warmup_errors"`
	FirstError   string `json:"first_error,omitempty"`
}

// Report is a whole run. Headline ratios are at RefRate (or the rate nearest it) and are
// null when the null proxy measured no added latency.
type Report struct {
	RefRate               int      `json:"ref_rate"`
	RatioP50              *float64 `json:"ratio_p50"` // non-streaming, sluice-added / null-added
	RatioP99              *float64 `json:"ratio_p99"`
	StreamRatioP50        *float64 `json:"stream_ratio_p50"`
	StreamRatioP99        *float64 `json:"stream_ratio_p99"`
	ControlRatioP50       *float64 `json:"control_ratio_p50"` // non-streaming, control-added / null-added
	ControlRatioP99       *float64 `json:"control_ratio_p99"`
	StreamControlRatioP50 *float64 `json:"stream_control_ratio_p50"`
	StreamControlRatioP99 *float64 `json:"stream_control_ratio_p99"`
	TargetRatioP50        float64  `json:"target_ratio_p50"`
	// What does not depend on the baseline, at RefRate: sluice's added p50 (over
	// calling the engine directly), how much more that is than the null proxy's, and
	// CPU per request in sluice's hop against the null proxy's.
	SluiceAddedP50US       float64 `json:"sluice_added_p50_us"`
	SluiceStreamAddedP50US float64 `json:"sluice_stream_added_p50_us"`
	OverNullP50US          float64 `json:"sluice_over_null_p50_us"`
	StreamOverNullP50US    float64 `json:"sluice_stream_over_null_p50_us"`
	SluiceCPUUS            float64 `json:"sluice_cpu_us_per_req"`
	NullCPUUS              float64 `json:"null_cpu_us_per_req"`
	SluiceStreamCPUUS      float64 `json:"sluice_stream_cpu_us_per_req"`
	NullStreamCPUUS        float64 `json:"null_stream_cpu_us_per_req"`
	// Peers, at RefRate: each one's added p50 (also as peer_<name>_added_p50_us).
	Peers     []PeerSummary `json:"peers,omitempty"`
	PeerRSSMB []PeerRSS     `json:"-"`
	// PeersP50Met: at RefRate, sluice's added p50 is below every peer's in every mode
	// both measured (absent without peers, or when none was: a row whose every request
	// failed has no p50); PeersBehind names the peers and modes where it is not.
	PeersP50Met *bool    `json:"peers_p50_met,omitempty"`
	PeersBehind []string `json:"peers_behind,omitempty"`
	// Saturated names the gateways that delivered under 95% of the offered rate at
	// RefRate ("stream/sluice 1519/s"): their added latency is mostly queueing.
	// LoadShort names the modes where direct did (the load generator or the fake engine
	// could not keep up, and every row of that mode is suspect).
	Saturated []string `json:"saturated,omitempty"`
	LoadShort []string `json:"load_short,omitempty"`
	// Pass: p50 ratios at RefRate within the target for every mode run, sluice ahead of
	// every peer at p50 (when peers ran), and no errors in the benchmark's own targets.
	// p99 is reported, never gated: two identical proxies differ several-fold there.
	Pass       bool         `json:"pass"`
	Errors     int          `json:"errors"`      // direct, null, control and sluice: all rates and modes, warm-ups included
	PeerErrors int          `json:"peer_errors"` // the peers' (each one's in Peers)
	RSSMB      float64      `json:"rss_mb"`      // peak RSS (VmHWM): sluice's process, or the whole benchmark in process
	RSSScope   string       `json:"rss_scope"`
	Config     ReportConfig `json:"config"`
	Runs       []Row        `json:"runs"`
}

// ReportConfig records how a run was set up.
type ReportConfig struct {
	Traffic    string    `json:"traffic"`
	Sizes      SizeStats `json:"request_sizes"`
	Chunks     int       `json:"stream_content_chunks"`
	Auth       bool      `json:"api_key_auth"`
	KeyLimits  bool      `json:"key_rate_limits"`
	Cache      bool      `json:"answer_cache"`
	Rates      []int     `json:"rates"`
	Modes      []Mode    `json:"modes"`
	Duration   string    `json:"duration_per_target"`
	Rounds     int       `json:"rounds"`
	Warmup     string    `json:"warmup_per_target"`
	Workers    int       `json:"workers"`
	GOMAXPROCS int       `json:"gomaxprocs"`
	NumCPU     int       `json:"num_cpu"`
	GoVersion  string    `json:"go_version"`
	Hops       string    `json:"hops"` // where the hops ran
}

func reportConfig(c *Config) (rc ReportConfig) {
	rc.Rates, rc.Modes = slices.Clone(c.Rates), slices.Clone(c.Modes)
	if c.Traffic != nil {
		rc.Traffic, rc.Sizes, rc.Chunks = c.Traffic.String(), c.Traffic.Sizes, len(c.Traffic.Answer.Pieces)
	}
	rc.Auth, rc.KeyLimits, rc.Cache = !c.NoAuth, !c.NoAuth && c.KeyLimits, !c.NoCache
	rc.Duration, rc.Rounds, rc.Warmup, rc.Workers = c.Duration.String(), c.Rounds, c.Warmup.String(), c.Workers
	rc.GOMAXPROCS, rc.NumCPU, rc.GoVersion = runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.Version()
	rc.Hops = hopsSeparate
	if len(c.Exec) == 0 {
		rc.Hops = hopsInProcess
	}
	return rc
}

// Where the hops ran, as the report says it.
const (
	hopsSeparate = "each hop in its own process (load generator, fake engine, null, control, sluice): " +
		"cpu/req and allocs/req are the hop's own process"
	hopsInProcess = "every hop in one process (--in-process): cpu/req and allocs/req are process-wide " +
		"(load generator and fake engine included): compare rows, not absolutes"
)

// What rss_mb measures.
const (
	rssScopeSluice    = "sluice's process alone (peak RSS, VmHWM)"
	rssScopeInProcess = "whole benchmark process: load generator, fake engine, both null proxies and sluice together"
)

// PeerSummary is one peer's figures at the reference rate, beside sluice's.
type PeerSummary struct {
	Name             string  `json:"name"`
	AddedP50US       float64 `json:"added_p50_us"`
	AddedP99US       float64 `json:"added_p99_us"`
	StreamAddedP50US float64 `json:"stream_added_p50_us"`
	StreamAddedP99US float64 `json:"stream_added_p99_us"`
	CPUUS            float64 `json:"cpu_us_per_req"`
	StreamCPUUS      float64 `json:"stream_cpu_us_per_req"`
	RSSMB            float64 `json:"rss_mb"` // peak (VmHWM); 0: its process was not found
	Errors           int     `json:"errors"`
}

// PeerRSS is a peer's peak RSS.
type PeerRSS struct {
	Name  string
	RSSMB float64
}

// summarize fills the headline figures from Runs.
func (r *Report) summarize(target float64, scope string) {
	r.TargetRatioP50, r.RSSScope = target, scope
	r.Errors, r.PeerErrors = 0, 0
	for _, row := range r.Runs {
		if isOwnTarget(row.Target) {
			r.Errors += row.Errors + row.WarmupErrors
		} else {
			r.PeerErrors += row.Errors + row.WarmupErrors
		}
	}
	r.RefRate = 0
	for _, row := range r.Runs {
		if r.RefRate == 0 || abs(row.Rate-RefRate) < abs(r.RefRate-RefRate) {
			r.RefRate = row.Rate
		}
	}
	pick := func(mode Mode, target string) (p50, p99 *float64) {
		if row := findRow(r.Runs, r.RefRate, mode, target); row != nil {
			return row.RatioP50, row.RatioP99
		}
		return nil, nil
	}
	r.RatioP50, r.RatioP99 = pick(NonStream, TargetSluice)
	r.StreamRatioP50, r.StreamRatioP99 = pick(Stream, TargetSluice)
	r.ControlRatioP50, r.ControlRatioP99 = pick(NonStream, TargetControl)
	r.StreamControlRatioP50, r.StreamControlRatioP99 = pick(Stream, TargetControl)
	row := func(mode Mode, target string) Row {
		if x := findRow(r.Runs, r.RefRate, mode, target); x != nil {
			return *x
		}
		return Row{}
	}
	sl, nu, sls, nus := row(NonStream, TargetSluice), row(NonStream, TargetNull), row(Stream, TargetSluice), row(Stream, TargetNull)
	r.SluiceAddedP50US, r.SluiceStreamAddedP50US = sl.AddedP50US, sls.AddedP50US
	r.OverNullP50US, r.StreamOverNullP50US = round(sl.AddedP50US-nu.AddedP50US, 1), round(sls.AddedP50US-nus.AddedP50US, 1)
	r.SluiceCPUUS, r.NullCPUUS, r.SluiceStreamCPUUS, r.NullStreamCPUUS = sl.CPUPerReqUS, nu.CPUPerReqUS, sls.CPUPerReqUS, nus.CPUPerReqUS
	r.Peers = r.Peers[:0]
	for _, x := range r.Runs {
		if x.Rate != r.RefRate || isOwnTarget(x.Target) || slices.ContainsFunc(r.Peers, func(p PeerSummary) bool { return p.Name == x.Target }) {
			continue
		}
		ns, st := row(NonStream, x.Target), row(Stream, x.Target)
		ps := PeerSummary{Name: x.Target, AddedP50US: ns.AddedP50US, AddedP99US: ns.AddedP99US, StreamAddedP50US: st.AddedP50US,
			StreamAddedP99US: st.AddedP99US, CPUUS: ns.CPUPerReqUS, StreamCPUUS: st.CPUPerReqUS}
		for _, y := range r.Runs {
			if y.Target == x.Target {
				ps.Errors += y.Errors + y.WarmupErrors
			}
		}
		for _, pr := range r.PeerRSSMB {
			if pr.Name == x.Target {
				ps.RSSMB = pr.RSSMB
			}
		}
		r.Peers = append(r.Peers, ps)
	}
	r.PeersP50Met, r.PeersBehind = nil, nil
	for _, p := range r.Peers {
		for _, m := range []Mode{NonStream, Stream} {
			sr, pr := findRow(r.Runs, r.RefRate, m, TargetSluice), findRow(r.Runs, r.RefRate, m, p.Name)
			dr := findRow(r.Runs, r.RefRate, m, TargetDirect)
			if sr == nil || pr == nil || dr == nil || sr.P50US <= 0 || pr.P50US <= 0 || dr.P50US <= 0 {
				continue // not run, or no request succeeded: nothing to compare
			}
			met := r.PeersP50Met == nil || *r.PeersP50Met
			if sr.AddedP50US >= pr.AddedP50US {
				met = false
				r.PeersBehind = append(r.PeersBehind, fmt.Sprintf("%s/%s", m, p.Name))
			}
			r.PeersP50Met = &met
		}
	}
	r.Saturated, r.LoadShort = nil, nil
	for _, x := range r.Runs {
		if x.Rate == r.RefRate && x.Requests > 0 && x.AchievedRPS < 0.95*float64(x.Rate) {
			if x.Target == TargetDirect {
				r.LoadShort = append(r.LoadShort, fmt.Sprintf("%s %.0f/s", x.Mode, x.AchievedRPS))
			} else {
				r.Saturated = append(r.Saturated, fmt.Sprintf("%s/%s %.0f/s", x.Mode, x.Target, x.AchievedRPS))
			}
		}
	}

	r.Pass = r.Errors == 0 && len(r.Runs) > 0 && (r.PeersP50Met == nil || *r.PeersP50Met)
	for _, m := range []Mode{NonStream, Stream} {
		if findRow(r.Runs, r.RefRate, m, TargetSluice) == nil {
			continue // mode not run
		}
		p50, _ := pick(m, TargetSluice)
		if p50 == nil || *p50 > target {
			r.Pass = false
		}
	}
}

// WriteTable prints the rows as a table, then the headline figures.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rate\tmode\ttarget\treqs\tachieved\tp50\tp99\tadded p50\tadded p99\tratio p50\tratio p99\tttfb p50\tcpu/req\tallocs/req\tengine conns\terrors\t")
	for i, row := range r.Runs {
		if i > 0 && (row.Rate != r.Runs[i-1].Rate || row.Mode != r.Runs[i-1].Mode) {
			fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t")
		}
		added50, added99 := "-", "-"
		if row.Target != TargetDirect {
			added50, added99 = formatDuration(row.AddedP50US*1e3), formatDuration(row.AddedP99US*1e3)
		}
		ttfb := "-"
		if row.TTFBP50US > 0 {
			ttfb = formatDuration(row.TTFBP50US * 1e3)
		}
		errs := strconv.Itoa(row.Errors)
		if row.WarmupErrors > 0 {
			errs += fmt.Sprintf(" (+%d warm-up)", row.WarmupErrors)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%.0f/s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%d\t%s\t\n",
			row.Rate, row.Mode, row.Target, row.Requests, row.AchievedRPS, formatDuration(row.P50US*1e3), formatDuration(row.P99US*1e3),
			added50, added99, ratioCell(row, row.RatioP50), ratioCell(row, row.RatioP99), ttfb,
			formatDuration(row.CPUPerReqUS*1e3), row.AllocsPerReq, row.EngineConns, errs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, row := range r.Runs {
		if row.FirstError != "" {
			fmt.Fprintf(w, "first error, %d RPS %s %s: %s\n", row.Rate, row.Mode, row.Target, row.FirstError)
		}
	}
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	if r.Config.Traffic != "" {
		auth := "API-key auth on (a key without limits)"
		switch {
		case !r.Config.Auth:
			auth = "auth off"
		case r.Config.KeyLimits:
			auth = "API-key auth on, the key has rate limits (never reached: checked in the store per request)"
		}
		cache := "answer cache on (every request a miss)"
		if !r.Config.Cache {
			cache = "answer cache off"
		}
		fmt.Fprintf(w, "\ntraffic: %s; %s; %s\n", r.Config.Traffic, auth, cache)
	}
	us := func(v float64) string { return formatDuration(v * 1e3) }
	_, err := fmt.Fprintf(w, "\nat %d RPS: sluice-added / null-added p50 %s non-streaming, %s streaming (target <= %.2f); "+
		"p99 %s / %s (reported, not gated)\n"+
		"noise control (identical null proxy) / null: p50 %s / %s, p99 %s / %s\n"+
		"without the baseline: sluice adds %s at p50 non-streaming (%s more than the null proxy), %s streaming (%s more); "+
		"CPU per request sluice %s vs null %s non-streaming, %s vs %s streaming\n"+
		"errors: %d (peers' not counted: %d); peak RSS %.1f MiB (%s)\n",
		r.RefRate, ptr(r.RatioP50), ptr(r.StreamRatioP50), r.TargetRatioP50, ptr(r.RatioP99), ptr(r.StreamRatioP99),
		ptr(r.ControlRatioP50), ptr(r.StreamControlRatioP50), ptr(r.ControlRatioP99), ptr(r.StreamControlRatioP99),
		us(r.SluiceAddedP50US), us(r.OverNullP50US), us(r.SluiceStreamAddedP50US), us(r.StreamOverNullP50US),
		us(r.SluiceCPUUS), us(r.NullCPUUS), us(r.SluiceStreamCPUUS), us(r.NullStreamCPUUS),
		r.Errors, r.PeerErrors, r.RSSMB, r.RSSScope)
	if err != nil {
		return err
	}
	if len(r.Saturated) > 0 {
		if _, err := fmt.Fprintf(w, "under %d RPS (their added latency is mostly queueing): %s\n", r.RefRate, strings.Join(r.Saturated, ", ")); err != nil {
			return err
		}
	}
	if len(r.LoadShort) > 0 {
		if _, err := fmt.Fprintf(w, "direct under %d RPS (the load generator or the fake engine did not keep up; every row of the mode is suspect): %s\n",
			r.RefRate, strings.Join(r.LoadShort, ", ")); err != nil {
			return err
		}
	}
	if len(r.Peers) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "\nat %d RPS\tadded p50\tadded p99\tstream added p50\tstream added p99\tcpu/req\tstream cpu/req\tpeak RSS\terrors\t\n", r.RefRate)
		fmt.Fprintf(tw, "sluice\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f MiB\t-\t\n", us(r.SluiceAddedP50US), us(findAdded99(r, NonStream)),
			us(r.SluiceStreamAddedP50US), us(findAdded99(r, Stream)), us(r.SluiceCPUUS), us(r.SluiceStreamCPUUS), r.RSSMB)
		for _, p := range r.Peers {
			rss := "-"
			if p.RSSMB > 0 {
				rss = fmt.Sprintf("%.1f MiB", p.RSSMB)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", p.Name, us(p.AddedP50US), us(p.AddedP99US), us(p.StreamAddedP50US),
				us(p.StreamAddedP99US), us(p.CPUUS), us(p.StreamCPUUS), rss, p.Errors)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		peers := "sluice adds less than every peer at p50: met"
		switch {
		case r.PeersP50Met == nil:
			peers = "sluice adds less than every peer at p50: not measured (no mode where sluice, direct and a peer all answered)"
		case !*r.PeersP50Met:
			peers = "sluice adds less than every peer at p50: missed (behind in " + strings.Join(r.PeersBehind, ", ") + ")"
		}
		if _, err := fmt.Fprintln(w, peers); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(w, "%s\n%s\n", verdict, r.Config.Hops)
	return err
}

func findAdded99(r *Report, mode Mode) float64 {
	if x := findRow(r.Runs, r.RefRate, mode, TargetSluice); x != nil {
		return x.AddedP99US
	}
	return 0
}

func ratioCell(row Row, v *float64) string {
	switch {
	case row.Target == TargetNull:
		return "(base)"
	case row.Target == TargetDirect:
		return "-"
	}
	return ptr(v)
}

func ptr(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return strconv.FormatFloat(*v, 'f', 2, 64)
}

// isOwnTarget reports whether a target is one the benchmark starts itself (not a peer).
func isOwnTarget(name string) bool {
	switch name {
	case TargetDirect, TargetNull, TargetControl, TargetSluice:
		return true
	}
	return false
}

// JSON is the report as one line of JSON, with peer_<name>_added_p50_us for each peer.
func (r *Report) JSON() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil || len(r.Peers) == 0 {
		return b, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for _, p := range r.Peers {
		m["peer_"+p.Name+"_added_p50_us"] = json.RawMessage(strconv.FormatFloat(p.AddedP50US, 'f', -1, 64))
		m["peer_"+p.Name+"_stream_added_p50_us"] = json.RawMessage(strconv.FormatFloat(p.StreamAddedP50US, 'f', -1, 64))
	}
	return json.Marshal(m)
}

// percentiles returns the nearest-rank percentiles qs of xs (sorting xs in place).
func percentiles(xs []int64, qs ...float64) []int64 {
	slices.Sort(xs)
	out := make([]int64, len(qs))
	for i, q := range qs {
		k := int(math.Ceil(q*float64(len(xs)))) - 1
		out[i] = xs[min(max(k, 0), len(xs)-1)]
	}
	return out
}

func us(ns int64) float64 { return round(float64(ns)/1e3, 1) }

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
