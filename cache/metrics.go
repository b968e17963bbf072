package cache

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Results of a lookup (the X-Sluice-Cache values).
const (
	ResultHitExact    = "hit-exact"
	ResultHitSemantic = "hit-semantic"
	ResultMiss        = "miss"
	ResultBypass      = "bypass"
)

// guardAmbiguous: two close candidates with different answers.
const guardAmbiguous = "ambiguous"

// guardSubstituted: each question has content the other lacks.
const guardSubstituted = "substituted"

// guardResidency: the entry was produced in a region the request's key does not allow.
const guardResidency = "residency"

type metrics struct {
	hitExact, hitSemantic, miss prometheus.Counter
	bypass                      map[string]prometheus.Counter
	errors                      *prometheus.CounterVec // op
	guard                       map[string]prometheus.Counter
	stored, skipped, dropped    prometheus.Counter
	saved                       prometheus.Counter
	lookup                      prometheus.Observer
	entries, indexed, backlog   prometheus.GaugeFunc
	indexDropped                prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, entries, indexed, backlog func() float64) *metrics {
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_cache_requests_total",
		Help: "Requests seen by the answer cache, by result (hit-exact, hit-semantic, miss, bypass) and, for bypass, why."},
		[]string{"result", "reason"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_cache_errors_total",
		Help: "Cache failures by operation (get, put, embed, watch, load); each one counts as a miss."}, []string{"op"})
	guard := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_cache_guard_rejects_total",
		Help: "Matches refused by a guard, by reason: a false-hit guard (semantic), or residency (exact or semantic: produced in a region the key does not allow)."}, []string{"reason"})
	stores := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_cache_stores_total",
		Help: "Answers after a miss: stored, skipped (incomplete, failed, not replayable) or dropped (write queue full)."},
		[]string{"outcome"})
	saved := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_cache_saved_usd_total",
		Help: "Hardware cost of the answers served from the cache (what producing them again would have cost)."})
	lookup := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_cache_lookup_seconds",
		Help:    "Time to look a cacheable request up (exact and semantic).",
		Buckets: []float64{1e-6, 5e-6, 2e-5, 1e-4, 5e-4, 2e-3, 1e-2, 5e-2, 0.25}})
	m := &metrics{
		hitExact: req.WithLabelValues(ResultHitExact, ""), hitSemantic: req.WithLabelValues(ResultHitSemantic, ""),
		miss: req.WithLabelValues(ResultMiss, ""), bypass: map[string]prometheus.Counter{},
		errors: errs, guard: map[string]prometheus.Counter{},
		stored: stores.WithLabelValues("stored"), skipped: stores.WithLabelValues("skipped"),
		dropped: stores.WithLabelValues("dropped"), saved: saved, lookup: lookup,
		entries: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_cache_entries",
			Help: "Entries in the cache store."}, entries),
		indexed: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_cache_indexed_entries",
			Help: "Entries in this replica's semantic index."}, indexed),
		backlog: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_cache_index_backlog",
			Help: "Stored answers waiting for the semantic indexer's CPU budget (cache.semantic.index_cpu)."}, backlog),
		indexDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_cache_index_dropped_total",
			Help: "Stored answers left out of the semantic index because its backlog was full (still matched exactly; indexed at the next start)."}),
	}
	for _, r := range bypassReasons {
		m.bypass[r] = req.WithLabelValues(ResultBypass, r)
	}
	for _, r := range append(append([]string{}, GuardReasons...), guardAmbiguous, guardSubstituted, guardResidency) {
		m.guard[r] = guard.WithLabelValues(r)
	}
	for _, op := range []string{"get", "put", "embed", "watch", "load", "purge"} {
		errs.WithLabelValues(op)
	}
	if reg != nil {
		reg.MustRegister(req, errs, guard, stores, saved, lookup, m.entries, m.indexed, m.backlog, m.indexDropped)
	}
	return m
}
