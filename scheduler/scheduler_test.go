package scheduler

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluice-llm/sluice/models"
)

// fakeBackend is a Backend whose answers the test decides: open (if set) answers Open,
// else a stream of one chunk. It records where each request went.
type fakeBackend struct {
	mu    sync.Mutex
	cap   models.Capacity
	open  func(ctx context.Context, t models.Target) (models.Stream, error)
	calls []models.Target
}

func newFake(slots int) *fakeBackend {
	return &fakeBackend{cap: models.Capacity{Slots: slots, Healthy: true}}
}

func (f *fakeBackend) Open(ctx context.Context, t models.Target, _ *models.Request) (models.Stream, error) {
	f.mu.Lock()
	f.calls = append(f.calls, t)
	open := f.open
	f.mu.Unlock()
	if ctx.Err() != nil { // as the real runtimes do
		return nil, &models.Error{Kind: models.ErrCanceled, Msg: "request canceled", Err: ctx.Err()}
	}
	if open != nil {
		return open(ctx, t)
	}
	return &fakeStream{chunks: []string{"hi"}}, nil
}

func (f *fakeBackend) Capacity() models.Capacity {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cap
}

func (f *fakeBackend) setOpen(open func(ctx context.Context, t models.Target) (models.Stream, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.open = open
}

func (f *fakeBackend) opened() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// fakeStream sends its chunks, then io.EOF (or err).
type fakeStream struct {
	chunks []string
	err    error
	closed bool
}

func (s *fakeStream) Recv() (models.Chunk, error) {
	if len(s.chunks) == 0 {
		if s.err != nil {
			return models.Chunk{}, s.err
		}
		return models.Chunk{}, io.EOF
	}
	c := models.Chunk{Text: s.chunks[0]}
	s.chunks = s.chunks[1:]
	return c, nil
}

func (s *fakeStream) Usage() models.Usage { return models.Usage{} }
func (s *fakeStream) Close() error        { s.closed = true; return nil }

func chatReq(tenant, text string) *models.Request {
	return &models.Request{Kind: models.KindChat, Model: "m", Tenant: tenant,
		Messages: []models.Message{{Role: "user", Content: text}}}
}

func target(ids ...string) models.Target {
	return models.Target{Model: "m", Candidates: cands(ids...)}
}

// drain reads a stream to its end and closes it.
func drain(t *testing.T, st models.Stream) {
	t.Helper()
	for {
		if _, err := st.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("stream: %v", err)
			}
			break
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPanicUnderLockReleasesIt: a panic while the scheduler holds its mutex (here in the
// GPU utilization hook the probe calls) must not leave the mutex held, or every later
// request would hang once something recovered from the panic.
func TestPanicUnderLockReleasesIt(t *testing.T) {
	fb := newFake(2)
	boom := true
	s := New(map[string]Backend{"a": fb}, Options{GPUUtil: func(string) float64 {
		if boom {
			panic("gpu probe failed")
		}
		return 0
	}})
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the hook's panic did not reach the caller")
			}
		}()
		s.RefreshAll(context.Background())
	}()
	if !s.mu.TryLock() {
		t.Fatal("the scheduler's mutex stayed locked after a recovered panic")
	}
	s.mu.Unlock()
	boom = false
	st, err := s.Open(context.Background(), target("a"), chatReq("t", "hello"))
	if err != nil {
		t.Fatal(err)
	}
	drain(t, st)
}

// opened is a request's outcome in a goroutine.
type opened struct {
	st  models.Stream
	err error
}

func openAsync(s *Scheduler, ctx context.Context, t models.Target, r *models.Request) chan opened {
	ch := make(chan opened, 1)
	go func() {
		st, err := s.Open(ctx, t, r)
		ch <- opened{st, err}
	}()
	return ch
}

// engine reads the core's view of an engine (under the scheduler's mutex).
func engineState(s *Scheduler, id string) Engine {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := *s.core.engines[id]
	e.Slots = append([]Slot(nil), e.Slots...)
	return e
}

func long(c byte) string { return strings.Repeat(string(c), 2*BlockBytes) }

