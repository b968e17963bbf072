package overflow

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sluice-llm/sluice/models"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type rig struct {
	s      *Stage
	local  *fakeOpener
	remote map[string]*fakeOpener
	reg    *prometheus.Registry
	clk    *clock
}

var (
	saturated = &models.Error{Kind: models.ErrSaturated, Code: "saturated", RetryAfter: 2 * time.Second, Msg: "local capacity full"}
	down      = &models.Error{Kind: models.ErrUnavailable, Msg: "engine down"}
	overload  = &models.Error{Kind: models.ErrOverloaded, Msg: "529 overloaded"}
	tooLong   = &models.Error{Kind: models.ErrInvalid, Code: models.CodeContextLength, Msg: "too long"}
	invalid   = models.InvalidParam("temperature", "bad")
)

func newRig(t *testing.T, local []func(models.Target) (models.Stream, error), opts Options, remotes ...any) *rig {
	t.Helper()
	rg := &rig{local: &fakeOpener{name: "local", script: local}, remote: map[string]*fakeOpener{},
		reg: prometheus.NewRegistry(), clk: &clock{now: time.Unix(1e9, 0)}}
	opts.Remote = map[string]Remote{}
	for i := 0; i < len(remotes); i += 3 {
		id := remotes[i].(string)
		region := remotes[i+1].(string)
		f := &fakeOpener{name: id, script: remotes[i+2].([]func(models.Target) (models.Stream, error))}
		rg.remote[id] = f
		opts.Remote[id] = Remote{Backend: f, Region: region,
			Prices: map[string]Price{"mini": {Input: 1, Output: 10}, "big": {Input: 5, Output: 20}}}
	}
	if opts.Now == nil {
		opts.Now = rg.clk.Now
	}
	opts.Registry = rg.reg
	if opts.Backoff == 0 {
		opts.Backoff = time.Nanosecond // tests that check the backoff itself use synctest
	}
	rg.s = New(rg.local, opts)
	return rg
}

// target: local tiny on gpu1+gpu2, then mini on the EU and US clouds, then big (EU).
func target() models.Target {
	return models.Target{Model: "tiny", Tier: "small",
		Candidates: []models.Candidate{
			{Backend: "gpu1", UpstreamModel: "tiny", Region: "local", Model: "tiny", Tier: "small", ContextWindow: 2048},
			{Backend: "gpu2", UpstreamModel: "tiny", Region: "local", Model: "tiny", Tier: "small", ContextWindow: 2048},
		},
		Fallbacks: []models.Candidate{
			{Backend: "eu", UpstreamModel: "gpt-4o-mini", Region: "eu", Model: "mini", Tier: "small", ContextWindow: 2048},
			{Backend: "us", UpstreamModel: "gpt-4o-mini", Region: "us", Model: "mini", Tier: "small", ContextWindow: 128000},
			{Backend: "eu", UpstreamModel: "gpt-4o", Region: "eu", Model: "big", Tier: "frontier", ContextWindow: 128000},
		}}
}

func req(k *models.Key) *models.Request {
	return &models.Request{Kind: models.KindChat, Model: "tiny", Stream: true, Key: k,
		Messages: []models.Message{{Role: "user", Content: "hi"}}, Trace: models.Trace{Route: "tier=small; model=tiny; reason=model"}}
}

type script = []func(models.Target) (models.Stream, error)

func drain(t *testing.T, st models.Stream) (string, error) {
	t.Helper()
	var b strings.Builder
	for {
		c, err := st.Recv()
		if err == io.EOF {
			return b.String(), nil
		}
		if err != nil {
			return b.String(), err
		}
		b.WriteString(c.Text)
	}
}

