package dashboard

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestDerive: the points are rates and ratios over the time between two samples of a
// registry holding sluice's metric names.
func TestDerive(t *testing.T) {
	reg := prometheus.NewRegistry()
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_requests_total"}, []string{"endpoint", "model", "code"})
	ttft := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sluice_time_to_first_token_seconds",
		Buckets: []float64{.1, .2, .5, 1}}, []string{"model"})
	cache := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_cache_requests_total"}, []string{"result", "reason"})
	orig := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_compress_original_tokens_total"})
	comp := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_compress_compressed_tokens_total"})
	cost := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_cost_usd_total"}, []string{"engine"})
	toks := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_tokens_total"}, []string{"engine"})
	slots := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_scheduler_slots"}, []string{"backend"})
	busy := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_scheduler_inflight"}, []string{"backend"})
	util := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_gpu_utilization_ratio"}, []string{"gpu", "uuid"})
	reg.MustRegister(req, ttft, cache, orig, comp, cost, toks, slots, busy, util)

	s := New(Options{Gatherer: reg, Keep: 3})
	t0 := time.Unix(1_700_000_000, 0)
	slots.WithLabelValues("local").Set(4)
	util.WithLabelValues("0", "GPU-x").Set(0.5)
	s.Sample(t0)
	for range 18 {
		req.WithLabelValues("chat", "tiny", "200").Inc()
	}
	req.WithLabelValues("chat", "big", "503").Add(2)
	for _, v := range []float64{.05, .05, .15, .15, .15, .15, .3, .3, .3, 2} { // p50 in (.1,.2], p90 in (.5,1]...
		ttft.WithLabelValues("tiny").Observe(v)
	}
	cache.WithLabelValues("hit-exact", "").Add(3)
	cache.WithLabelValues("miss", "").Add(1)
	cache.WithLabelValues("bypass", "no-store").Add(10)
	orig.Add(1000)
	comp.Add(400)
	cost.WithLabelValues("local").Add(0.002)
	toks.WithLabelValues("local").Add(1000)
	busy.WithLabelValues("local").Set(3)
	s.Sample(t0.Add(2 * time.Second))

	var data struct {
		Interval int64   `json:"interval_ms"`
		Points   []Point `json:"points"`
	}
	if err := json.Unmarshal(s.Data(0), &data); err != nil {
		t.Fatal(err)
	}
	if len(data.Points) != 2 || data.Interval != 2000 || data.Points[1].T != t0.Add(2*time.Second).UnixMilli() {
		t.Fatalf("data: %+v", data)
	}
	if _, ok := data.Points[0].V["rps"]; ok {
		t.Fatal("the first point has a rate")
	}
	v := data.Points[1].V
	near := func(k string, want float64) {
		t.Helper()
		got, ok := v[k]
		if !ok || math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	near("rps", 10)
	near("err_rps", 1)
	near("route.tiny", 9)
	near("route.big", 1)
	near("ttft_p50", .1+.1*(5-2)/4.0) // rank 5 of 10: the 3rd of 4 in (.1, .2]
	near("ttft_p90", .5)              // rank 9: the last in (.2, .5]
	near("cache_hit", .75)
	near("compress_saved", .6)
	near("compress_tokens_saved_ps", 300)
	near("cost_per_m", 2)
	near("tokens_ps", 500)
	near("engine.local.slots", 4)
	near("engine.local.busy", 3)
	near("gpu.0.util", .5)
	if _, ok := v["overflow_rps"]; ok {
		t.Error("a metric that is not registered has a value")
	}
	// Since skips what the client has; the ring keeps Keep points.
	s.Sample(t0.Add(4 * time.Second))
	s.Sample(t0.Add(6 * time.Second))
	if err := json.Unmarshal(s.Data(t0.Add(4*time.Second).UnixMilli()), &data); err != nil || len(data.Points) != 1 {
		t.Fatalf("since: %+v %v", data, err)
	}
	if err := json.Unmarshal(s.Data(0), &data); err != nil || len(data.Points) != 3 || data.Points[0].T != t0.Add(2*time.Second).UnixMilli() {
		t.Fatalf("ring: %+v %v", data, err)
	}
	if p := data.Points[2].V; p["rps"] != 0 || p["engine.local.busy"] != 3 {
		t.Fatalf("idle point: %v", p)
	}
	if _, ok := data.Points[2].V["ttft_p50"]; ok {
		t.Fatal("a quantile without observations")
	}
}

func TestQuantileEdges(t *testing.T) {
	inf := math.Inf(1)
	cur := map[float64]float64{1: 0, 2: 0, inf: 4}
	if q, ok := quantile(.5, map[float64]float64{}, cur); !ok || q != 2 {
		t.Fatalf("all above the last bound: %v %v", q, ok)
	}
	if _, ok := quantile(.5, cur, cur); ok {
		t.Fatal("no observations")
	}
	cur = map[float64]float64{1: 4, 2: 4, inf: 4}
	if q, _ := quantile(1, map[float64]float64{}, cur); q != 1 {
		t.Fatalf("max: %v", q)
	}
}

func TestAssets(t *testing.T) {
	for _, n := range []string{"", "index.html", "app.js", "style.css"} {
		ct, b, ok := Asset(n)
		if !ok || len(b) == 0 || ct == "" {
			t.Errorf("%q: %v %d %q", n, ok, len(b), ct)
		}
	}
	if ct, _, _ := Asset("app.js"); !strings.Contains(ct, "javascript") {
		t.Errorf("app.js is %q", ct)
	}
	for _, n := range []string{"../doc.go", "/etc/passwd", "assets/app.js", "nope.js", "./app.js"} {
		if _, _, ok := Asset(n); ok {
			t.Errorf("%q served", n)
		}
	}
	_, page, _ := Asset("")
	if strings.Contains(string(page), "http://") || strings.Contains(string(page), "https://") {
		t.Error("the page loads something from the network")
	}
}
