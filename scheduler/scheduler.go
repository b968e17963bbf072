package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// EngineOptions describe what the scheduler may do with an engine.
type EngineOptions struct {
	// Addressable: the engine takes a slot id (llama-server's id_slot), so sluice can
	// send a request to the slot whose KV cache holds its prefix.
	Addressable bool
	// Exclusive: the engine holds one model at a time and swaps to serve another
	// (Ollama with OLLAMA_MAX_LOADED_MODELS=1); requests are grouped by model.
	Exclusive bool
	// Slots overrides the slot count for engines that report none (default DefaultSlots).
	Slots int
	// KVTokens is the engine's KV cache in tokens, shared by its sequences (vLLM's
	// paged cache); 0: not checked (llama-server gives each slot its own context).
	KVTokens int
}

// Options configure a Scheduler.
type Options struct {
	// MaxQueue is how many requests may wait in all (default 256).
	MaxQueue int
	// DefaultSlots caps concurrency for backends that report no slots (default 64).
	DefaultSlots int
	// RefreshEvery is how often Run probes backends (default 2s).
	RefreshEvery time.Duration
	// Policy picks engines (default PolicySluice) with Weights (default DefaultWeights).
	Policy  Policy
	Weights Weights
	// SLO is the time to first token per class (models.Priority); a request expected to
	// wait longer is refused at once with models.ErrSaturated (0: never).
	SLO [2]time.Duration
	// Engines describe backends (slot addressing, model swapping); missing: neither.
	Engines map[string]EngineOptions
	// TenantWeights give tenants a larger share of contended capacity (default 1).
	TenantWeights map[string]float64
	// NoPrefixWait turns off cost-aware waiting (Config.NoPrefixWait).
	NoPrefixWait bool
	// GPUUtil reports the utilization (0..1) of the GPUs an engine runs on (optional).
	GPUUtil func(engine string) float64
	// Meters account each backend's hardware cost to its requests (optional).
	Meters   map[string]models.CostMeter
	Registry prometheus.Registerer
	Logger   *slog.Logger
}

// Scheduler admits requests to backends. Callers block in Open until their request is
// dispatched to an engine slot, refused (queue full, saturated, no engine, deadline) or
// cancelled. All state lives in a Core guarded by one mutex; the decision runs in the
// goroutine that arrives (when a slot is free) or in the one that frees a slot, which
// hands it straight to the next waiter: no goroutine hand-off on the fast path.
type Scheduler struct {
	opts     Options
	backends map[string]Backend
	order    []string
	m        *metrics

	mu   sync.Mutex
	core *Core
	wake map[string]*time.Timer // per engine: dispatch when its back-off ends
	// holdT dispatches when the first job waiting for a busy slot holding its prompt
	// stops waiting for it (Core.Wake).
	holdT *time.Timer
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
	s := &Scheduler{opts: opts, backends: backends}
	s.core = NewCore(Config{Policy: opts.Policy, Weights: opts.Weights, MaxQueue: opts.MaxQueue, SLO: opts.SLO,
		TenantWeights: opts.TenantWeights, NoPrefixWait: opts.NoPrefixWait})
	for id := range backends {
		s.order = append(s.order, id)
	}
	sortStrings(s.order)
	for _, id := range s.order {
		eo := opts.Engines[id]
		c := backends[id].Capacity()
		slots := c.Slots
		if slots <= 0 {
			slots = eo.Slots
		}
		if slots <= 0 {
			slots = opts.DefaultSlots
		}
		s.core.AddEngine(id, slots, eo.Addressable, eo.Exclusive)
		s.core.SetKVTokens(id, eo.KVTokens)
		s.core.SetEngine(id, 0, c.Healthy, c.Reason, c.KVUsed, 0)
	}
	s.m = newMetrics(opts.Registry, s)
	return s
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for k := i; k > 0 && s[k] < s[k-1]; k-- {
			s[k], s[k-1] = s[k-1], s[k]
		}
	}
}

