package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/models"
)

// Backend is what the scheduler drives: one engine (or cloud API) endpoint.
type Backend interface {
	Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error)
	Capacity() models.Capacity
}

// Refresher is a Backend that can probe its engine (health, slots); found by assertion.
type Refresher interface {
	Refresh(ctx context.Context) error
}

// Options configure a Scheduler.
type Options struct {
	// MaxQueue is how many requests may wait per backend (default 256).
	MaxQueue int
	// DefaultSlots caps concurrency for backends that report no slots (default 64).
	DefaultSlots int
	// RefreshEvery is how often Run probes backends (default 2s).
	RefreshEvery time.Duration
	// Meters account each backend's hardware cost to its requests (optional).
	Meters   map[string]models.CostMeter
	Registry prometheus.Registerer
	Logger   *slog.Logger
}

// Scheduler admits requests to backends.
type Scheduler struct {
	opts     Options
	backends map[string]*slots
	order    []string
	m        *metrics
}

// New returns a scheduler over backends (keyed by id).
func New(backends map[string]Backend, opts Options) *Scheduler {
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = 256
	}
	if opts.DefaultSlots <= 0 {
		opts.DefaultSlots = 64
	}
	if opts.RefreshEvery <= 0 {
		opts.RefreshEvery = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Scheduler{opts: opts, backends: make(map[string]*slots, len(backends)), m: newMetrics(opts.Registry)}
	for id, b := range backends {
		sl := &slots{id: id, b: b, maxQueue: opts.MaxQueue, def: opts.DefaultSlots, m: s.m, meter: opts.Meters[id]}
		sl.inflightG = s.m.inflight.WithLabelValues(id)
		sl.queuedG = s.m.queued.WithLabelValues(id)
		sl.waitH = s.m.wait.WithLabelValues(id)
		s.backends[id] = sl
		s.order = append(s.order, id)
	}
	return s
}

// Open waits for a slot on t.Backend, then opens the request there. The returned
// stream frees the slot when closed.
func (s *Scheduler) Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	sl, ok := s.backends[t.Backend]
	if !ok {
		return nil, &models.Error{Kind: models.ErrUnavailable, Msg: fmt.Sprintf("no backend %q", t.Backend)}
	}
	c := sl.b.Capacity()
	if !c.Healthy {
		s.m.rejected.WithLabelValues(t.Backend, "unhealthy").Inc()
		return nil, &models.Error{Kind: models.ErrUnavailable, Code: "engine_unavailable", RetryAfter: time.Second,
			Msg: fmt.Sprintf("engine %s is not ready: %s", t.Backend, c.Reason)}
	}
	if err := sl.acquire(ctx, c, r.Deadline); err != nil {
		return nil, err
	}
	h := &held{sl: sl}
	if sl.meter != nil {
		h.job = sl.meter.Begin()
	}
	st, err := sl.b.Open(ctx, t, r)
	if err != nil {
		if h.job != nil {
			h.job.End()
		}
		sl.release()
		return nil, err
	}
	h.Stream = st
	return h, nil
}

// Run probes every Refresher backend until ctx ends.
func (s *Scheduler) Run(ctx context.Context) {
	tick := time.NewTicker(s.opts.RefreshEvery)
	defer tick.Stop()
	for {
		s.RefreshAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// RefreshAll probes every Refresher backend once, in parallel.
func (s *Scheduler) RefreshAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, id := range s.order {
		rf, ok := s.backends[id].b.(Refresher)
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_ = rf.Refresh(pctx)
		}()
	}
	wg.Wait()
	for _, id := range s.order {
		s.backends[id].kick()
	}
}

// Status is one backend's state for readiness and status pages.
type Status struct {
	ID       string
	Capacity models.Capacity
	InFlight int
	Queued   int
}

// Status returns every backend's state, in a stable order.
func (s *Scheduler) Status() []Status {
	out := make([]Status, 0, len(s.order))
	for _, id := range s.order {
		sl := s.backends[id]
		sl.mu.Lock()
		st := Status{ID: id, Capacity: sl.b.Capacity(), InFlight: sl.inflight, Queued: len(sl.waiters)}
		sl.mu.Unlock()
		out = append(out, st)
	}
	return out
}

// Ready reports whether every backend is healthy, with a JSON detail for /readyz.
func (s *Scheduler) Ready() (bool, []byte) {
	type eng struct {
		Name     string `json:"name"`
		Healthy  bool   `json:"healthy"`
		Reason   string `json:"reason,omitempty"`
		Slots    int    `json:"slots"`
		InFlight int    `json:"in_flight"`
		Queued   int    `json:"queued"`
	}
	out := struct {
		Status  string `json:"status"`
		Engines []eng  `json:"engines"`
	}{Status: "ready"}
	ok := true
	for _, st := range s.Status() {
		out.Engines = append(out.Engines, eng{Name: st.ID, Healthy: st.Capacity.Healthy, Reason: st.Capacity.Reason,
			Slots: st.Capacity.Slots, InFlight: st.InFlight, Queued: st.Queued})
		ok = ok && st.Capacity.Healthy
	}
	if !ok {
		out.Status = "not ready"
	}
	b, _ := json.Marshal(out)
	return ok, b
}

