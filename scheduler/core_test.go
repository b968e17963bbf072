package scheduler

import (
	"errors"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/models"
)

var t0 = time.Unix(1000, 0)

func cands(ids ...string) []models.Candidate {
	out := make([]models.Candidate, len(ids))
	for i, id := range ids {
		out[i] = models.Candidate{Backend: id, UpstreamModel: "m"}
	}
	return out
}

func job(tenant string, p models.Priority, blocks []uint64, engines ...string) *Job {
	return &Job{Model: "m", Tenant: tenant, Priority: p, Blocks: blocks, Candidates: cands(engines...), Cost: 1}
}

func TestDispatchAndWorkConservation(t *testing.T) {
	c := NewCore(Config{})
	c.AddEngine("a", 2, true, false)
	c.AddEngine("b", 1, true, false)
	var running []*Job
	for i := range 3 {
		j := job("t", 0, nil, "a", "b")
		if err := c.Submit(t0, j); err != nil || !j.Running() {
			t.Fatalf("job %d: err %v running %v", i, err, j.Running())
		}
		running = append(running, j)
	}
	w := job("t", 0, nil, "a", "b")
	if err := c.Submit(t0, w); err != nil || !w.Queued() {
		t.Fatalf("4th job should wait: %v", err)
	}
	if got := c.Dispatch(t0); len(got) != 0 {
		t.Fatalf("dispatched %d with no free slot", len(got))
	}
	// Any slot that frees goes to the waiter at once.
	c.Release(t0.Add(time.Second), running[2], true, 0)
	got := c.Dispatch(t0.Add(time.Second))
	if len(got) != 1 || got[0] != w || w.Engine != running[2].Engine {
		t.Fatalf("freed slot not handed to the waiter: %v", got)
	}
}

func TestPrefixAffinity(t *testing.T) {
	c := NewCore(Config{})
	c.AddEngine("a", 2, true, false)
	c.AddEngine("b", 2, true, false)
	tenantX := []uint64{1, 2, 3, 4}
	tenantY := []uint64{9, 8, 7, 6}
	first := job("x", 0, tenantX, "a", "b")
	if err := c.Submit(t0, first); err != nil {
		t.Fatal(err)
	}
	c.Release(t0.Add(time.Second), first, true, 0)
	y := job("y", 0, tenantY, "a", "b")
	_ = c.Submit(t0.Add(2*time.Second), y)
	c.Release(t0.Add(3*time.Second), y, true, 0)
	// X comes back (with a longer prompt sharing the system prompt): same engine and slot.
	again := job("x", 0, append(append([]uint64{}, tenantX...), 42), "a", "b")
	_ = c.Submit(t0.Add(4*time.Second), again)
	if again.Engine != first.Engine || again.Slot != first.Slot || !again.HasSlot || again.Matched != 4 {
		t.Fatalf("went to %s/%d (matched %d), want %s/%d with 4 blocks cached", again.Engine, again.Slot, again.Matched, first.Engine, first.Slot)
	}
	if y.Engine == first.Engine && y.Slot == first.Slot {
		t.Fatalf("Y overwrote X's slot while others were free")
	}
	st := c.Stats()
	if st.PrefixHits != 4 || st.PrefixBlocks != 4+4+5 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestBaselinePolicies(t *testing.T) {
	for _, pol := range []Policy{PolicyRoundRobin, PolicyLeastLoaded} {
		c := NewCore(Config{Policy: pol})
		c.AddEngine("a", 4, true, false)
		c.AddEngine("b", 4, true, false)
		count := map[string]int{}
		for range 4 {
			j := job("t", 0, []uint64{1, 2}, "a", "b")
			if err := c.Submit(t0, j); err != nil {
				t.Fatal(err)
			}
			if j.HasSlot {
				t.Fatalf("%s: baseline policies let the engine choose its slot", pol)
			}
			count[j.Engine]++
		}
		if count["a"] != 2 || count["b"] != 2 {
			t.Fatalf("%s spread %v, want 2/2", pol, count)
		}
	}
}

func TestPriorityAndFairness(t *testing.T) {
	c := NewCore(Config{})
	c.AddEngine("a", 1, true, false)
	hold := job("x", 0, nil, "a")
	_ = c.Submit(t0, hold)
	// Tenant "heavy" queues 3 jobs, "light" 1 job, and one batch job waits.
	var heavy []*Job
	for range 3 {
		j := job("heavy", 0, nil, "a")
		_ = c.Submit(t0, j)
		heavy = append(heavy, j)
	}
	batch := job("b", models.PriorityBatch, nil, "a")
	_ = c.Submit(t0, batch)
	light := job("light", 0, nil, "a")
	_ = c.Submit(t0.Add(time.Millisecond), light)
	var order []*Job
	cur := hold
	for i := range 5 {
		c.Release(t0.Add(time.Duration(i+1)*time.Second), cur, true, 0)
		got := c.Dispatch(t0.Add(time.Duration(i+1) * time.Second))
		if len(got) != 1 {
			t.Fatalf("step %d dispatched %d", i, len(got))
		}
		cur = got[0]
		order = append(order, cur)
	}
	// heavy[0] and light start at the same virtual time; light goes before heavy's
	// second job; batch only when no interactive job waits.
	want := []*Job{heavy[0], light, heavy[1], heavy[2], batch}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order[%d] = tenant %q (priority %d), want tenant %q", i, order[i].Tenant, order[i].Priority, want[i].Tenant)
		}
	}
}