// Open waits for a slot on one of t's candidate backends, then opens the request there.
// The returned stream frees the slot when closed.
func (s *Scheduler) Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	if len(t.Candidates) == 0 {
		if t.Backend == "" {
			return nil, &models.Error{Kind: models.ErrUnavailable, Msg: fmt.Sprintf("no backend serves %q", t.Model)}
		}
		t.Candidates = []models.Candidate{{Backend: t.Backend, UpstreamModel: t.UpstreamModel}}
	}
	for _, cd := range t.Candidates {
		if _, ok := s.backends[cd.Backend]; !ok {
			return nil, &models.Error{Kind: models.ErrUnavailable, Msg: fmt.Sprintf("no backend %q", cd.Backend)}
		}
	}
	cost := jobCost(r)
	j := &Job{Model: t.Model, Candidates: t.Candidates, Priority: r.Priority, Tenant: r.Tenant,
		Cost: cost, Tokens: int(cost), PromptTokens: promptTokens(r), Deadline: r.Deadline}
	if s.core.cfg.Policy == PolicySluice {
		j.Blocks = PrefixBlocks(r, nil)
	}
	started, err := s.admit(time.Now(), j)
	if err != nil {
		return nil, err
	}
	if j.Ready == nil { // it runs at once
		s.m.waited(j.Priority, 0)
		return s.start(ctx, t, r, j)
	}
	s.notify(started)
	return s.wait(ctx, t, r, j)
}

// admit submits j to the core: it runs at once (j.Ready stays nil), or it waits (j.Ready
// set) and the jobs Dispatch started are returned. Every lock site below unlocks with
// defer, so a panic that something recovers from cannot leave the mutex held.
func (s *Scheduler) admit(now time.Time, j *Job) ([]*Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.core.Submit(now, j); err != nil {
		return nil, err
	}
	if j.Running() {
		return nil, nil
	}
	j.Ready = make(chan struct{})
	return s.dispatchLocked(now), nil
}

// jobCost estimates the work of a request for fair queuing: prompt tokens (about 4 bytes
// each) plus the completion it may generate.
func jobCost(r *models.Request) float64 {
	n := 0
	for i := range r.Messages {
		n += len(r.Messages[i].Content)
	}
	for _, p := range r.Prompt {
		n += len(p)
	}
	out := r.Sampling.MaxTokens
	if out <= 0 {
		out = 256
	}
	return float64(n/4 + out)
}

// promptTokens estimates a prompt's tokens (about 4 bytes each).
func promptTokens(r *models.Request) int {
	n := 0
	for i := range r.Messages {
		n += len(r.Messages[i].Content)
	}
	for _, p := range r.Prompt {
		n += len(p)
	}
	return n / 4
}

func (s *Scheduler) wait(ctx context.Context, t models.Target, r *models.Request, j *Job) (models.Stream, error) {
	var expired <-chan time.Time
	if !j.Deadline.IsZero() {
		tm := time.NewTimer(time.Until(j.Deadline))
		defer tm.Stop()
		expired = tm.C
	}
	select {
	case <-j.Ready:
		if j.Err != nil {
			return nil, j.Err
		}
		s.m.waited(j.Priority, time.Since(j.Enqueued))
		return s.start(ctx, t, r, j)
	case <-expired:
		return nil, s.giveUp(j, &models.Error{Kind: models.ErrTimeout, Code: "queue_timeout",
			Msg: fmt.Sprintf("waited %v for a slot serving %q", time.Since(j.Enqueued).Round(time.Millisecond), j.Model)})
	case <-ctx.Done():
		return nil, s.giveUp(j, &models.Error{Kind: models.ErrCanceled, Msg: "request canceled while queued"})
	}
}

// giveUp removes a waiting job; if it was dispatched meanwhile, its slot goes back.
func (s *Scheduler) giveUp(j *Job, err error) error {
	if cancelled, started := s.cancel(j); cancelled {
		s.notify(started)
		return err
	}
	<-j.Ready
	if j.Err == nil {
		s.finish(j, NotSent, 0) // dispatched meanwhile, never sent: the slot is as it was
	}
	return err
}

// cancel takes a waiting job out of the queue; then (it may have been what an engine
// drained for) whatever can run now starts.
func (s *Scheduler) cancel(j *Job) (bool, []*Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.core.Cancel(j) {
		return false, nil
	}
	return true, s.dispatchLocked(time.Now())
}

// start opens the request on the engine the core chose. An engine that answers that it
// is overloaded backs off for a while (its Retry-After, bounded) and stays in rotation;
// one that cannot be reached is marked down. Either way nothing was sent, so the request
// goes at once to another candidate that has a free slot, if any.
func (s *Scheduler) start(ctx context.Context, t models.Target, r *models.Request, j *Job) (models.Stream, error) {
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			s.finish(j, NotSent, 0)
			return nil, &models.Error{Kind: models.ErrCanceled, Msg: "request canceled before it was sent", Err: err}
		}
		t.Backend, t.UpstreamModel = j.Engine, j.UpstreamModel
		t.Slot, t.HasSlot = j.Slot, j.HasSlot
		var cost models.CostJob
		if m := s.opts.Meters[j.Engine]; m != nil {
			cost = m.Begin()
		}
		st, err := s.backends[j.Engine].Open(ctx, t, r)
		if err == nil {
			return &held{Stream: st, s: s, j: j, t: t, cost: cost}, nil
		}
		if cost != nil {
			cost.End()
		}
		overloaded := errors.Is(err, models.ErrOverloaded)
		if ctx.Err() != nil || !overloaded && !errors.Is(err, models.ErrUnavailable) {
			o := Failed
			if ctx.Err() != nil {
				o = Abandoned
			}
			s.finish(j, o, 0)
			return nil, err
		}
		if !s.refused(j, err, overloaded, attempt < len(j.Candidates)) {
			return nil, err
		}
		s.opts.Logger.Debug("scheduler: request refused, retried on another engine", "engine", t.Backend,
			"next", j.Engine, "err", err)
	}
}

