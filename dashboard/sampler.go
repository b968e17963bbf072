package dashboard

import (
	"context"
	"encoding/json"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Options configure a Sampler. Gatherer is required.
type Options struct {
	Gatherer prometheus.Gatherer
	// Interval between samples (default 2s); Keep is how many points are kept (default
	// 900: half an hour at 2s).
	Interval time.Duration
	Keep     int
}

// Point is one sample: values by key (see derive), absent when unknown (no traffic in
// the interval for a ratio, no GPU, a metric not registered).
type Point struct {
	T int64              `json:"t"` // unix milliseconds
	V map[string]float64 `json:"v"`
}

// Sampler keeps the recent history of sluice's derived metrics.
type Sampler struct {
	opts Options
	mu   sync.Mutex
	ring []Point // oldest first, at most Keep
	prev *snapshot
}

// New returns a Sampler; call Run (or Sample) to fill it.
func New(o Options) *Sampler {
	if o.Interval <= 0 {
		o.Interval = 2 * time.Second
	}
	if o.Keep <= 0 {
		o.Keep = 900
	}
	return &Sampler{opts: o}
}

// Run samples every Interval until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	s.Sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.Sample(now)
		}
	}
}

// Sample reads the registry once and appends a point (rates are over the time since
// the previous sample; the first sample has none).
func (s *Sampler) Sample(now time.Time) {
	mfs, err := s.opts.Gatherer.Gather()
	if err != nil && len(mfs) == 0 {
		return
	}
	cur := newSnapshot(now, mfs)
	s.mu.Lock()
	defer s.mu.Unlock()
	p := Point{T: now.UnixMilli(), V: derive(s.prev, cur)}
	s.prev = cur
	if len(s.ring) >= s.opts.Keep {
		copy(s.ring, s.ring[1:])
		s.ring = s.ring[:len(s.ring)-1]
	}
	s.ring = append(s.ring, p)
}

// Data returns the points after since (unix ms; 0: all) and the sampling interval:
// {"interval_ms":2000,"points":[{"t":...,"v":{...}}]}.
func (s *Sampler) Data(since int64) []byte {
	s.mu.Lock()
	i := sort.Search(len(s.ring), func(i int) bool { return s.ring[i].T > since })
	pts := append([]Point(nil), s.ring[i:]...)
	s.mu.Unlock()
	b, _ := json.Marshal(struct {
		Interval int64   `json:"interval_ms"`
		Points   []Point `json:"points"`
	}{s.opts.Interval.Milliseconds(), pts})
	return b
}

// snapshot is the registry at one instant, by metric name.
type snapshot struct {
	t   time.Time
	fam map[string]*dto.MetricFamily
}

func newSnapshot(t time.Time, mfs []*dto.MetricFamily) *snapshot {
	s := &snapshot{t: t, fam: make(map[string]*dto.MetricFamily, len(mfs))}
	for _, mf := range mfs {
		s.fam[mf.GetName()] = mf
	}
	return s
}

// label returns a metric's label value.
func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
}

// sum adds a metric's series that keep passes (nil: all); ok is false when the metric
// is not registered.
func (s *snapshot) sum(name string, keep func(*dto.Metric) bool) (float64, bool) {
	if s == nil {
		return 0, false
	}
	mf, ok := s.fam[name]
	if !ok {
		return 0, false
	}
	var v float64
	for _, m := range mf.GetMetric() {
		if keep == nil || keep(m) {
			v += value(m)
		}
	}
	return v, true
}

// by sums a metric's series by one label's values.
func (s *snapshot) by(name, lbl string) map[string]float64 {
	out := map[string]float64{}
	if s == nil {
		return out
	}
	if mf, ok := s.fam[name]; ok {
		for _, m := range mf.GetMetric() {
			out[label(m, lbl)] += value(m)
		}
	}
	return out
}

// buckets sums a histogram's series: cumulative counts by upper bound.
func (s *snapshot) buckets(name string) map[float64]float64 {
	out := map[float64]float64{}
	if s == nil {
		return out
	}
	if mf, ok := s.fam[name]; ok {
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			for _, b := range h.GetBucket() {
				out[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			}
			out[math.Inf(1)] += float64(h.GetSampleCount())
		}
	}
	return out
}

