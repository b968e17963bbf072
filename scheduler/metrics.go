package scheduler

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	inflight *prometheus.GaugeVec
	queued   *prometheus.GaugeVec
	wait     *prometheus.HistogramVec
	rejected *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_scheduler_inflight", Help: "Requests holding a slot, by backend.",
		}, []string{"backend"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_scheduler_queue_depth", Help: "Requests waiting for a slot, by backend.",
		}, []string{"backend"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_scheduler_wait_seconds", Help: "Time requests waited for a slot.",
			Buckets: []float64{.0001, .001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"backend"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_scheduler_rejected_total", Help: "Requests refused by the scheduler, by backend and reason.",
		}, []string{"backend", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.inflight, m.queued, m.wait, m.rejected)
	}
	return m
}