// Back-off bounds for an overloaded engine (Retry-After, or defaultBackoff without one).
const (
	minBackoff     = 100 * time.Millisecond
	defaultBackoff = time.Second
	maxBackoff     = 10 * time.Second
)

// backoffFor is how long an engine that answered err stays out of rotation.
func backoffFor(err error) time.Duration {
	d := defaultBackoff
	var me *models.Error
	if errors.As(err, &me) && me.RetryAfter > 0 {
		d = me.RetryAfter
	}
	return min(max(d, minBackoff), maxBackoff)
}

// refused ends j as NotSent after its engine refused it: an overloaded engine backs off
// (a timer dispatches again when that ends), an unreachable one is marked down (the jobs
// that only it could serve are refused). With retry, j starts again at once on another
// engine with a free slot; it reports whether it did.
func (s *Scheduler) refused(j *Job, err error, overloaded, retry bool) bool {
	dropped, started, again := s.refusedLocked(time.Now(), j, err, overloaded, retry)
	s.notify(dropped)
	s.notify(started)
	return again
}

func (s *Scheduler) refusedLocked(now time.Time, j *Job, err error, overloaded, retry bool) (dropped, started []*Job, again bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := j.Engine
	s.core.Finish(now, j, NotSent, 0)
	if overloaded {
		d := backoffFor(err)
		s.core.Backoff(id, now.Add(d))
		s.wakeAfter(id, d)
	} else {
		if e := s.core.engines[id]; e != nil {
			s.core.SetEngine(id, 0, false, err.Error(), e.KVUse, e.GPUUtil)
		}
		dropped = s.core.Expire(now)
	}
	if retry && s.core.Retry(now, j) {
		return dropped, nil, true
	}
	return dropped, s.dispatchLocked(now), false
}

// wakeAfter dispatches once engine id's back-off has passed (s.mu held).
func (s *Scheduler) wakeAfter(id string, d time.Duration) {
	if tm := s.wake[id]; tm != nil {
		tm.Reset(d)
		return
	}
	if s.wake == nil {
		s.wake = map[string]*time.Timer{}
	}
	s.wake[id] = time.AfterFunc(d, func() { s.notify(s.dispatch(time.Now())) })
}

func (s *Scheduler) dispatch(now time.Time) []*Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dispatchLocked(now)
}

// dispatchLocked runs the core's Dispatch (s.mu held) and arms the timer for a job it
// left waiting for its own slot, so that the job does not wait past its bound when
// nothing else happens.
func (s *Scheduler) dispatchLocked(now time.Time) []*Job {
	started := s.core.Dispatch(now)
	if w := s.core.Wake(); !w.IsZero() {
		// Always (re)armed: a timer that fired for this time already may have found the
		// job's fallback slot taken, and the job waiting again until the same bound.
		d := max(time.Until(w), time.Millisecond)
		if s.holdT == nil {
			s.holdT = time.AfterFunc(d, func() { s.notify(s.dispatch(time.Now())) })
		} else {
			s.holdT.Reset(d)
		}
	}
	return started
}

// finish ends a job's hold on its slot and starts whatever can run now.
func (s *Scheduler) finish(j *Job, o Outcome, ttft time.Duration) {
	s.notify(s.release(time.Now(), j, o, ttft))
}

func (s *Scheduler) release(now time.Time, j *Job, o Outcome, ttft time.Duration) []*Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.core.Finish(now, j, o, ttft)
	return s.dispatchLocked(now)
}

func (s *Scheduler) notify(jobs []*Job) {
	for _, j := range jobs {
		if j.Ready != nil {
			close(j.Ready)
		}
	}
}

// Run probes every backend until ctx ends.
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

// RefreshAll probes every Refresher backend once, in parallel, and updates the core.
func (s *Scheduler) RefreshAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, id := range s.order {
		rf, ok := s.backends[id].(Refresher)
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
	dropped, started := s.update(time.Now())
	s.notify(dropped)
	s.notify(started)
}