func TestUnderCapacityNothingOverflows(t *testing.T) {
	rg := newRig(t, script{ok("local")}, Options{}, "eu", "eu", script{ok("cloud")})
	for i := 0; i < 20; i++ {
		r := req(nil)
		st, err := rg.s.Open(context.Background(), target(), r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := drain(t, st)
		st.Close()
		if err != nil || got != "local" {
			t.Fatalf("answer %q, %v", got, err)
		}
		if r.Trace.Overflow != "" || r.Trace.Region != "local" || r.Trace.Attempts != 1 ||
			r.Trace.Route != "tier=small; model=tiny; reason=model; target=gpu1" {
			t.Fatalf("trace = %+v", r.Trace)
		}
	}
	if rg.remote["eu"].n() != 0 {
		t.Fatal("a request overflowed under capacity")
	}
	if c := testutil.CollectAndCount(rg.s.m.overflow); c != 0 {
		t.Fatalf("overflow counter = %v", c)
	}
}

func TestSaturatedOverflowsToAllowedCloud(t *testing.T) {
	rg := newRig(t, script{fail(saturated)}, Options{}, "eu", "eu", script{ok("bonjour")}, "us", "us", script{ok("hello")})
	// An EU key: the router gives no US candidate, and the stage would refuse one anyway.
	r := req(&models.Key{Residency: models.ResidencyEU})
	st, err := rg.s.Open(context.Background(), target(), r)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := drain(t, st)
	st.Close()
	if got != "bonjour" || r.Trace.Overflow != "saturated" || r.Trace.Region != "eu" || r.Trace.Attempts != 2 {
		t.Fatalf("got %q, trace %+v", got, r.Trace)
	}
	if !strings.HasSuffix(r.Trace.Route, "; target=eu; overflow=saturated; attempts=2") {
		t.Errorf("route = %q", r.Trace.Route)
	}
	tgt := st.(targeter).Target()
	if tgt.Backend != "eu" || tgt.Model != "mini" || tgt.UpstreamModel != "gpt-4o-mini" || tgt.Region != "eu" {
		t.Errorf("target = %+v", tgt)
	}
	// Priced at the cloud's list price: 1000 x $1/M + 100 x $10/M.
	if u := st.Usage(); u.Cost.Total() < 0.00199 || u.Cost.Total() > 0.00201 {
		t.Errorf("cost = %+v", u.Cost)
	}
	if c := testutil.ToFloat64(rg.s.m.overflow.WithLabelValues("saturated", "eu")); c != 1 {
		t.Errorf("overflow count = %v", c)
	}
	if c := testutil.ToFloat64(rg.s.m.overflowCost.WithLabelValues("saturated", "eu")); c < 0.00199 {
		t.Errorf("overflow cost = %v", c)
	}
	if rg.remote["us"].n() != 0 {
		t.Error("US cloud was called")
	}
	// No backoff and no retry budget for saturation: 50 more in a row all overflow.
	for i := 0; i < 50; i++ {
		st, err := rg.s.Open(context.Background(), target(), req(nil))
		if err != nil {
			t.Fatal(i, err)
		}
		st.Close()
	}
}

func TestResidencyCheckedAtOpen(t *testing.T) {
	rg := newRig(t, script{fail(saturated)}, Options{}, "us", "us", script{ok("hello")})
	tg := target()
	tg.Fallbacks = []models.Candidate{{Backend: "us", Region: "us", Model: "mini"}} // as a buggy router might
	for _, k := range []*models.Key{{Residency: models.ResidencyEU}, {Residency: models.ResidencyLocalOnly}, {Residency: "unknown"}} {
		_, err := rg.s.Open(context.Background(), tg, req(k))
		if !errors.Is(err, models.ErrSaturated) {
			t.Fatalf("%s: err = %v, want the scheduler's 429", k.Residency, err)
		}
	}
	if rg.remote["us"].n() != 0 || testutil.ToFloat64(rg.s.m.blocked) != 3 {
		t.Fatalf("US opened %d times, blocked %v", rg.remote["us"].n(), testutil.ToFloat64(rg.s.m.blocked))
	}
	if _, err := rg.s.Open(context.Background(), tg, req(nil)); err != nil {
		t.Fatalf("unrestricted key: %v", err)
	}
}

func TestNoAllowedTargetKeeps429(t *testing.T) {
	rg := newRig(t, script{fail(saturated)}, Options{})
	tg := target()
	tg.Fallbacks = nil
	_, err := rg.s.Open(context.Background(), tg, req(nil))
	var me *models.Error
	if !errors.Is(err, models.ErrSaturated) || !errors.As(err, &me) || me.RetryAfter != 2*time.Second {
		t.Fatalf("err = %v", err)
	}
}

func TestFallbackBeforeFirstToken(t *testing.T) {
	// The local engine opens the stream, then fails before any token.
	rg := newRig(t, script{failAfter(0, down)}, Options{}, "eu", "eu", script{ok("a", "b")})
	r := req(nil)
	st, err := rg.s.Open(context.Background(), target(), r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := drain(t, st)
	st.Close()
	if got != "ab" || err != nil || r.Trace.Overflow != "unavailable" {
		t.Fatalf("got %q %v, trace %+v", got, err, r.Trace)
	}
	// The failed attempt's hardware cost ($0.001) is part of the request's.
	if c := st.Usage().Cost.Total(); c < 0.00299 || c > 0.00301 {
		t.Errorf("cost = %v, want the cloud's 0.002 plus the failed 0.001", c)
	}
	if rg.local.open != 0 {
		t.Error("failed local stream not closed")
	}
}

func TestNoRetryAfterTokens(t *testing.T) {
	rg := newRig(t, script{failAfter(2, down)}, Options{}, "eu", "eu", script{ok("x")})
	st, err := rg.s.Open(context.Background(), target(), req(nil))
	if err != nil {
		t.Fatal(err)
	}
	got, err := drain(t, st)
	st.Close()
	if got != "ww" || !errors.Is(err, models.ErrUnavailable) || rg.remote["eu"].n() != 0 {
		t.Fatalf("got %q, %v; cloud calls %d", got, err, rg.remote["eu"].n())
	}
}

func TestContextLengthGoesToBiggerContext(t *testing.T) {
	rg := newRig(t, script{fail(tooLong)}, Options{}, "eu", "eu", script{ok("eu")}, "us", "us", script{ok("big window")})
	r := req(nil)
	st, err := rg.s.Open(context.Background(), target(), r)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := drain(t, st)
	st.Close()
	// eu/mini has the same 2048 window: skipped; us/mini has 128k.
	if got != "big window" || rg.remote["eu"].n() != 0 || r.Trace.Overflow != "context_length" {
		t.Fatalf("got %q, eu calls %d, trace %+v", got, rg.remote["eu"].n(), r.Trace)
	}
}

func TestInvalidIsNotRetried(t *testing.T) {
	rg := newRig(t, script{fail(invalid)}, Options{}, "eu", "eu", script{ok("x")})
	_, err := rg.s.Open(context.Background(), target(), req(nil))
	if !errors.Is(err, models.ErrInvalid) || rg.remote["eu"].n() != 0 {
		t.Fatalf("err = %v, cloud calls %d", err, rg.remote["eu"].n())
	}
}

func TestMaxAttempts(t *testing.T) {
	rg := newRig(t, script{fail(down)}, Options{MaxAttempts: 2}, "eu", "eu", script{fail(overload)}, "us", "us", script{ok("x")})
	r := req(nil)
	_, err := rg.s.Open(context.Background(), target(), r)
	if !errors.Is(err, models.ErrUnavailable) || r.Trace.Attempts != 2 || rg.remote["us"].n() != 0 {
		t.Fatalf("err = %v (want the first error), attempts %d, us calls %d", err, r.Trace.Attempts, rg.remote["us"].n())
	}
}

func TestRetryBudget(t *testing.T) {
	rg := newRig(t, script{fail(down)}, Options{MinRetries: 3, BudgetRatio: 0.01}, "eu", "eu", script{ok("x")})
	served := 0
	for i := 0; i < 10; i++ {
		st, err := rg.s.Open(context.Background(), target(), req(nil))
		if err == nil {
			served++
			st.Close()
		}
	}
	if served != 3 || testutil.ToFloat64(rg.s.m.exhausted) != 7 {
		t.Fatalf("served %d (want the reserve of 3), exhausted %v", served, testutil.ToFloat64(rg.s.m.exhausted))
	}
}

func TestBreaker(t *testing.T) {
	rg := newRig(t, script{fail(saturated)}, Options{BreakerFailures: 2, BreakerCooldown: 10 * time.Second},
		"eu", "eu", script{fail(overload), fail(overload), ok("probe ok")})
	tg := target()
	tg.Fallbacks = tg.Fallbacks[:1] // eu only
	for i := 0; i < 2; i++ {
		if _, err := rg.s.Open(context.Background(), tg, req(nil)); !errors.Is(err, models.ErrSaturated) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	if rg.s.remote["eu"].br.current() != stateOpen {
		t.Fatal("breaker not open after 2 failures")
	}
	// Open: skipped, the scheduler's 429 stands.
	if _, err := rg.s.Open(context.Background(), tg, req(nil)); !errors.Is(err, models.ErrSaturated) || rg.remote["eu"].n() != 2 {
		t.Fatalf("while open: %v, calls %d", err, rg.remote["eu"].n())
	}
	if testutil.ToFloat64(rg.s.m.skipped.WithLabelValues("eu", reasonBreaker)) != 1 {
		t.Error("skip not counted")
	}
	// A cloud-only target with an open breaker: 503 with the time left.
	cloudOnly := models.Target{Model: "mini", Candidates: tg.Fallbacks}
	_, err := rg.s.Open(context.Background(), cloudOnly, req(nil))
	var me *models.Error
	if !errors.Is(err, models.ErrUnavailable) || !errors.As(err, &me) || me.RetryAfter != 10*time.Second {
		t.Fatalf("cloud-only while open: %v", err)
	}
	rg.clk.add(11 * time.Second)
	st, err := rg.s.Open(context.Background(), tg, req(nil))
	if err != nil {
		t.Fatalf("half-open probe: %v", err)
	}
	st.Close()
	if rg.s.remote["eu"].br.current() != stateClosed {
		t.Fatal("probe success did not close the breaker")
	}
}

func TestBreakerHalfOpenAdmitsOneProbe(t *testing.T) {
	b := &breaker{failures: 1, cooldown: time.Second}
	now := time.Unix(0, 0)
	b.failure(now)
	if b.allow(now) {
		t.Fatal("open breaker allowed a request")
	}
	now = now.Add(time.Second)
	if !b.allow(now) || b.allow(now) {
		t.Fatal("half-open must admit exactly one probe")
	}
	b.failure(now)
	if b.current() != stateOpen || b.allow(now.Add(time.Second/2)) {
		t.Fatal("failed probe must reopen")
	}
	if !b.allow(now.Add(time.Second)) {
		t.Fatal("second probe")
	}
	b.release()
	if !b.allow(now.Add(time.Second)) {
		t.Fatal("released probe must let another through")
	}
}

func TestProviderConcurrencyLimit(t *testing.T) {
	rg := newRig(t, script{fail(saturated)}, Options{}, "eu", "eu", script{ok("1")}, "us", "us", script{ok("2")})
	rg.s.remote["eu"].limit, rg.s.remote["us"].limit = 1, 1
	a, err := rg.s.Open(context.Background(), target(), req(nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := rg.s.Open(context.Background(), target(), req(nil))
	if err != nil {
		t.Fatal(err)
	}
	if a.(targeter).Target().Backend != "eu" || b.(targeter).Target().Backend != "us" {
		t.Fatalf("second request should skip the busy EU cloud: %s, %s", a.(targeter).Target().Backend, b.(targeter).Target().Backend)
	}
	// An EU key has nowhere else to go: the scheduler's 429.
	if _, err := rg.s.Open(context.Background(), target(), req(&models.Key{Residency: models.ResidencyEU})); !errors.Is(err, models.ErrSaturated) {
		t.Fatalf("eu key at the limit: %v", err)
	}
	a.Close()
	b.Close()
	if rg.s.remote["eu"].inflight.Load() != 0 || rg.s.remote["us"].inflight.Load() != 0 {
		t.Fatal("slots not released")
	}
	c, err := rg.s.Open(context.Background(), target(), req(&models.Key{Residency: models.ResidencyEU}))
	if err != nil || c.(targeter).Target().Backend != "eu" {
		t.Fatalf("after release: %v", err)
	}
	c.Close()
}

func TestBackoffDoublesAndRespectsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rg := newRig(t, script{fail(down)}, Options{Backoff: 100 * time.Millisecond, MaxBackoff: 150 * time.Millisecond, MaxAttempts: 3, Now: time.Now},
			"eu", "eu", script{fail(overload)}, "us", "us", script{ok("x")})
		start := time.Now()
		st, err := rg.s.Open(context.Background(), target(), req(nil))
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		// Two retries: 50-100ms, then 75-150ms (capped at 150ms, jittered down to half).
		if d := time.Since(start); d < 125*time.Millisecond || d > 250*time.Millisecond {
			t.Fatalf("backoff took %v", d)
		}
		// A deadline shorter than the backoff: no wait past it, and no retry after it.
		r := req(nil)
		r.Deadline = time.Now().Add(10 * time.Millisecond)
		start = time.Now()
		_, err = rg.s.Open(context.Background(), target(), r)
		if d := time.Since(start); d != 10*time.Millisecond || !errors.Is(err, models.ErrOverloaded) || r.Trace.Attempts != 2 {
			t.Fatalf("past the deadline: %v after %v, %d attempts", err, d, r.Trace.Attempts)
		}
	})
}

func TestFastPathIsTheScheduler(t *testing.T) {
	rg := newRig(t, script{ok("x")}, Options{}, "eu", "eu", script{ok("y")})
	tg := target()
	tg.Fallbacks = nil
	r := req(nil)
	st, err := rg.s.Open(context.Background(), tg, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, wrapped := st.(*routed); wrapped {
		t.Error("a request with nothing to choose should get the scheduler's stream as is")
	}
	st.Close()
	if r.Trace.Region != "local" || r.Trace.Attempts != 1 {
		t.Errorf("trace = %+v", r.Trace)
	}
}

// blocking is a local stage whose requests wait (as in the scheduler's queue) until
// released or their context ends.
type blocking struct {
	release chan struct{}
	opened  int
}

func (b *blocking) Open(ctx context.Context, t models.Target, _ *models.Request) (models.Stream, error) {
	b.opened++
	select {
	case <-b.release:
		return ok("late")(t)
	case <-ctx.Done():
		return nil, &models.Error{Kind: models.ErrCanceled, Msg: "request canceled while queued"}
	}
}

func TestMaxWaitMovesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		eu := &fakeOpener{name: "eu", script: script{ok("cloud")}}
		local := &blocking{release: make(chan struct{})}
		s := New(local, Options{MaxWait: 300 * time.Millisecond, Remote: map[string]Remote{"eu": {Backend: eu, Region: "eu"}}})
		r := req(nil)
		r.Arrived = time.Now().Add(-100 * time.Millisecond) // it waited 100ms before the stage
		start := time.Now()
		st, err := s.Open(context.Background(), target(), r)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := drain(t, st)
		st.Close()
		if d := time.Since(start); d != 200*time.Millisecond || got != "cloud" || r.Trace.Overflow != "max_wait" {
			t.Fatalf("after %v: %q, trace %+v", d, got, r.Trace)
		}
		// Batch work waits as long as it must; so does a request with no fallback.
		r = req(nil)
		r.Priority = models.PriorityBatch
		r.Arrived = time.Now()
		go func() { time.Sleep(time.Second); local.release <- struct{}{} }()
		st, err = s.Open(context.Background(), target(), r)
		if err != nil {
			t.Fatal(err)
		}
		got, _ = drain(t, st)
		st.Close()
		if got != "late" || r.Trace.Overflow != "" {
			t.Fatalf("batch: %q %+v", got, r.Trace)
		}
	})
}