func TestCancelExpireAndRefusals(t *testing.T) {
	c := NewCore(Config{MaxQueue: 2, SLO: [2]time.Duration{time.Second, 0}})
	c.AddEngine("a", 1, true, false)
	_ = c.Submit(t0, job("t", 0, nil, "a"))
	w1 := job("t", 0, nil, "a")
	w1.Deadline = t0.Add(time.Second)
	w2 := job("t", 0, nil, "a")
	_ = c.Submit(t0, w1)
	_ = c.Submit(t0, w2)
	if err := c.Submit(t0, job("t", 0, nil, "a")); !errors.Is(err, models.ErrRejected) {
		t.Fatalf("queue full: %v", err)
	}
	if !c.Cancel(w2) || c.Cancel(w2) || c.QueueLen(0) != 1 {
		t.Fatalf("cancel")
	}
	if exp := c.Expire(t0.Add(2 * time.Second)); len(exp) != 1 || exp[0] != w1 || !errors.Is(exp[0].Err, models.ErrTimeout) {
		t.Fatalf("expire: %v", exp)
	}
	// No healthy engine: refused at once.
	c.SetEngine("a", 0, false, "down", 0, 0)
	if err := c.Submit(t0, job("t", 0, nil, "a")); !errors.Is(err, models.ErrUnavailable) {
		t.Fatalf("engine down: %v", err)
	}
}

func TestSaturation(t *testing.T) {
	c := NewCore(Config{SLO: [2]time.Duration{2 * time.Second, 0}})
	c.AddEngine("a", 1, true, false)
	// Teach the core that a request holds the slot for 1 s.
	now := t0
	for range 3 {
		j := job("t", 0, nil, "a")
		_ = c.Submit(now, j)
		now = now.Add(time.Second)
		c.Release(now, j, true, 100*time.Millisecond)
	}
	_ = c.Submit(now, job("t", 0, nil, "a"))    // runs
	_ = c.Submit(now, job("t", 0, nil, "a"))    // waits ~1 s: fine
	err := c.Submit(now, job("t", 0, nil, "a")) // waits ~2 s + ttft: over the SLO
	var me *models.Error
	if !errors.Is(err, models.ErrSaturated) || !errors.As(err, &me) || me.RetryAfter < time.Second {
		t.Fatalf("want saturated with a retry hint, got %v", err)
	}
	// Batch work has no SLO: it waits.
	if err := c.Submit(now, job("t", models.PriorityBatch, nil, "a")); err != nil {
		t.Fatalf("batch refused: %v", err)
	}
}

