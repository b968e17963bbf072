package ledger

import "github.com/prometheus/client_golang/prometheus"

// metrics carry no per-key, per-user or per-feature labels: those go to the ledger.
type metrics struct {
	records       prometheus.Counter
	replayed      prometheus.Counter
	storeErrors   prometheus.Counter
	journalErrors prometheus.Counter
	batchSeconds  prometheus.Observer
}

func newMetrics(reg prometheus.Registerer, l *Ledger) *metrics {
	m := &metrics{
		records: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_ledger_records_total",
			Help: "Usage records written to the journal."}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_ledger_replayed_records_total",
			Help: "Records read back from the journals of processes that stopped before storing them."}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_ledger_store_errors_total",
			Help: "Failed batch writes to the store (records stay in the journal and are retried)."}),
		journalErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_ledger_journal_errors_total",
			Help: "Records that could not be written to the journal (not crash-safe)."}),
	}
	batch := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_ledger_batch_seconds",
		Help: "Time to write one batch of records to the store.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)})
	m.batchSeconds = batch
	if reg != nil {
		pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_ledger_pending_records",
			Help: "Records in the journal not yet in the store."}, func() float64 { return float64(l.Pending()) })
		reg.MustRegister(m.records, m.replayed, m.storeErrors, m.journalErrors, batch, pending)
	}
	return m
}
