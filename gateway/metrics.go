package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests  *prometheus.CounterVec   // endpoint, model, code
	duration  *prometheus.HistogramVec // endpoint, model
	ttft      *prometheus.HistogramVec // model
	inflight  prometheus.Gauge
	streamErr *prometheus.CounterVec // model, reason
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_requests_total", Help: "Requests answered, by endpoint, model and HTTP status.",
		}, []string{"endpoint", "model", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_request_duration_seconds", Help: "Time from request to the end of the answer.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"endpoint", "model"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_time_to_first_token_seconds", Help: "Time from request to the first streamed token.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 5, 10, 30},
		}, []string{"model"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_inflight_requests", Help: "Requests being answered now.",
		}),
		streamErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_stream_aborts_total", Help: "Streams that ended early, by reason (client_disconnect, engine_error).",
		}, []string{"model", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.ttft, m.inflight, m.streamErr)
	}
	return m
}