// slots is one backend's admission state.
type slots struct {
	id       string
	b        Backend
	maxQueue int
	def      int
	m        *metrics
	meter    models.CostMeter

	inflightG, queuedG prometheus.Gauge
	waitH              prometheus.Observer

	mu       sync.Mutex
	inflight int
	waiters  []*waiter // FIFO
}

type waiter struct {
	ready   chan struct{}
	granted bool // set under mu when a slot was handed over
}

func (sl *slots) limit(c models.Capacity) int {
	if c.Slots > 0 {
		return c.Slots
	}
	return sl.def
}

var errQueueFull = errors.New("queue full")

func (sl *slots) acquire(ctx context.Context, c models.Capacity, deadline time.Time) error {
	sl.mu.Lock()
	if sl.inflight < sl.limit(c) && len(sl.waiters) == 0 {
		sl.inflight++
		sl.mu.Unlock()
		sl.inflightG.Inc()
		sl.waitH.Observe(0) // dispatched at once; no clock read on the fast path
		return nil
	}
	if len(sl.waiters) >= sl.maxQueue {
		sl.mu.Unlock()
		sl.m.rejected.WithLabelValues(sl.id, "queue_full").Inc()
		return &models.Error{Kind: models.ErrRejected, Code: "queue_full", RetryAfter: time.Second,
			Msg: fmt.Sprintf("engine %s is busy: %d requests already queued", sl.id, sl.maxQueue), Err: errQueueFull}
	}
	w := &waiter{ready: make(chan struct{})}
	sl.waiters = append(sl.waiters, w)
	sl.mu.Unlock()
	sl.queuedG.Inc()
	start := time.Now()
	defer func() { sl.waitH.Observe(time.Since(start).Seconds()) }()
	var expired <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expired = t.C
	}
	timedOut := false
	select {
	case <-w.ready:
		sl.queuedG.Dec()
		sl.inflightG.Inc()
		return nil
	case <-expired:
		timedOut = true
	case <-ctx.Done():
	}
	sl.mu.Lock()
	if w.granted {
		// The slot arrived as we gave up: pass it on.
		sl.mu.Unlock()
		sl.queuedG.Dec()
		sl.inflightG.Inc()
		sl.release()
	} else {
		for i, x := range sl.waiters {
			if x == w {
				sl.waiters = append(sl.waiters[:i], sl.waiters[i+1:]...)
				break
			}
		}
		sl.mu.Unlock()
		sl.queuedG.Dec()
	}
	if timedOut || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &models.Error{Kind: models.ErrTimeout, Msg: fmt.Sprintf("timed out waiting for a slot on engine %s", sl.id)}
	}
	return &models.Error{Kind: models.ErrCanceled, Msg: "request canceled while queued"}
}

// release frees a slot, handing it to the oldest waiter if there is one.
func (sl *slots) release() {
	sl.inflightG.Dec()
	sl.mu.Lock()
	if len(sl.waiters) > 0 && sl.inflight <= sl.limit(sl.b.Capacity()) {
		w := sl.waiters[0]
		sl.waiters = sl.waiters[1:]
		w.granted = true
		sl.mu.Unlock()
		close(w.ready)
		return
	}
	sl.inflight--
	sl.mu.Unlock()
}

// kick hands free slots to waiters (after capacity grew).
func (sl *slots) kick() {
	lim := sl.limit(sl.b.Capacity())
	sl.mu.Lock()
	var wake []*waiter
	for len(sl.waiters) > 0 && sl.inflight < lim {
		w := sl.waiters[0]
		sl.waiters = sl.waiters[1:]
		w.granted = true
		sl.inflight++
		wake = append(wake, w)
	}
	sl.mu.Unlock()
	for _, w := range wake {
		close(w.ready)
	}
}

// held is a stream that frees its slot on Close and accounts its cost.
type held struct {
	models.Stream
	sl     *slots
	job    models.CostJob
	closed bool
	cost   models.Cost
}

// Recv marks the first token for cost accounting.
func (h *held) Recv() (models.Chunk, error) {
	c, err := h.Stream.Recv()
	if h.job != nil && err == nil && (c.Text != "" || len(c.ToolCalls) > 0 || c.Embeddings != nil || c.Format == models.FormatOpenAIFull) {
		h.job.FirstToken()
	}
	return c, err
}

// Usage adds the request's hardware cost (final once the stream is closed).
func (h *held) Usage() models.Usage {
	u := h.Stream.Usage()
	if h.closed {
		u.Cost = h.cost
	}
	return u
}

func (h *held) Close() error {
	if h.closed {
		return nil
	}
	h.closed = true
	err := h.Stream.Close()
	if h.job != nil {
		h.cost.Prompt, h.cost.Completion = h.job.End()
	}
	h.sl.release()
	return err
}