// TestWaitAndHandOff: with the only slot taken, a request waits; the slot goes to it the
// moment the first stream closes, in the goroutine that closes it.
func TestWaitAndHandOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fb := newFake(1)
		s := New(map[string]Backend{"a": fb}, Options{})
		ctx := context.Background()
		first, err := s.Open(ctx, target("a"), chatReq("t", "one"))
		if err != nil {
			t.Fatal(err)
		}
		second := openAsync(s, ctx, target("a"), chatReq("u", "two"))
		synctest.Wait()
		select {
		case <-second:
			t.Fatal("second request ran while the only slot was held")
		default:
		}
		if q := s.core.QueueLen(0); q != 1 {
			t.Fatalf("queue %d, want 1", q)
		}
		drain(t, first)
		synctest.Wait()
		got := <-second
		if got.err != nil {
			t.Fatal(got.err)
		}
		if fb.opened() != 2 {
			t.Fatalf("engine opened %d requests, want 2", fb.opened())
		}
		drain(t, got.st)
		if e := engineState(s, "a"); e.inflight != 0 || e.svc.n != 2 {
			t.Fatalf("in flight %d, service times %d; want 0 and 2", e.inflight, e.svc.n)
		}
	})
}

// TestGiveUpWhileQueued: a caller that leaves, or whose deadline passes, while it waits is
// taken out of the queue; nothing reaches the engine for it and the next one is served.
func TestGiveUpWhileQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fb := newFake(1)
		s := New(map[string]Backend{"a": fb}, Options{})
		hold, err := s.Open(context.Background(), target("a"), chatReq("t", "hold"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		left := openAsync(s, ctx, target("a"), chatReq("u", "leaves"))
		late := chatReq("v", "late")
		late.Deadline = time.Now().Add(3 * time.Second)
		timedOut := openAsync(s, context.Background(), target("a"), late)
		synctest.Wait()
		cancel()
		if got := <-left; !errors.Is(got.err, models.ErrCanceled) {
			t.Fatalf("caller that left: %v", got.err)
		}
		if got := <-timedOut; !errors.Is(got.err, models.ErrTimeout) || time.Until(late.Deadline) > 0 {
			t.Fatalf("caller past its deadline: %v", got.err)
		}
		if q := s.core.QueueLen(0); q != 0 {
			t.Fatalf("queue %d after both left", q)
		}
		drain(t, hold)
		if fb.opened() != 1 {
			t.Fatalf("engine opened %d requests, want only the first", fb.opened())
		}
		st, err := s.Open(context.Background(), target("a"), chatReq("w", "next"))
		if err != nil {
			t.Fatal(err)
		}
		drain(t, st)
	})
}

// TestGiveUpAfterDispatch: a caller that leaves just as its turn comes (dispatched, not yet
// sent) records no service time and leaves the slot's cached prompt as it was.
func TestGiveUpAfterDispatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fb := newFake(1)
		s := New(map[string]Backend{"a": fb}, Options{Engines: map[string]EngineOptions{"a": {Addressable: true}}})
		first, err := s.Open(context.Background(), target("a"), chatReq("t", long('x')))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		second := openAsync(s, ctx, target("a"), chatReq("u", long('y')))
		synctest.Wait()
		// Both at once: the caller leaves and its job is dispatched (whichever the waiting
		// goroutine sees first, it must not count as served).
		cancel()
		drain(t, first)
		if got := <-second; !errors.Is(got.err, models.ErrCanceled) {
			t.Fatalf("second: %v, want canceled", got.err)
		}
		e := engineState(s, "a")
		want := PrefixBlocks(chatReq("t", long('x')), nil)
		if e.svc.n != 1 || e.inflight != 0 {
			t.Fatalf("service times %d (want only the first's), in flight %d", e.svc.n, e.inflight)
		}
		if len(want) == 0 || matchBlocks(e.Slots[0].Blocks, want) != len(want) || len(e.Slots[0].Blocks) != len(want) {
			t.Fatalf("slot holds %v, want the first prompt %v", e.Slots[0].Blocks, want)
		}
	})
}

// TestCloseBeforeEnd: a caller that closes its stream before the answer ended (it left)
// records no service time; the slot keeps the prompt once its first token came.
func TestCloseBeforeEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fb := newFake(1)
		fb.setOpen(func(context.Context, models.Target) (models.Stream, error) {
			return &fakeStream{chunks: []string{"a", "b", "c"}}, nil
		})
		s := New(map[string]Backend{"a": fb}, Options{Engines: map[string]EngineOptions{"a": {Addressable: true}}})
		r := chatReq("t", long('x'))
		st, err := s.Open(context.Background(), target("a"), r)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		_ = st.Close()
		e := engineState(s, "a")
		if e.svc.n != 0 || e.inflight != 0 {
			t.Fatalf("service times %d after a caller left, in flight %d", e.svc.n, e.inflight)
		}
		if want := PrefixBlocks(r, nil); matchBlocks(e.Slots[0].Blocks, want) != len(want) {
			t.Fatalf("slot lost the prompt the engine processed")
		}
	})
}

