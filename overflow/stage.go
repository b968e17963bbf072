package overflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/models"
)

// Opener is the stage shape: the scheduler (the next stage) and remote backends.
type Opener interface {
	Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error)
}

// Price is dollars per million input and output tokens.
type Price struct{ Input, Output float64 }

// Of returns the price of a request's tokens.
func (p Price) Of(prompt, completion int) (in, out float64) {
	return float64(prompt) * p.Input / 1e6, float64(completion) * p.Output / 1e6
}

// Remote is a remote (cloud) engine the stage calls directly.
type Remote struct {
	Backend Opener
	// Region is where it runs ("eu", "us", ...): checked against the key's policy.
	Region string
	// MaxConcurrency caps its requests in flight (default 32); beyond it, the next
	// target is tried.
	MaxConcurrency int
	// Prices by catalog model name (Candidate.Model).
	Prices map[string]Price
}

// Options configure a Stage. Zero values take the defaults in brackets.
type Options struct {
	// Remote engines by backend id; every other candidate goes to the next stage.
	Remote map[string]Remote
	// MaxAttempts bounds the targets one request is opened on [3].
	MaxAttempts int
	// Backoff before the first retry after a failure, doubling up to MaxBackoff
	// [50ms, 1s]; not when local capacity is short (overflow is immediate).
	Backoff, MaxBackoff time.Duration
	// BudgetRatio caps retries at this share of requests [0.2], with a reserve of
	// MinRetries [10].
	BudgetRatio float64
	MinRetries  int
	// BreakerFailures consecutive failures open a remote engine's circuit for
	// BreakerCooldown [5, 30s].
	BreakerFailures int
	BreakerCooldown time.Duration
	// MaxWait bounds how long an interactive request that has a remote fallback waits
	// for its first local token, from its arrival (0: no bound). Past it, the local
	// attempt is abandoned (still queued, or before its first token) and the request
	// moves on: a bound on time to first token when the scheduler's wait estimate is
	// wrong. Set it to the TTFT objective minus the cloud's own TTFT.
	MaxWait time.Duration
	// Now is the clock [time.Now].
	Now      func() time.Time
	Registry prometheus.Registerer
	Logger   *slog.Logger
}

// Stage routes a request to its local candidates through the next stage, and to
// fallbacks and remote engines when those cannot serve it.
type Stage struct {
	next   Opener
	opts   Options
	remote map[string]*provider
	order  []string
	budget *budget
	m      *metrics
}

// provider is one remote engine with its limit, breaker and prices.
type provider struct {
	id       string
	b        Opener
	region   string
	limit    int64
	inflight atomic.Int64
	br       *breaker
	prices   map[string]Price
	gauge    prometheus.Gauge
}

func (p *provider) acquire() bool {
	if p.inflight.Add(1) > p.limit {
		p.inflight.Add(-1)
		return false
	}
	p.gauge.Inc()
	return true
}

func (p *provider) release() {
	p.inflight.Add(-1)
	p.gauge.Dec()
}

// New returns a stage in front of next.
func New(next Opener, opts Options) *Stage {
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 3
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 50 * time.Millisecond
	}
	if opts.MaxBackoff < opts.Backoff {
		opts.MaxBackoff = max(time.Second, opts.Backoff)
	}
	if opts.BudgetRatio <= 0 {
		opts.BudgetRatio = 0.2
	}
	if opts.MinRetries <= 0 {
		opts.MinRetries = 10
	}
	if opts.BreakerFailures <= 0 {
		opts.BreakerFailures = 5
	}
	if opts.BreakerCooldown <= 0 {
		opts.BreakerCooldown = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Stage{next: next, opts: opts, remote: map[string]*provider{},
		budget: newBudget(opts.BudgetRatio, opts.MinRetries)}
	for id := range opts.Remote {
		s.order = append(s.order, id)
	}
	sort.Strings(s.order)
	s.m = newMetrics(opts.Registry, s)
	for _, id := range s.order {
		rc := opts.Remote[id]
		limit := rc.MaxConcurrency
		if limit <= 0 {
			limit = 32
		}
		s.remote[id] = &provider{id: id, b: rc.Backend, region: rc.Region, limit: int64(limit), prices: rc.Prices,
			br: &breaker{failures: opts.BreakerFailures, cooldown: opts.BreakerCooldown}, gauge: s.m.inflight.WithLabelValues(id)}
	}
	return s
}

// Open serves r on t's first candidates that can take it; see the package doc.
func (s *Stage) Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	if len(t.Fallbacks) == 0 && !s.anyRemote(t.Candidates) {
		// Nothing to choose: the scheduler decides (and queues, or refuses with 429).
		st, err := s.next.Open(ctx, t, r)
		r.Trace.Attempts = 1
		if err == nil {
			r.Trace.Region = models.RegionLocal
			if r.Trace.Route != "" {
				r.Trace.Route += "; target=" + backendOf(st, t)
			}
		}
		return st, err
	}
	return s.route(ctx, t, r)
}