// quantile estimates the q-quantile of the observations between two histogram
// readings, interpolating within a bucket as Prometheus's histogram_quantile does.
func quantile(q float64, prev, cur map[float64]float64) (float64, bool) {
	bounds := make([]float64, 0, len(cur))
	for b := range cur {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 {
		return 0, false
	}
	total := cur[math.Inf(1)] - prev[math.Inf(1)]
	if total <= 0 {
		return 0, false
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range bounds {
		n := cur[b] - prev[b]
		if n >= rank {
			if math.IsInf(b, 1) {
				return lower, true // beyond the last bound: report it
			}
			if n == below {
				return b, true
			}
			return lower + (b-lower)*(rank-below)/(n-below), true
		}
		lower, below = b, n
	}
	return lower, true
}

// derive computes a point's values from two readings of the registry.
func derive(prev, cur *snapshot) map[string]float64 {
	v := map[string]float64{}
	set := func(k string, x float64, ok bool) {
		if ok && !math.IsNaN(x) && !math.IsInf(x, 0) {
			v[k] = x
		}
	}
	gauge := func(k, name string) {
		x, ok := cur.sum(name, nil)
		set(k, x, ok)
	}
	var dt float64
	if prev != nil {
		dt = cur.t.Sub(prev.t).Seconds()
	}
	// delta is a counter's increase since the previous reading (ok: there is one).
	delta := func(name string, keep func(*dto.Metric) bool) (float64, bool) {
		a, okA := prev.sum(name, keep)
		b, okB := cur.sum(name, keep)
		if !okB || dt <= 0 {
			return 0, false
		}
		if !okA || b < a { // new, or reset
			a = 0
		}
		return b - a, true
	}
	rate := func(k, name string, keep func(*dto.Metric) bool) {
		d, ok := delta(name, keep)
		set(k, d/dt, ok)
	}
	ratio := func(k string, num, den float64, ok bool) {
		set(k, num/den, ok && den > 0)
	}
	notOK := func(m *dto.Metric) bool { return !strings.HasPrefix(label(m, "code"), "2") }

	// Traffic.
	rate("rps", "sluice_requests_total", nil)
	rate("err_rps", "sluice_requests_total", notOK)
	gauge("inflight", "sluice_inflight_requests")
	if prev != nil {
		for _, q := range []struct {
			k string
			q float64
		}{{"p50", .5}, {"p90", .9}, {"p99", .99}} {
			x, ok := quantile(q.q, prev.buckets("sluice_time_to_first_token_seconds"), cur.buckets("sluice_time_to_first_token_seconds"))
			set("ttft_"+q.k, x, ok)
			x, ok = quantile(q.q, prev.buckets("sluice_request_duration_seconds"), cur.buckets("sluice_request_duration_seconds"))
			set("latency_"+q.k, x, ok)
		}
		for model, n := range cur.by("sluice_requests_total", "model") {
			if model == "" {
				continue
			}
			set("route."+model, (n-prev.by("sluice_requests_total", "model")[model])/dt, dt > 0)
		}
	}

	// Scheduler and engines.
	for class, n := range cur.by("sluice_scheduler_queue_depth", "class") {
		v["queue."+class] = n
	}
	for b, n := range cur.by("sluice_scheduler_slots", "backend") {
		v["engine."+b+".slots"] = n
	}
	for b, n := range cur.by("sluice_scheduler_inflight", "backend") {
		v["engine."+b+".busy"] = n
	}
	for b, n := range cur.by("sluice_scheduler_backend_healthy", "backend") {
		v["engine."+b+".healthy"] = n
	}

	// GPUs.
	for _, g := range []struct{ k, name string }{{"util", "sluice_gpu_utilization_ratio"}, {"mem_used", "sluice_gpu_memory_used_bytes"},
		{"mem_total", "sluice_gpu_memory_total_bytes"}, {"power", "sluice_gpu_power_watts"}, {"power_limit", "sluice_gpu_power_limit_watts"},
		{"temp", "sluice_gpu_temperature_celsius"}} {
		for i, x := range cur.by(g.name, "gpu") {
			v["gpu."+i+"."+g.k] = x
		}
	}
	gauge("gpus", "sluice_gpus")

	// Cache: hits over lookups (bypassed requests are not lookups).
	isHit := func(m *dto.Metric) bool { return strings.HasPrefix(label(m, "result"), "hit") }
	isLookup := func(m *dto.Metric) bool { r := label(m, "result"); return r != "bypass" }
	hits, okH := delta("sluice_cache_requests_total", isHit)
	looks, okL := delta("sluice_cache_requests_total", isLookup)
	ratio("cache_hit", hits, looks, okH && okL)
	gauge("cache_saved_usd", "sluice_cache_saved_usd_total")

	// Compression: share of prompt tokens removed.
	orig, okO := delta("sluice_compress_original_tokens_total", nil)
	comp, okC := delta("sluice_compress_compressed_tokens_total", nil)
	ratio("compress_saved", orig-comp, orig, okO && okC)
	set("compress_tokens_saved_ps", (orig-comp)/dt, okO && okC)

	// Overflow to the cloud.
	rate("overflow_rps", "sluice_overflow_requests_total", nil)

	// Cost.
	rate("tokens_ps", "sluice_tokens_total", nil)
	cost, okCost := delta("sluice_cost_usd_total", nil)
	toks, okT := delta("sluice_tokens_total", nil)
	ratio("cost_per_m", cost*1e6, toks, okCost && okT)
	gauge("cost_usd", "sluice_cost_usd_total")
	gauge("reference_usd", "sluice_reference_cost_usd_total")
	gauge("savings_usd", "sluice_savings_usd")

	// Batch API.
	gauge("batch_pending", "sluice_batch_lines_pending")
	gauge("batch_inflight", "sluice_batch_lines_inflight")
	rate("batch_lines_ps", "sluice_batch_lines_total", func(m *dto.Metric) bool {
		o := label(m, "outcome")
		return o == "completed" || o == "failed"
	})
	return v
}
