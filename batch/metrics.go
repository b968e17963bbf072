package batch

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	files    prometheus.Counter
	created  prometheus.Counter
	ended    *prometheus.CounterVec
	lines    *prometheus.CounterVec
	inflight prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, m *Manager) *metrics {
	x := &metrics{
		files: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_batch_files_uploaded_total",
			Help: "Files uploaded for the Batch API."}),
		created: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_batch_batches_created_total",
			Help: "Batches created."}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_batch_batches_ended_total",
			Help: "Batches that ended, by final status (completed, failed, expired, cancelled)."}, []string{"status"}),
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_batch_lines_total",
			Help: "Batch lines by outcome: completed (2xx answer), failed (error file), retried (no capacity; runs again), expired."},
			[]string{"outcome"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_batch_lines_inflight",
			Help: "Batch lines running or waiting in the scheduler."}),
	}
	for _, s := range []string{StatusCompleted, StatusFailed, StatusExpired, StatusCancelled} {
		x.ended.WithLabelValues(s)
	}
	for _, o := range []string{"completed", "failed", "retried", "expired"} {
		x.lines.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(x.files, x.created, x.ended, x.lines, x.inflight, &collector{m: m,
			batches: prometheus.NewDesc("sluice_batch_batches", "Batches by status.", []string{"status"}, nil),
			pending: prometheus.NewDesc("sluice_batch_lines_pending", "Lines of unfinished batches not yet done.", nil, nil),
		})
	}
	return x
}

// collector reads batch counts from the store at scrape time.
type collector struct {
	m                *Manager
	batches, pending *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.batches; ch <- c.pending }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts := map[string]int64{}
	if rows, err := c.m.st.db.QueryContext(ctx, `SELECT status, count(*) FROM batches GROUP BY status`); err == nil {
		for rows.Next() {
			var s string
			var n int64
			if rows.Scan(&s, &n) == nil {
				counts[s] = n
			}
		}
		rows.Close()
	}
	for _, s := range Statuses() {
		ch <- prometheus.MustNewConstMetric(c.batches, prometheus.GaugeValue, float64(counts[s]), s)
	}
	var pending int64
	_ = c.m.st.db.QueryRowContext(ctx, `SELECT count(*) FROM lines WHERE state=0`).Scan(&pending)
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(pending))
}