func (s *Stage) anyRemote(cs []models.Candidate) bool {
	for i := range cs {
		if s.remote[cs[i].Backend] != nil {
			return true
		}
	}
	return false
}

type targeter interface{ Target() models.Target }

func backendOf(st models.Stream, t models.Target) string {
	if ts, ok := st.(targeter); ok {
		return ts.Target().Backend
	}
	return t.Backend
}

// attempt is what route knows about the previous target tried.
type attempt struct {
	err   error
	model string
	ctx   int
	local bool
}

// capacity reports a refusal for lack of local capacity (saturated, queue full, no
// first token within MaxWait): overflow goes on at once, without backoff or retry budget.
func (a attempt) capacity() bool {
	var e *models.Error
	return errors.Is(a.err, models.ErrSaturated) || (a.local && errors.Is(a.err, models.ErrRejected)) ||
		(errors.As(a.err, &e) && e.Code == "max_wait")
}

// route walks the target's candidates and fallbacks, as steps: a run of local
// candidates of one model (one scheduler Open) or one remote engine.
func (s *Stage) route(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	s.budget.deposit()
	nc := len(t.Candidates)
	n := nc + len(t.Fallbacks)
	at := func(i int) *models.Candidate {
		if i < nc {
			return &t.Candidates[i]
		}
		return &t.Fallbacks[i-nc]
	}
	var (
		attempts, retries int
		first             error
		last              attempt
		failed            models.Cost
		overflow          string // why local capacity did not serve the request
		skipBreaker       bool
		skipBusy          bool
		retryIn           time.Duration
		// A local step abandoned after MaxWait, to go back to when nothing else serves.
		waited             bool
		waitStart, waitEnd int
	)
	for i := 0; i < n; {
		c := at(i)
		p := s.remote[c.Backend]
		start, end := i, i+1
		if p == nil {
			for end < n && end != nc {
				d := at(end)
				if s.remote[d.Backend] != nil || d.Model != c.Model {
					break
				}
				end++
			}
		}
		i = end
		if last.err != nil && isContext(last.err) &&
			(c.Model == last.model || (c.ContextWindow > 0 && c.ContextWindow <= last.ctx)) {
			continue // a context-length failure moves only to a bigger context
		}
		if attempts >= s.opts.MaxAttempts {
			break
		}
		now := s.opts.Now()
		if p != nil {
			if !r.Key.AllowsRegion(p.region) {
				s.m.blocked.Inc() // the router never offers one: defence in depth
				continue
			}
			if !p.br.allow(now) {
				s.m.skipped.WithLabelValues(p.id, reasonBreaker).Inc()
				skipBreaker, retryIn = true, max(retryIn, p.br.retryIn(now))
				continue
			}
			if !p.acquire() {
				p.br.release()
				s.m.skipped.WithLabelValues(p.id, reasonBusy).Inc()
				skipBusy = true
				continue
			}
		}
		if last.err != nil {
			if !last.capacity() {
				// A retry after a failure: bounded by the shared budget, after a backoff.
				if !s.budget.take() {
					s.m.exhausted.Inc()
					if p != nil {
						p.release()
						p.br.release()
					}
					break
				}
				if err := s.backoff(ctx, r, retries); err != nil {
					if p != nil {
						p.release()
						p.br.release()
					}
					return nil, err
				}
				retries++
			}
			s.m.fallbacks.WithLabelValues(reasonOf(last.err)).Inc()
		}
		attempts++
		out, ferr, err := s.open(ctx, t, r, start, end, p, c.Model, i < n && attempts < s.opts.MaxAttempts, failed)
		failed = addCost(failed, ferr)
		if err == nil {
			return s.served(r, out, overflow, attempts), nil
		}
		reason := reasonOf(err)
		label := "local"
		if p != nil {
			label = p.id
			p.release()
			if blamesTarget(err) {
				p.br.failure(s.opts.Now())
			} else {
				p.br.release()
			}
		}
		s.m.attemptErrs.WithLabelValues(label, reason).Inc()
		if !s.fallbackable(err, r) {
			r.Trace.Attempts = attempts
			return nil, err
		}
		if first == nil {
			first = err
		}
		if p == nil && overflow == "" {
			overflow = reason
		}
		if p == nil && reason == reasonWait && !waited {
			waited, waitStart, waitEnd = true, start, end
		}
		last = attempt{err: err, model: c.Model, ctx: c.ContextWindow, local: p == nil}
	}
	if waited {
		// The local engines were slow, and no other target took the request: it goes back
		// to them, without a bound (MaxWait must not turn a slow answer into an error).
		attempts++
		out, _, err := s.open(ctx, t, r, waitStart, waitEnd, nil, at(waitStart).Model, false, failed)
		if err == nil {
			return s.served(r, out, "", attempts), nil
		}
		r.Trace.Attempts = attempts
		return nil, err
	}
	r.Trace.Attempts = attempts
	switch {
	case first != nil:
		return nil, first
	case skipBreaker:
		return nil, &models.Error{Kind: models.ErrUnavailable, Code: "provider_unavailable", RetryAfter: max(retryIn, time.Second),
			Msg: fmt.Sprintf("every target for %q is failing and paused; retry in %v", t.Model, retryIn.Round(time.Second))}
	case skipBusy:
		return nil, &models.Error{Kind: models.ErrRejected, Code: "provider_busy", RetryAfter: time.Second,
			Msg: fmt.Sprintf("every target for %q is at its concurrency limit", t.Model)}
	}
	return nil, &models.Error{Kind: models.ErrUnavailable, Msg: fmt.Sprintf("no backend serves %q", t.Model)}
}

