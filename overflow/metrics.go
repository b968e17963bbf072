package overflow

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons (the bounded label set of the reason labels).
const (
	reasonSaturated   = "saturated"      // the scheduler would miss the SLO
	reasonRejected    = "rejected"       // queue full, or 429 from the target
	reasonOverloaded  = "overloaded"     // the engine is up but refuses work (529, 503 + Retry-After)
	reasonUnavailable = "unavailable"    // down or unreachable
	reasonUpstream    = "upstream_error" // 5xx or a broken answer
	reasonTimeout     = "timeout"
	reasonWait        = "max_wait"       // no first local token within Options.MaxWait
	reasonContext     = "context_length" // prompt too long for the model's context
	reasonBreaker     = "breaker_open"
	reasonBusy        = "provider_busy" // at the provider's concurrency limit
	reasonOther       = "other"
)

type metrics struct {
	overflow     *prometheus.CounterVec // reason, backend
	overflowCost *prometheus.CounterVec // reason, backend
	fallbacks    *prometheus.CounterVec // reason
	attemptErrs  *prometheus.CounterVec // backend, reason
	skipped      *prometheus.CounterVec // backend, reason
	failedCost   prometheus.Counter
	blocked      prometheus.Counter
	exhausted    prometheus.Counter
	inflight     *prometheus.GaugeVec // backend
}

func newMetrics(reg prometheus.Registerer, s *Stage) *metrics {
	m := &metrics{
		overflow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_overflow_requests_total",
			Help: "Requests served by a remote engine because local capacity was saturated or failed, by reason and backend.",
		}, []string{"reason", "backend"}),
		overflowCost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_overflow_cost_usd_total",
			Help: "Cost in US dollars of the overflowed requests (list prices of the remote engine), by reason and backend.",
		}, []string{"reason", "backend"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_overflow_fallbacks_total",
			Help: "Requests moved to the next target, by why the previous one did not serve them.",
		}, []string{"reason"}),
		attemptErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_overflow_attempt_errors_total",
			Help: "Targets that failed or refused a request before its first token, by backend (local: the scheduler) and reason.",
		}, []string{"backend", "reason"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_overflow_provider_skipped_total",
			Help: "Remote engines passed over, by backend and reason (breaker_open, provider_busy).",
		}, []string{"backend", "reason"}),
		failedCost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_overflow_failed_attempt_cost_usd_total",
			Help: "Cost of attempts that failed before the first token (added to the request's own cost).",
		}),
		blocked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_overflow_residency_blocked_total",
			Help: "Remote targets refused at open because the key's residency policy does not allow their region (the router filters them first: this stays 0).",
		}),
		exhausted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_overflow_retry_budget_exhausted_total",
			Help: "Fallbacks not tried because the retry budget was spent.",
		}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_overflow_provider_inflight", Help: "Requests in flight on each remote engine.",
		}, []string{"backend"}),
	}
	if reg != nil {
		reg.MustRegister(m.overflow, m.overflowCost, m.fallbacks, m.attemptErrs, m.skipped, m.failedCost,
			m.blocked, m.exhausted, m.inflight, &breakerCollector{s: s, desc: prometheus.NewDesc(
				"sluice_overflow_breaker_state", "Circuit breaker of each remote engine: 0 closed, 1 open, 2 half-open.",
				[]string{"backend"}, nil)})
	}
	return m
}

type breakerCollector struct {
	s    *Stage
	desc *prometheus.Desc
}

func (c *breakerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *breakerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, id := range c.s.order {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(c.s.remote[id].br.current()), id)
	}
}
