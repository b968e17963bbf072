package gateway

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// hot holds the series a successful request touches, resolved once per endpoint and
// model (label hashing on every request costs more than the rest of the bookkeeping).
type hot struct {
	ok       prometheus.Counter
	duration prometheus.Observer
	ttft     prometheus.Observer
}

type hotKey struct{ endpoint, model string }

// series returns the resolved series for an endpoint and model.
func (m *metrics) series(endpoint, model string) *hot {
	k := hotKey{endpoint, model}
	m.mu.RLock()
	h := m.hot[k]
	m.mu.RUnlock()
	if h != nil {
		return h
	}
	h = &hot{
		ok:       m.requests.WithLabelValues(endpoint, model, "200"),
		duration: m.duration.WithLabelValues(endpoint, model),
		ttft:     m.ttft.WithLabelValues(model),
	}
	m.mu.Lock()
	if m.hot == nil {
		m.hot = map[hotKey]*hot{}
	}
	if len(m.hot) < 10000 { // model names are the catalog's: bounded
		m.hot[k] = h
	}
	m.mu.Unlock()
	return h
}

type metrics struct {
	mu  sync.RWMutex
	hot map[hotKey]*hot

	requests  *prometheus.CounterVec   // endpoint, model, code
	duration  *prometheus.HistogramVec // endpoint, model
	ttft      *prometheus.HistogramVec // model
	inflight  prometheus.Gauge
	streamErr *prometheus.CounterVec // model, reason

	// Limits (gateway/limits.go) and hang-ups (gateway/hangup*.go).
	refused      *prometheus.CounterVec // reason
	connRejected prometheus.Counter
	drained      prometheus.Counter
	hangups      *prometheus.CounterVec // phase
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
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_gateway_refused_total",
			Help: "Requests refused by a server limit, by reason (concurrency, large_bodies, too_large, slow_client).",
		}, []string{"reason"}),
		connRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_gateway_connections_rejected_total", Help: "Connections refused over server.limits.max_connections.",
		}),
		drained: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_gateway_drained_bytes_total", Help: "Bytes of refused request bodies read and discarded.",
		}),
		hangups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_gateway_client_hangups_total",
			Help: "Clients that closed their connection before their answer was done, by what the request was doing (waiting_or_running, streaming).",
		}, []string{"phase"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.ttft, m.inflight, m.streamErr, m.refused, m.connRejected, m.drained, m.hangups)
	}
	return m
}