// open opens one step (a remote engine p, or local candidates [start, end) through the
// next stage) and, when more targets are left, reads the stream up to its first token.
// It returns the stream, or the cost of a stream that failed after opening and the error.
func (s *Stage) open(ctx context.Context, t models.Target, r *models.Request, start, end int, p *provider,
	model string, more bool, failed models.Cost) (*routed, models.Cost, error) {
	tgt := s.target(t, start, end, p)
	var st models.Stream
	var err error
	var w *waitBound
	if p != nil {
		st, err = p.b.Open(ctx, tgt, r)
	} else {
		octx := ctx
		if more && s.opts.MaxWait > 0 && r.Priority == models.PriorityInteractive {
			w, octx = s.boundWait(ctx, r)
		}
		st, err = s.next.Open(octx, tgt, r)
	}
	var out *routed
	var lost models.Cost
	if err == nil {
		out = &routed{Stream: st, s: s, t: tgt, p: p, model: model, failed: failed}
		if more {
			// Another target is left: read up to the first token, so that a failure
			// before it can still go elsewhere.
			err = out.peek()
			if err == nil && w != nil && !w.keep() {
				err = w.err() // the first token came too late
			}
			if err != nil {
				_ = st.Close()
				lost = out.priced(st.Usage()).Cost
				s.m.failedCost.Add(lost.Total())
			}
		}
	}
	if w != nil {
		if err == nil {
			out.cancel = w.cancel // the stream's context lives until it is closed
		} else {
			if w.fired() {
				err = w.err()
			}
			w.cancel()
		}
	}
	if err != nil {
		return nil, lost, err
	}
	return out, lost, nil
}

// served records where a request went and returns its stream.
func (s *Stage) served(r *models.Request, out *routed, overflow string, attempts int) *routed {
	if p := out.p; p != nil {
		p.br.success()
		if overflow != "" {
			out.overflow = overflow
			r.Trace.Overflow = overflow
			s.m.overflow.WithLabelValues(overflow, p.id).Inc()
		}
	}
	r.Trace.Attempts = attempts
	r.Trace.Region = out.t.Region
	if r.Trace.Route != "" {
		r.Trace.Route = routeTrace(r.Trace.Route, out.Target().Backend, r.Trace.Overflow, attempts)
	}
	return out
}

// waitBound abandons a local attempt that has not produced its first token by the
// request's arrival plus MaxWait, by cancelling the context it was opened with (the
// scheduler leaves its queue; the engine request is dropped). keep settles the race
// with the first token.
type waitBound struct {
	state  atomic.Int32 // 0 waiting, 1 fired, 2 kept
	timer  *time.Timer
	cancel context.CancelFunc
	wait   time.Duration
}

func (s *Stage) boundWait(ctx context.Context, r *models.Request) (*waitBound, context.Context) {
	cctx, cancel := context.WithCancel(ctx)
	w := &waitBound{cancel: cancel, wait: s.opts.MaxWait}
	start := r.Arrived
	if start.IsZero() {
		start = time.Now()
	}
	w.timer = time.AfterFunc(time.Until(start.Add(s.opts.MaxWait)), func() {
		if w.state.CompareAndSwap(0, 1) {
			cancel()
		}
	})
	return w, cctx
}

// keep reports whether the attempt beat the bound (and stops the timer).
func (w *waitBound) keep() bool {
	if w.state.CompareAndSwap(0, 2) {
		w.timer.Stop()
		return true
	}
	return false
}