func TestModelGrouping(t *testing.T) {
	c := NewCore(Config{SwapAfter: 5 * time.Second})
	c.AddEngine("o", 2, false, true) // one model at a time
	a1 := &Job{Model: "A", Candidates: cands("o"), Cost: 1}
	_ = c.Submit(t0, a1)
	b1 := &Job{Model: "B", Candidates: cands("o"), Cost: 1}
	_ = c.Submit(t0, b1)
	if !b1.Queued() {
		t.Fatal("B must wait while A is loaded")
	}
	// More A work keeps arriving: it runs beside a1 ...
	a2 := &Job{Model: "A", Candidates: cands("o"), Cost: 1}
	_ = c.Submit(t0.Add(time.Second), a2)
	c.Dispatch(t0.Add(time.Second))
	if !a2.Running() {
		t.Fatal("A work should share the loaded model")
	}
	// ... until B has waited SwapAfter: then the engine drains for B.
	c.Release(t0.Add(6*time.Second), a1, true, 0)
	c.Dispatch(t0.Add(6 * time.Second))
	a3 := &Job{Model: "A", Candidates: cands("o"), Cost: 1}
	_ = c.Submit(t0.Add(6*time.Second), a3)
	c.Dispatch(t0.Add(6 * time.Second))
	if a3.Running() {
		t.Fatal("A admitted while the engine drains for B")
	}
	c.Release(t0.Add(7*time.Second), a2, true, 0)
	got := c.Dispatch(t0.Add(7 * time.Second))
	if !b1.Running() || len(got) == 0 || got[0] != b1 {
		t.Fatalf("B should run once A drained: %v", got)
	}
	if c.Stats().Swaps != 1 {
		t.Fatalf("swaps = %d", c.Stats().Swaps)
	}
}

func TestPrefixBlocks(t *testing.T) {
	long := make([]byte, 3*BlockBytes)
	for i := range long {
		long[i] = byte('a' + i%26)
	}
	r1 := &models.Request{Kind: models.KindChat, Messages: []models.Message{{Role: "system", Content: string(long)}, {Role: "user", Content: "one"}}}
	r2 := &models.Request{Kind: models.KindChat, Messages: []models.Message{{Role: "system", Content: string(long)}, {Role: "user", Content: "two"}}}
	b1, b2 := PrefixBlocks(r1, nil), PrefixBlocks(r2, nil)
	if len(b1) != 3 || matchBlocks(b1, b2) != 3 {
		t.Fatalf("blocks %d, shared %d", len(b1), matchBlocks(b1, b2))
	}
	r3 := &models.Request{Kind: models.KindChat, Messages: []models.Message{{Role: "system", Content: "x" + string(long)}}}
	if matchBlocks(b1, PrefixBlocks(r3, nil)) != 0 {
		t.Fatal("a different first byte must share nothing")
	}
}

func TestKVBudget(t *testing.T) {
	c := NewCore(Config{})
	c.AddEngine("v", 8, false, false)
	c.SetKVTokens("v", 1000)
	big := job("t", 0, nil, "v")
	big.Tokens = 700
	_ = c.Submit(t0, big)
	next := job("t", 0, nil, "v")
	next.Tokens = 400
	_ = c.Submit(t0, next)
	if !next.Queued() {
		t.Fatal("a job whose KV does not fit beside the one in flight must wait")
	}
	small := job("u", 0, nil, "v")
	small.Tokens = 200
	_ = c.Submit(t0, small)
	c.Dispatch(t0)
	if !small.Running() {
		t.Fatal("a job that fits runs (work-conserving)")
	}
	c.Release(t0.Add(time.Second), big, true, 0)
	c.Dispatch(t0.Add(time.Second))
	if !next.Running() {
		t.Fatal("the waiting job runs once its KV fits")
	}
}

// TestAffinityBoundedOvertaking: a waiting job whose prefix is cached on the slot that
// frees runs before the head of the line, but the head is passed at most maxOvertaken
// times.
func TestAffinityBoundedOvertaking(t *testing.T) {
	c := NewCore(Config{MaxQueue: 1000})
	c.AddEngine("a", 1, true, false)
	hot := []uint64{7, 8, 9}
	run := job("t", 0, hot, "a")
	_ = c.Submit(t0, run)
	head := job("t", 0, []uint64{1, 2, 3}, "a")
	_ = c.Submit(t0, head)
	now := t0
	passed := 0
	for i := range 2 * maxOvertaken {
		j := job("t", 0, hot, "a") // another request for the cached prefix
		_ = c.Submit(now, j)
		now = now.Add(time.Second)
		c.Release(now, run, true, 0)
		got := c.Dispatch(now)
		if len(got) != 1 {
			t.Fatalf("step %d: dispatched %d", i, len(got))
		}
		run = got[0]
		if run == head {
			break
		}
		passed++
		if run.Matched != 3 {
			t.Fatalf("step %d: the cached prefix was not reused", i)
		}
	}
	if !head.Running() && head.state != jobDone {
		t.Fatalf("head never ran")
	}
	if passed != maxOvertaken {
		t.Fatalf("head passed %d times, want exactly %d", passed, maxOvertaken)
	}
}