// firstTokenLate opens at once, but its first token comes only after delay.
type firstTokenLate struct{ delay time.Duration }

func (f *firstTokenLate) Open(ctx context.Context, t models.Target, _ *models.Request) (models.Stream, error) {
	return &ctxStream{ctx: ctx, at: time.Now().Add(f.delay)}, nil
}

type ctxStream struct {
	ctx  context.Context
	at   time.Time
	sent bool
}

func (c *ctxStream) Recv() (models.Chunk, error) {
	if c.sent {
		return models.Chunk{}, io.EOF
	}
	select {
	case <-time.After(time.Until(c.at)):
		c.sent = true
		return text("slow"), nil
	case <-c.ctx.Done():
		return models.Chunk{}, &models.Error{Kind: models.ErrCanceled, Msg: "canceled"}
	}
}
func (c *ctxStream) Usage() models.Usage { return models.Usage{Cost: models.Cost{Prompt: 0.5}} }
func (c *ctxStream) Close() error        { return nil }

func TestMaxWaitBeforeFirstToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		eu := &fakeOpener{name: "eu", script: script{ok("cloud")}}
		s := New(&firstTokenLate{delay: time.Second}, Options{MaxWait: 300 * time.Millisecond,
			Remote: map[string]Remote{"eu": {Backend: eu, Region: "eu", Prices: map[string]Price{"mini": {}}}}})
		r := req(nil)
		r.Arrived = time.Now()
		st, err := s.Open(context.Background(), target(), r)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := drain(t, st)
		st.Close()
		// The abandoned local attempt's cost (its prefill) is part of the request's.
		if got != "cloud" || r.Trace.Overflow != "max_wait" || st.Usage().Cost.Prompt != 0.5 {
			t.Fatalf("%q, trace %+v, cost %+v", got, r.Trace, st.Usage().Cost)
		}
		// In time: the local answer stands and its context stays alive while it streams.
		s = New(&firstTokenLate{delay: 100 * time.Millisecond}, Options{MaxWait: 300 * time.Millisecond,
			Remote: map[string]Remote{"eu": {Backend: eu, Region: "eu"}}})
		r = req(nil)
		r.Arrived = time.Now()
		st, err = s.Open(context.Background(), target(), r)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // past MaxWait: the stream must not be cancelled
		got, err = drain(t, st)
		st.Close()
		if got != "slow" || err != nil || r.Trace.Overflow != "" {
			t.Fatalf("%q %v %+v", got, err, r.Trace)
		}
	})
}