func (w *waitBound) fired() bool {
	w.timer.Stop()
	return w.state.Load() == 1
}

func (w *waitBound) err() error {
	return &models.Error{Kind: models.ErrTimeout, Code: "max_wait",
		Msg: fmt.Sprintf("no first token from the local engines within %v", w.wait)}
}

// target is the Target of the step [start, end): the client's model name for the first
// candidates, the fallback model's own name after.
func (s *Stage) target(t models.Target, start, end int, p *provider) models.Target {
	nc := len(t.Candidates)
	var cs []models.Candidate
	if start < nc {
		cs = t.Candidates[start:end]
	} else {
		cs = t.Fallbacks[start-nc : end-nc]
	}
	c := cs[0]
	tgt := models.Target{Model: c.Model, Tier: c.Tier, Candidates: cs, Region: models.RegionLocal}
	if start < nc || tgt.Model == "" {
		tgt.Model = t.Model
	}
	if tgt.Tier == "" {
		tgt.Tier = t.Tier
	}
	if p != nil {
		tgt.Region = p.region
	}
	if len(cs) == 1 {
		tgt.Backend, tgt.UpstreamModel = c.Backend, c.UpstreamModel
	}
	return tgt
}

// backoff waits before retry number n (0-based): Backoff doubled n times, capped by
// MaxBackoff, with jitter, and cut short by the request's deadline.
func (s *Stage) backoff(ctx context.Context, r *models.Request, n int) error {
	d := s.opts.Backoff << min(n, 16)
	if d > s.opts.MaxBackoff || d <= 0 {
		d = s.opts.MaxBackoff
	}
	d = d/2 + rand.N(d/2+1)
	if !r.Deadline.IsZero() {
		d = min(d, time.Until(r.Deadline))
	}
	if d <= 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return &models.Error{Kind: models.ErrCanceled, Msg: "request canceled"}
	}
}

// fallbackable reports whether another target may take a request that failed with err.
func (s *Stage) fallbackable(err error, r *models.Request) bool {
	if !r.Deadline.IsZero() && !s.opts.Now().Before(r.Deadline) {
		return false
	}
	switch {
	case isContext(err):
		return true
	case errors.Is(err, models.ErrSaturated), errors.Is(err, models.ErrRejected), errors.Is(err, models.ErrOverloaded),
		errors.Is(err, models.ErrUnavailable), errors.Is(err, models.ErrNoCapacity), errors.Is(err, models.ErrUpstream),
		errors.Is(err, models.ErrTimeout):
		return !errors.Is(err, models.ErrCanceled)
	}
	return false
}

// blamesTarget reports an error that counts against a remote engine's breaker.
func blamesTarget(err error) bool {
	if isContext(err) || errors.Is(err, models.ErrCanceled) {
		return false
	}
	return errors.Is(err, models.ErrRejected) || errors.Is(err, models.ErrOverloaded) || errors.Is(err, models.ErrUnavailable) ||
		errors.Is(err, models.ErrUpstream) || errors.Is(err, models.ErrTimeout) || errors.Is(err, models.ErrNoCapacity)
}

func isContext(err error) bool {
	var e *models.Error
	return errors.As(err, &e) && e.Code == models.CodeContextLength
}

// reasonOf maps an error to the bounded reason label.
func reasonOf(err error) string {
	switch {
	case isContext(err):
		return reasonContext
	case errors.Is(err, models.ErrSaturated):
		return reasonSaturated
	case errors.Is(err, models.ErrRejected):
		return reasonRejected
	case errors.Is(err, models.ErrOverloaded):
		return reasonOverloaded
	case errors.Is(err, models.ErrUnavailable), errors.Is(err, models.ErrNoCapacity):
		return reasonUnavailable
	case errors.Is(err, models.ErrUpstream):
		return reasonUpstream
	case errors.Is(err, models.ErrTimeout):
		var e *models.Error
		if errors.As(err, &e) && e.Code == "max_wait" {
			return reasonWait
		}
		return reasonTimeout
	}
	return reasonOther
}

func addCost(a, b models.Cost) models.Cost {
	a.Prompt += b.Prompt
	a.Completion += b.Completion
	return a
}

// routeTrace completes the router's X-Sluice-Route with where the request went.
func routeTrace(route, backend, overflow string, attempts int) string {
	b := make([]byte, 0, len(route)+len(backend)+48)
	b = append(b, route...)
	b = append(b, "; target="...)
	b = append(b, backend...)
	if overflow != "" {
		b = append(b, "; overflow="...)
		b = append(b, overflow...)
	}
	if attempts > 1 {
		b = append(b, "; attempts="...)
		b = append(b, byte('0'+min(attempts, 9)))
	}
	return string(b)
}