// TestColdJobTakesForeignSlot: when a slot frees whose prompt no waiting job shares, and
// the first in line has its prompt cached on a busy slot, a job whose prompt is cached
// nowhere takes the free slot (it misses anyway) and the first in line waits for its
// own; with no such job the first in line takes the slot (work conservation).
func TestColdJobTakesForeignSlot(t *testing.T) {
	for _, withCold := range []bool{true, false} {
		c := NewCore(Config{MaxQueue: 100})
		c.AddEngine("a", 2, true, false)
		x, y, z := []uint64{1, 2, 3}, []uint64{4, 5, 6}, []uint64{7, 8, 9}
		runX, runY := job("x", 0, x, "a"), job("y", 0, y, "a")
		_ = c.Submit(t0, runX)
		_ = c.Submit(t0, runY)
		if !runX.Running() || !runY.Running() || runX.Slot == runY.Slot {
			t.Fatal("setup: x and y should run on both slots")
		}
		head := job("x", 0, x, "a") // cached on x's slot, still busy
		_ = c.Submit(t0.Add(time.Millisecond), head)
		var cold *Job
		if withCold {
			cold = job("z", 0, z, "a") // cached nowhere
			_ = c.Submit(t0.Add(2*time.Millisecond), cold)
		}
		now := t0.Add(time.Second)
		c.Release(now, runY, true, 0) // y's slot frees; nobody waits for y's prompt
		got := c.Dispatch(now)
		want := head
		if withCold {
			want = cold
		}
		if len(got) != 1 || got[0] != want {
			t.Fatalf("withCold=%v: dispatched %v, want only %s's job", withCold, got, want.Tenant)
		}
		if !withCold {
			continue
		}
		if !head.Queued() || head.overtaken != 1 {
			t.Fatalf("head: queued %v, overtaken %d; want still queued, passed once", head.Queued(), head.overtaken)
		}
		c.Release(now.Add(time.Second), runX, true, 0)
		got = c.Dispatch(now.Add(time.Second))
		if len(got) != 1 || got[0] != head || head.Slot != runX.Slot || head.Matched != 3 {
			t.Fatalf("head went to slot %d (matched %d), want x's slot %d with its prompt cached", head.Slot, head.Matched, runX.Slot)
		}
	}
}

// TestSlotsShrinkWhileBusy: llama-server reports fewer slots while a higher-numbered one
// is busy. The busy slot keeps its id and retires: it takes no new work, its job's
// release frees it, and no later dispatch finds a slot table out of step (it used to
// stay busy forever and the next dispatch panicked with index -1).
func TestSlotsShrinkWhileBusy(t *testing.T) {
	c := NewCore(Config{})
	c.AddEngine("a", 4, true, false)
	var run []*Job
	for i := range 4 {
		j := job("t", 0, []uint64{uint64(i + 1)}, "a")
		if err := c.Submit(t0, j); err != nil || !j.Running() {
			t.Fatalf("job %d: %v", i, err)
		}
		run = append(run, j)
	}
	c.Release(t0, run[1], true, 0)
	c.Release(t0, run[2], true, 0)
	c.SetEngine("a", 2, true, "", 0, 0) // slot 3 is busy, slots 1 and 2 free
	e := c.engines["a"]
	if e.Size() != 2 || len(e.Slots) != 4 || !e.Slots[3].Busy {
		t.Fatalf("after shrinking: size %d, %d slots, slot 3 busy %v", e.Size(), len(e.Slots), e.Slots[3].Busy)
	}
	// One slot in service is free (slot 1), but with slot 3 still running the engine is
	// at its new size: nothing more goes there.
	w := job("t", 0, nil, "a")
	_ = c.Submit(t0, w)
	if w.Running() {
		t.Fatalf("a job went to %s slot %d past the engine's new size", w.Engine, w.Slot)
	}
	c.Release(t0.Add(time.Second), run[3], true, 0)
	if len(e.Slots) != 2 {
		t.Fatalf("retired slots left after their job ended: %d slots", len(e.Slots))
	}
	got := c.Dispatch(t0.Add(time.Second))
	if len(got) != 1 || got[0] != w || w.Slot != 1 {
		t.Fatalf("waiting job not started on the free slot 1: %v (slot %d)", got, w.Slot)
	}
	c.Release(t0.Add(2*time.Second), w, true, 0)
	c.Release(t0.Add(2*time.Second), run[0], true, 0)
	if e.InFlight() != 0 || e.Slots[0].Busy || e.Slots[1].Busy {
		t.Fatalf("slots still busy after every job ended: %+v", e.Slots)
	}
	for range 10 { // and the engine keeps working
		j := job("t", 0, []uint64{9}, "a")
		if err := c.Submit(t0.Add(3*time.Second), j); err != nil || !j.Running() {
			t.Fatalf("submit after shrink: %v", err)
		}
		c.Release(t0.Add(3*time.Second), j, true, 0)
	}
}