func overloaded(retry time.Duration) *models.Error {
	return &models.Error{Kind: models.ErrOverloaded, Code: "engine_overloaded", RetryAfter: retry, Msg: "engine a is overloaded"}
}

// TestOverloadBacksOff: an engine that answers it is overloaded stays healthy, takes no
// new work for its Retry-After, and the requests waiting for it keep waiting (they used
// to be refused as if the engine were down); the request it refused goes to another
// engine that has a free slot, or gets the overload error when none has.
func TestOverloadBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := newFake(2), newFake(1)
		s := New(map[string]Backend{"a": a, "b": b}, Options{Policy: PolicyRoundRobin})
		ctx := context.Background()
		a.setOpen(func(context.Context, models.Target) (models.Stream, error) { return nil, overloaded(2 * time.Second) })
		// Round-robin tries a first: it refuses, the request goes to b.
		first, err := s.Open(ctx, target("a", "b"), chatReq("t", "one"))
		if err != nil {
			t.Fatalf("first: %v, want served by b", err)
		}
		if first.(*held).t.Backend != "b" || a.opened() != 1 || b.opened() != 1 {
			t.Fatalf("first went to %s (a opened %d, b %d)", first.(*held).t.Backend, a.opened(), b.opened())
		}
		// b is full and a backs off: the next request waits, it is not refused.
		second := openAsync(s, ctx, target("a", "b"), chatReq("u", "two"))
		synctest.Wait()
		if ea := engineState(s, "a"); !ea.Healthy || s.core.QueueLen(0) != 1 || a.opened() != 1 {
			t.Fatalf("a healthy %v, queue %d, a opened %d: want healthy, one waiting, no new call", ea.Healthy, s.core.QueueLen(0), a.opened())
		}
		// Only a can serve this one, and it backs off: it waits too.
		third := openAsync(s, ctx, target("a"), chatReq("v", "three"))
		synctest.Wait()
		a.setOpen(nil) // a recovers
		time.Sleep(2 * time.Second)
		synctest.Wait()
		for i, ch := range []chan opened{second, third} {
			got := <-ch
			if got.err != nil {
				t.Fatalf("request %d after the back-off: %v", i+2, got.err)
			}
			if got.st.(*held).t.Backend != "a" {
				t.Fatalf("request %d went to %s, want a once its back-off ended", i+2, got.st.(*held).t.Backend)
			}
			drain(t, got.st)
		}
		drain(t, first)
		if st := s.core.Stats(); st.Overloads != 1 || st.Expired != 0 {
			t.Fatalf("stats %+v: want one overload, nothing expired", st)
		}
		// With no other candidate, the caller gets the overload error and its Retry-After.
		a.setOpen(func(context.Context, models.Target) (models.Stream, error) { return nil, overloaded(3 * time.Second) })
		_, err = s.Open(ctx, target("a"), chatReq("t", "four"))
		var me *models.Error
		if !errors.Is(err, models.ErrOverloaded) || !errors.As(err, &me) || me.RetryAfter != 3*time.Second {
			t.Fatalf("lone overloaded engine: %v", err)
		}
		if ea := engineState(s, "a"); !ea.Healthy || ea.inflight != 0 || ea.svc.n != 2 {
			t.Fatalf("a: healthy %v, in flight %d, service times %d", ea.Healthy, ea.inflight, ea.svc.n)
		}
	})
}

// TestUnreachableRetriesElsewhere: an engine that cannot be reached is marked down, and
// the request it could not take goes to another candidate.
func TestUnreachableRetriesElsewhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := newFake(1), newFake(1)
		s := New(map[string]Backend{"a": a, "b": b}, Options{Policy: PolicyRoundRobin})
		a.setOpen(func(context.Context, models.Target) (models.Stream, error) {
			return nil, &models.Error{Kind: models.ErrUnavailable, Msg: "engine a is unavailable"}
		})
		st, err := s.Open(context.Background(), target("a", "b"), chatReq("t", "one"))
		if err != nil {
			t.Fatal(err)
		}
		if st.(*held).t.Backend != "b" || engineState(s, "a").Healthy {
			t.Fatalf("went to %s, a healthy %v: want b, a down", st.(*held).t.Backend, engineState(s, "a").Healthy)
		}
		drain(t, st)
	})
}

// slowStream sends "hi" after delay (virtual time in synctest), then io.EOF after tail.
type slowStream struct {
	delay, tail time.Duration
	sent        bool
}

func (s *slowStream) Recv() (models.Chunk, error) {
	if s.sent {
		time.Sleep(s.tail)
		return models.Chunk{}, io.EOF
	}
	time.Sleep(s.delay)
	s.sent = true
	return models.Chunk{Text: "hi"}, nil
}