// update feeds every backend's capacity to the core, then expires and dispatches.
func (s *Scheduler) update(now time.Time) (dropped, started []*Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.order {
		c := s.backends[id].Capacity()
		gpu := 0.0
		if s.opts.GPUUtil != nil {
			gpu = s.opts.GPUUtil(id)
		}
		slots := c.Slots
		if slots <= 0 {
			slots = s.core.engines[id].size
		}
		s.core.SetEngine(id, slots, c.Healthy, c.Reason, c.KVUsed, gpu)
	}
	return s.core.Expire(now), s.dispatchLocked(now)
}

// Status is one backend's state for readiness and status pages.
type Status struct {
	ID       string
	Capacity models.Capacity
	InFlight int
	Queued   int
}

// Status returns every backend's state, in a stable order. Queued counts the requests
// waiting for any engine.
func (s *Scheduler) Status() []Status {
	out := make([]Status, 0, len(s.order))
	queued, inflight := s.counts()
	for _, id := range s.order {
		out = append(out, Status{ID: id, Capacity: s.backends[id].Capacity(), InFlight: inflight[id], Queued: queued})
	}
	return out
}

func (s *Scheduler) counts() (int, map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inflight := make(map[string]int, len(s.order))
	for _, e := range s.core.Engines() {
		inflight[e.ID] = e.inflight
	}
	return s.core.QueueLen(models.PriorityInteractive) + s.core.QueueLen(models.PriorityBatch), inflight
}

// Ready reports whether every backend is healthy, with a JSON detail for /readyz.
func (s *Scheduler) Ready() (bool, []byte) {
	type eng struct {
		Name     string `json:"name"`
		Healthy  bool   `json:"healthy"`
		Reason   string `json:"reason,omitempty"`
		Slots    int    `json:"slots"`
		InFlight int    `json:"in_flight"`
	}
	out := struct {
		Status  string `json:"status"`
		Queued  int    `json:"queued"`
		Engines []eng  `json:"engines"`
	}{Status: "ready"}
	ok := true
	for _, st := range s.Status() {
		out.Engines = append(out.Engines, eng{Name: st.ID, Healthy: st.Capacity.Healthy, Reason: st.Capacity.Reason,
			Slots: st.Capacity.Slots, InFlight: st.InFlight})
		out.Queued = st.Queued
		ok = ok && st.Capacity.Healthy
	}
	if !ok {
		out.Status = "not ready"
	}
	b, _ := json.Marshal(out)
	return ok, b
}

// held is a stream that frees its slot on Close and accounts its cost.
type held struct {
	models.Stream
	s      *Scheduler
	j      *Job
	t      models.Target // where the request went
	cost   models.CostJob
	first  time.Duration
	failed bool
	eof    bool
	closed bool
	total  models.Cost
}

// Target is where the scheduler sent the request (backend, upstream model, slot).
func (h *held) Target() models.Target { return h.t }

// WaitReady passes the wait on to the engine's stream (models.Waiter).
func (h *held) WaitReady() { models.WaitReady(h.Stream) }

// Buffered passes the question on to the engine's stream (models.Buffered).
func (h *held) Buffered() bool { return models.AtHand(h.Stream) }

// Recv marks the first token (cost accounting, time-to-first-token estimates).
func (h *held) Recv() (models.Chunk, error) {
	c, err := h.Stream.Recv()
	if err == nil && h.first == 0 && (c.Text != "" || len(c.ToolCalls) > 0 || c.Embeddings != nil || c.Format == models.FormatOpenAIFull) {
		h.first = time.Since(h.j.Dispatched)
		if h.cost != nil {
			h.cost.FirstToken()
		}
		h.s.prefilled(h.j)
	}
	switch {
	case errors.Is(err, io.EOF):
		h.eof = true
	case err != nil:
		h.failed = true
	}
	return c, err
}

func (s *Scheduler) prefilled(j *Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.core.Prefilled(j)
}

// Usage adds the request's hardware cost (final once the stream is closed).
func (h *held) Usage() models.Usage {
	u := h.Stream.Usage()
	if h.closed {
		u.Cost = h.total
	}
	return u
}

func (h *held) Close() error {
	if h.closed {
		return nil
	}
	h.closed = true
	err := h.Stream.Close()
	if h.cost != nil {
		h.total.Prompt, h.total.Completion = h.cost.End()
	}
	// Only an answer read to its end says how long a request holds a slot; a caller
	// that closed early (it left) says nothing of it.
	o := Completed
	switch {
	case h.failed:
		o = Failed
	case !h.eof:
		o = Abandoned
	}
	h.s.finish(h.j, o, h.first)
	return err
}