// prefixWaitCore is one engine of two slots whose estimates are measured: a job holds a
// slot 200 ms, and a prompt costs 1 ms of time to first token per uncached token. Then a
// job of family x runs on slot 0 from base; slot 1 is free and holds another prompt.
func prefixWaitCore(t *testing.T, cfg Config) (c *Core, x []uint64, running *Job, base time.Time) {
	t.Helper()
	c = NewCore(cfg)
	c.AddEngine("a", 2, true, false)
	for i := range 3 {
		at := t0.Add(time.Duration(i) * time.Second)
		w := job("w", 0, []uint64{uint64(100 + i), 1, 2, 3}, "a")
		w.PromptTokens = 1000
		if err := c.Submit(at, w); err != nil || !w.Running() {
			t.Fatalf("warm-up %d: %v", i, err)
		}
		c.Release(at.Add(200*time.Millisecond), w, true, time.Second)
	}
	base = t0.Add(10 * time.Second)
	x = []uint64{7, 8, 9, 10}
	running = job("x", 0, x, "a")
	running.PromptTokens = 1000
	if err := c.Submit(base, running); err != nil || !running.Running() {
		t.Fatalf("x: %v", err)
	}
	c.Prefilled(running) // its prompt is processed: it decodes
	return c, x, running, base
}

