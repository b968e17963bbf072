package scheduler

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/models"
)

type metrics struct {
	wait [2]prometheus.Observer
}

// classNames are the priority classes' label values.
func classNames() [2]string { return [2]string{"interactive", "batch"} }

func newMetrics(reg prometheus.Registerer, s *Scheduler) *metrics {
	wait := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "sluice_scheduler_wait_seconds", Help: "Time requests waited for a slot, by priority class.",
		Buckets: []float64{.0001, .001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"class"})
	m := &metrics{}
	for i, n := range classNames() {
		m.wait[i] = wait.WithLabelValues(n)
	}
	if reg != nil {
		reg.MustRegister(wait, newCollector(s))
	}
	return m
}

func (m *metrics) waited(p models.Priority, d time.Duration) {
	if int(p) < len(m.wait) {
		m.wait[p].Observe(d.Seconds())
	}
}

// collector reads the core's state at scrape time.
type collector struct {
	s                                                     *Scheduler
	descQueue, descIn, descSlots, descOcc, descUp, descEv *prometheus.Desc
	descPB, descPH, descSw, descOv, descPW                *prometheus.Desc
}

func newCollector(s *Scheduler) *collector {
	return &collector{s: s,
		descQueue: prometheus.NewDesc("sluice_scheduler_queue_depth", "Requests waiting for a slot, by priority class.", []string{"class"}, nil),
		descIn:    prometheus.NewDesc("sluice_scheduler_inflight", "Requests holding a slot, by backend.", []string{"backend"}, nil),
		descSlots: prometheus.NewDesc("sluice_scheduler_slots", "Slots the scheduler fills, by backend.", []string{"backend"}, nil),
		descOcc:   prometheus.NewDesc("sluice_scheduler_slot_occupancy_ratio", "Share of a backend's slots in use.", []string{"backend"}, nil),
		descUp:    prometheus.NewDesc("sluice_scheduler_backend_healthy", "1 when the backend takes requests.", []string{"backend"}, nil),
		descEv:    prometheus.NewDesc("sluice_scheduler_requests_total", "Scheduler decisions by outcome (dispatched, queued, rejected, saturated, expired, cancelled).", []string{"outcome"}, nil),
		descPB:    prometheus.NewDesc("sluice_scheduler_prefix_blocks_total", "Prompt blocks (256 bytes) of dispatched requests.", nil, nil),
		descPH:    prometheus.NewDesc("sluice_scheduler_prefix_hit_blocks_total", "Prompt blocks already cached on the slot or engine a request went to; hit ratio = this / prefix_blocks_total.", nil, nil),
		descSw:    prometheus.NewDesc("sluice_scheduler_model_swaps_total", "Times an engine that holds one model at a time was drained to load another.", nil, nil),
		descOv:    prometheus.NewDesc("sluice_scheduler_engine_overloads_total", "Times an engine answered that it was overloaded (it backed off and stayed in rotation).", nil, nil),
		descPW:    prometheus.NewDesc("sluice_scheduler_prefix_waits_total", "Requests that waited for the busy slot holding their prompt while another slot was free (cost-aware waiting).", nil, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.descQueue, c.descIn, c.descSlots, c.descOcc, c.descUp, c.descEv, c.descPB, c.descPH, c.descSw, c.descOv, c.descPW} {
		ch <- d
	}
}

type engineGauges struct {
	id              string
	inflight, slots int
	healthy         bool
}

// read copies what Collect reports from the core, under the scheduler's mutex.
func (c *collector) read() (Stats, [2]int, []engineGauges) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	var engines []engineGauges
	for _, e := range s.core.Engines() {
		engines = append(engines, engineGauges{e.ID, e.inflight, e.size, e.Healthy})
	}
	return s.core.Stats(), [2]int{s.core.QueueLen(0), s.core.QueueLen(1)}, engines
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st, q, engines := c.read()
	for i, n := range classNames() {
		ch <- prometheus.MustNewConstMetric(c.descQueue, prometheus.GaugeValue, float64(q[i]), n)
	}
	for _, e := range engines {
		ch <- prometheus.MustNewConstMetric(c.descIn, prometheus.GaugeValue, float64(e.inflight), e.id)
		ch <- prometheus.MustNewConstMetric(c.descSlots, prometheus.GaugeValue, float64(e.slots), e.id)
		ch <- prometheus.MustNewConstMetric(c.descOcc, prometheus.GaugeValue, float64(e.inflight)/float64(max(e.slots, 1)), e.id)
		up := 0.0
		if e.healthy {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.descUp, prometheus.GaugeValue, up, e.id)
	}
	for _, o := range []struct {
		n string
		v uint64
	}{{"dispatched", st.Dispatched}, {"queued", st.Queued}, {"rejected", st.Rejected}, {"saturated", st.Saturated},
		{"expired", st.Expired}, {"cancelled", st.Cancelled}} {
		ch <- prometheus.MustNewConstMetric(c.descEv, prometheus.CounterValue, float64(o.v), o.n)
	}
	ch <- prometheus.MustNewConstMetric(c.descPB, prometheus.CounterValue, float64(st.PrefixBlocks))
	ch <- prometheus.MustNewConstMetric(c.descPH, prometheus.CounterValue, float64(st.PrefixHits))
	ch <- prometheus.MustNewConstMetric(c.descSw, prometheus.CounterValue, float64(st.Swaps))
	ch <- prometheus.MustNewConstMetric(c.descOv, prometheus.CounterValue, float64(st.Overloads))
	ch <- prometheus.MustNewConstMetric(c.descPW, prometheus.CounterValue, float64(st.PrefixWaits))
}