func (s *slowStream) Usage() models.Usage { return models.Usage{} }
func (s *slowStream) Close() error        { return nil }

// TestPrefixWaitWakes: a request that waits for the busy slot holding its prompt
// (cost-aware waiting) while another slot is free starts on the free one when its bound
// passes, even though nothing else happens (the slot it waits for stays busy): the
// scheduler's timer runs Dispatch then.
func TestPrefixWaitWakes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fb := newFake(2)
		fb.setOpen(func(context.Context, models.Target) (models.Stream, error) {
			return &slowStream{delay: 300 * time.Millisecond, tail: 100 * time.Millisecond}, nil
		})
		s := New(map[string]Backend{"a": fb}, Options{Engines: map[string]EngineOptions{"a": {Addressable: true}}})
		ctx := context.Background()
		// Three cold requests measure the engine: 300 ms to first token for 320 prompt
		// tokens, 400 ms a slot is held.
		long := func(c byte) string { return strings.Repeat(string(c), 5*BlockBytes) }
		for c := byte('a'); c < 'd'; c++ {
			st, err := s.Open(ctx, target("a"), chatReq("w", long(c)))
			if err != nil {
				t.Fatal(err)
			}
			drain(t, st)
		}
		x, err := s.Open(ctx, target("a"), chatReq("x", long('x')))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x.Recv(); err != nil { // x's first token: its prompt is processed
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // x's slot should free in ~50 ms
		x2 := openAsync(s, ctx, target("a"), chatReq("x", long('x')))
		synctest.Wait()
		select {
		case <-x2:
			t.Fatal("x2 did not wait for x's slot, which holds its prompt and should free before a prefill would end")
		default:
		}
		s.mu.Lock()
		st := s.core.Stats()
		s.mu.Unlock()
		if st.PrefixWaits != 1 || fb.opened() != 4 {
			t.Fatalf("prefix waits %d, engine opened %d; want 1 and 4", st.PrefixWaits, fb.opened())
		}
		time.Sleep(300 * time.Millisecond) // past x2's bound (the 300 ms its prefill would take)
		synctest.Wait()
		var got opened
		select {
		case got = <-x2:
		default:
			t.Fatal("x2 still waits past its bound while a slot is free")
		}
		if got.err != nil {
			t.Fatal(got.err)
		}
		drain(t, got.st)
		drain(t, x)
	})
}

// TestPrefixWaitRearms: the wake-up timer is armed again for a bound it already fired for.
// It fired while the waiting job's fallback slot was taken (the job kept waiting); a
// dispatch whose time was read before the bound (before it got the lock) then left the
// job waiting until that same bound, which the timer must still serve.
func TestPrefixWaitRearms(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := time.Now()
		c := NewCore(Config{})
		c.AddEngine("a", 2, true, false)
		for i := range 3 {
			w := job("w", 0, []uint64{uint64(100 + i), 1, 2, 3}, "a")
			w.PromptTokens = 1000
			_ = c.Submit(base, w)
			c.Release(base.Add(200*time.Millisecond), w, true, time.Second)
		}
		s := &Scheduler{core: c}
		x := []uint64{7, 8, 9, 10}
		running := job("x", 0, x, "a")
		running.PromptTokens = 1000
		_ = c.Submit(base, running) // its slot stays busy
		c.Prefilled(running)
		x2 := job("x", 0, x, "a")
		x2.PromptTokens = 1000
		s.mu.Lock()
		_ = c.Submit(base, x2)
		s.dispatchLocked(base) // x2 waits for x's slot; the timer is armed for its bound
		b := job("b", models.PriorityBatch, []uint64{55}, "a")
		_ = c.Submit(base, b)
		s.dispatchLocked(base)
		if !b.Queued() {
			t.Fatal("the batch job took the slot x2 falls back on")
		}
		y := job("y", 0, []uint64{56}, "a") // an interactive job takes it
		_ = c.Submit(base, y)
		s.dispatchLocked(base)
		s.mu.Unlock()
		if !y.Running() || !x2.Queued() {
			t.Fatalf("setup: y running %v, x2 queued %v", y.Running(), x2.Queued())
		}
		time.Sleep(300 * time.Millisecond) // the timer fires: no free slot for x2
		synctest.Wait()
		stale := base.Add(100 * time.Millisecond) // read before the bound, locked after
		s.mu.Lock()
		c.Finish(stale, y, Completed, 0)
		s.dispatchLocked(stale)
		s.mu.Unlock()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		s.mu.Lock()
		defer s.mu.Unlock()
		if x2.Queued() {
			t.Fatal("x2 still waits 10 s later beside a free slot: no timer armed")
		}
	})
}