// TestPrefixWait: a job whose prompt is cached on a busy slot that should free within
// the prefill it would save waits for that slot instead of taking the free one cold
// (cost-aware waiting), and gets it; if the slot does not free in time, the job takes
// the free slot when its bound passes (Wake); NoPrefixWait turns it off; a second job of
// the family, whose turn on the slot would come too late, takes the free slot at once.
func TestPrefixWait(t *testing.T) {
	t.Run("waits and hits", func(t *testing.T) {
		c, x, running, base := prefixWaitCore(t, Config{})
		at := base.Add(100 * time.Millisecond)
		x2 := job("x", 0, x, "a")
		x2.PromptTokens = 1000
		if err := c.Submit(at, x2); err != nil || !x2.Queued() {
			t.Fatalf("x2 should wait for x's slot (100 ms left, 256 ms of prefill saved): err %v running %v", err, x2.Running())
		}
		if got := c.Dispatch(at); len(got) != 0 {
			t.Fatalf("dispatched %v; x2 should keep waiting", got)
		}
		if want := at.Add(256 * time.Millisecond); !c.Wake().Equal(want) {
			t.Fatalf("wake %v, want %v (enqueued + the prefill saved)", c.Wake(), want)
		}
		x3 := job("x", 0, x, "a") // its turn on x's slot would come after x2's: 300 ms
		x3.PromptTokens = 1000
		_ = c.Submit(at, x3)
		if got := c.Dispatch(at); len(got) != 1 || got[0] != x3 || x3.Slot == running.Slot {
			t.Fatalf("dispatched %v; want x3 on the free slot", got)
		}
		done := base.Add(150 * time.Millisecond)
		c.Release(done, running, true, 0)
		if got := c.Dispatch(done); len(got) != 1 || got[0] != x2 || x2.Slot != running.Slot || x2.Matched != 4 {
			t.Fatalf("x2 went to slot %d with %d blocks cached, want x's slot %d with 4", x2.Slot, x2.Matched, running.Slot)
		}
		if st := c.Stats(); st.PrefixWaits != 1 {
			t.Fatalf("PrefixWaits = %d, want 1", st.PrefixWaits)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		c, x, running, base := prefixWaitCore(t, Config{})
		at := base.Add(100 * time.Millisecond)
		x2 := job("x", 0, x, "a")
		x2.PromptTokens = 1000
		_ = c.Submit(at, x2)
		c.Dispatch(at)
		wake := c.Wake()
		if want := at.Add(256 * time.Millisecond); !wake.Equal(want) {
			t.Fatalf("wake %v, want %v", wake, want)
		}
		// x should end by base+200ms: at 150 ms waiting is still worth it.
		if got := c.Dispatch(base.Add(150 * time.Millisecond)); len(got) != 0 {
			t.Fatalf("x2 stopped waiting while x's slot should free within its bound: %v", got)
		}
		// Past x's expected end nothing says it ends soon: another mean service time
		// (200 ms) would pass the bound, so x2 takes the free slot, at its bound at the
		// latest.
		if got := c.Dispatch(wake); len(got) != 1 || got[0] != x2 || x2.Slot == running.Slot {
			t.Fatalf("at its bound x2 should take the free slot: %v", got)
		}
		if x2.Dispatched.After(wake) {
			t.Fatalf("x2 started at %v, after its bound %v", x2.Dispatched, wake)
		}
		if !c.Wake().IsZero() {
			t.Fatalf("wake %v with nothing waiting", c.Wake())
		}
	})
	t.Run("slot still prefilling", func(t *testing.T) {
		c, x, running, base := prefixWaitCore(t, Config{})
		c.Release(base, running, false, 0)
		cold := job("x", 0, x, "a") // x's prompt is cached on slot 0; this one finds it
		cold.PromptTokens = 1000
		_ = c.Submit(base, cold)
		// A prompt nowhere cached but on a slot whose job still processes 1,000 tokens
		// of its own (1 s at 1 ms a token): waiting would cost more than the 256 ms saved.
		y := []uint64{20, 21, 22, 23}
		busy := job("y", 0, y, "a")
		busy.PromptTokens = 1000
		_ = c.Submit(base, busy)
		if !busy.Running() || busy.Slot == cold.Slot {
			t.Fatalf("setup: y running %v on slot %d", busy.Running(), busy.Slot)
		}
		c.Release(base.Add(10*time.Millisecond), cold, true, 0)
		y2 := job("y", 0, y, "a")
		y2.PromptTokens = 1000
		if err := c.Submit(base.Add(20*time.Millisecond), y2); err != nil || !y2.Running() {
			t.Fatalf("y2 should take the free slot at once, not wait for a slot still prefilling: %v", err)
		}
	})
	t.Run("off", func(t *testing.T) {
		c, x, running, base := prefixWaitCore(t, Config{NoPrefixWait: true})
		x2 := job("x", 0, x, "a")
		x2.PromptTokens = 1000
		if err := c.Submit(base.Add(100*time.Millisecond), x2); err != nil || !x2.Running() || x2.Slot == running.Slot {
			t.Fatalf("with NoPrefixWait x2 should run at once on the free slot: %v", err)
		}
	})
	t.Run("not worth it", func(t *testing.T) {
		c, x, running, base := prefixWaitCore(t, Config{})
		// A short prompt saves little: one block of 64 tokens, 64 ms, less than the
		// 100 ms x's slot still needs.
		x2 := job("x", 0, x[:1], "a")
		x2.PromptTokens = 70
		if err := c.Submit(base.Add(100*time.Millisecond), x2); err != nil || !x2.Running() || x2.Slot == running.Slot {
			t.Fatalf("x2 should take the free slot at once: %v", err)
		}
	})
}

// TestPrefixWaitLimits: waiting for one's own slot never costs what a free slot would not:
// a job that could start is not refused as saturated (nor is another arriving beside it),
// a batch job does not take the free slot an interactive job falls back on, the wait
// ends by half the time to the job's deadline, and a per-token cost measured on short
// prompts does not make a long prompt wait past maxHold or half its class's SLO.
func TestPrefixWaitLimits(t *testing.T) {
	t.Run("not saturated with a free slot", func(t *testing.T) {
		// Measured: 200 ms a job, 1 s to first token, 2 slots: a queued job expects
		// 100 ms + 1 s, over the 1.15 s SLO.
		c, x, _, base := prefixWaitCore(t, Config{SLO: [2]time.Duration{1150 * time.Millisecond}})
		at := base.Add(100 * time.Millisecond)
		x2 := job("x", 0, x, "a")
		x2.PromptTokens = 1000
		if err := c.Submit(at, x2); err != nil || !x2.Queued() {
			t.Fatalf("x2: err %v, queued %v; want waiting for x's slot", err, x2.Queued())
		}
		c.Dispatch(at)
		y := job("y", 0, []uint64{42, 43}, "a")
		y.PromptTokens = 200
		if err := c.Submit(at, y); err != nil {
			t.Fatalf("y refused while a slot it can take is free: %v", err)
		}
		if got := c.Dispatch(at); len(got) != 1 || got[0] != y {
			t.Fatalf("dispatched %v, want y on the free slot", got)
		}
	})
	t.Run("batch leaves the fallback slot", func(t *testing.T) {
		c, x, _, base := prefixWaitCore(t, Config{})
		at := base.Add(100 * time.Millisecond)
		x2 := job("x", models.PriorityInteractive, x, "a")
		x2.PromptTokens = 1000
		_ = c.Submit(at, x2)
		b := job("b", models.PriorityBatch, []uint64{55, 56}, "a")
		_ = c.Submit(at, b)
		if got := c.Dispatch(at); len(got) != 0 || !b.Queued() {
			t.Fatalf("dispatched %v: the batch job took the slot an interactive job falls back on", got)
		}
		if got := c.Dispatch(c.Wake()); len(got) != 1 || got[0] != x2 {
			t.Fatalf("at its bound x2 should run first: %v", got)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		c, x, _, base := prefixWaitCore(t, Config{})
		at := base.Add(100 * time.Millisecond)
		x2 := job("x", 0, x, "a")
		x2.PromptTokens = 1000
		x2.Deadline = at.Add(400 * time.Millisecond) // the saving alone would be 256 ms
		_ = c.Submit(at, x2)
		c.Dispatch(at)
		if want := at.Add(200 * time.Millisecond); !c.Wake().Equal(want) {
			t.Fatalf("wake %v, want %v (half the time to the deadline)", c.Wake().Sub(at), want.Sub(at))
		}
		if got := c.Dispatch(c.Wake()); len(got) != 1 || got[0] != x2 {
			t.Fatalf("x2 should run at half its deadline: %v", got)
		}
		// With less time to the deadline than x's slot needs, x2 does not wait at all.
		c, x, _, base = prefixWaitCore(t, Config{})
		x3 := job("x", 0, x, "a")
		x3.PromptTokens = 1000
		x3.Deadline = at.Add(120 * time.Millisecond)
		if err := c.Submit(at, x3); err != nil || !x3.Running() {
			t.Fatalf("x3 should run at once: %v", err)
		}
	})
	t.Run("capped", func(t *testing.T) {
		for _, slo := range []time.Duration{0, 3 * time.Second} {
			c := NewCore(Config{SLO: [2]time.Duration{slo}})
			c.AddEngine("a", 2, true, false)
			for i := range 3 { // 1 s to first token for 256 tokens: ~4 ms a token
				at := t0.Add(time.Duration(i) * time.Second)
				w := job("w", 0, []uint64{uint64(100 + i), 1, 2, 3}, "a")
				w.PromptTokens = 256
				_ = c.Submit(at, w)
				c.Release(at.Add(200*time.Millisecond), w, true, time.Second)
			}
			big := make([]uint64, 500) // 32,000 tokens: the estimate says ~125 s saved
			for i := range big {
				big[i] = uint64(7000 + i)
			}
			base := t0.Add(10 * time.Second)
			r := job("x", 0, big, "a")
			r.PromptTokens = 32000
			_ = c.Submit(base, r)
			c.Prefilled(r)
			at := base.Add(50 * time.Millisecond)
			x2 := job("x", 0, big, "a")
			x2.PromptTokens = 32000
			_ = c.Submit(at, x2)
			c.Dispatch(at)
			want := maxHold
			if slo > 0 {
				want = min(want, slo/2)
			}
			if got := c.Wake().Sub(at); !x2.Queued() || got != want {
				t.Fatalf("SLO %v: queued %v, waits %v; want %v", slo, x2.Queued(), got, want)
			}
		}
	})
}