func TestMaxWaitGoesBackWhenNoOneElseServes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		eu := &fakeOpener{name: "eu", script: script{ok("cloud")}}
		local := &blocking{release: make(chan struct{}, 1)}
		s := New(local, Options{MaxWait: 300 * time.Millisecond, Remote: map[string]Remote{"eu": {Backend: eu, Region: "eu"}}})
		s.remote["eu"].limit = 0 // the only cloud is full
		tg := target()
		tg.Fallbacks = tg.Fallbacks[:1]
		r := req(&models.Key{Residency: models.ResidencyEU})
		r.Arrived = time.Now()
		go func() { time.Sleep(time.Second); local.release <- struct{}{} }()
		st, err := s.Open(context.Background(), tg, r)
		if err != nil {
			t.Fatalf("a slow local answer became an error: %v", err)
		}
		got, _ := drain(t, st)
		st.Close()
		if got != "late" || local.opened != 2 || r.Trace.Region != "local" || r.Trace.Overflow != "" {
			t.Fatalf("%q after %d local opens, trace %+v", got, local.opened, r.Trace)
		}
	})
}

// nopStream and nopOpener make the per-request cost of the stage itself visible.
type nopStream struct{}

func (nopStream) Recv() (models.Chunk, error) { return models.Chunk{}, io.EOF }
func (nopStream) Usage() models.Usage         { return models.Usage{} }
func (nopStream) Close() error                { return nil }

type nopOpener struct{}

func (nopOpener) Open(context.Context, models.Target, *models.Request) (models.Stream, error) {
	return nopStream{}, nil
}

func BenchmarkOpen(b *testing.B) {
	s := New(nopOpener{}, Options{Remote: map[string]Remote{"eu": {Backend: nopOpener{}, Region: "eu"}}})
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		t    models.Target
	}{
		{"no fallbacks", models.Target{Model: "tiny", Backend: "gpu1", Candidates: target().Candidates}},
		{"with fallbacks (peek)", target()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := req(nil)
			b.ReportAllocs()
			for b.Loop() {
				r.Trace = models.Trace{Route: "tier=small; model=tiny; reason=model"}
				st, err := s.Open(ctx, bc.t, r)
				if err != nil {
					b.Fatal(err)
				}
				st.Close()
			}
		})
	}
}
