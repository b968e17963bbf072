package scheduler

import (
	"fmt"
	"testing"
	"time"
)

func tenantsKnown(c *Core) int { return len(c.queues[0].tenants) + len(c.queues[1].tenants) }

// TestTenantsForgotten: 10,000 one-off tenants (the OpenAI user field becomes the tenant
// when auth is off) pass through a queue that never empties: the queue remembers a
// bounded number of them, and none once it empties.
func TestTenantsForgotten(t *testing.T) {
	c := NewCore(Config{MaxQueue: 100})
	c.AddEngine("a", 1, true, false)
	now := t0
	run := job("first", 0, nil, "a")
	_ = c.Submit(now, run)
	most := 0
	for i := range 10000 {
		j := job(fmt.Sprintf("user-%d", i), 0, nil, "a")
		if err := c.Submit(now, j); err != nil || !j.Queued() {
			t.Fatalf("job %d: %v (queued %v)", i, err, j.Queued())
		}
		now = now.Add(time.Millisecond)
		c.Release(now, run, true, 0)
		got := c.Dispatch(now)
		if len(got) != 1 {
			t.Fatalf("round %d: dispatched %d", i, len(got))
		}
		run = got[0]
		most = max(most, tenantsKnown(c))
	}
	if most > maxIdleTenants+2 {
		t.Fatalf("remembered up to %d tenants while the queue was busy, want at most %d", most, maxIdleTenants+2)
	}
	c.Release(now, run, true, 0)
	if n := tenantsKnown(c); n != 0 || c.QueueLen(0) != 0 {
		t.Fatalf("%d tenants remembered after the queue emptied", n)
	}
}

// TestForgottenTenantGainsNothing: a tenant that keeps one job waiting at a time, against
// one with a backlog, gets half the slot, also when the queue forgets tenants that still
// owe as soon as their last job leaves (a forgotten tenant starts from the floor, never
// from V): forgetting must not hand it the whole slot.
func TestForgottenTenantGainsNothing(t *testing.T) {
	for _, keep := range []int{maxIdleTenants, 0} {
		c := NewCore(Config{MaxQueue: 1000})
		c.AddEngine("a", 1, true, false)
		c.queues[0].maxIdle = keep
		now := t0
		run := job("y", 0, nil, "a")
		_ = c.Submit(now, run)
		for range 100 {
			_ = c.Submit(now, job("y", 0, nil, "a"))
		}
		x := job("x", 0, nil, "a")
		_ = c.Submit(now, x)
		const rounds = 60
		gotX := 0
		for range rounds {
			now = now.Add(time.Second)
			c.Release(now, run, true, 0)
			got := c.Dispatch(now)
			if len(got) != 1 {
				t.Fatalf("dispatched %d", len(got))
			}
			run = got[0]
			if run.Tenant == "x" {
				gotX++
				x = job("x", 0, nil, "a") // the next one, at once
				_ = c.Submit(now, x)
			}
		}
		if gotX > rounds/2+1 || gotX < rounds/2-1 {
			t.Fatalf("idle tenants kept %d: x ran %d of %d times, want about half", keep, gotX, rounds)
		}
	}
}

// TestFrequencyBounded: 40,000 prompt families pass through an engine within a minute
// (faster than counts fade): the frequency table stays within its fixed size and still
// counts the one family that keeps coming back.
func TestFrequencyBounded(t *testing.T) {
	c := NewCore(Config{})
	c.AddEngine("a", 4, true, false)
	now := t0
	hot := []uint64{42}
	for i := range 40000 {
		b := []uint64{uint64(i+1000) << 8}
		if i%10 == 0 {
			b = hot
		}
		j := job("t", 0, b, "a")
		if err := c.Submit(now, j); err != nil {
			t.Fatal(err)
		}
		c.Release(now, j, true, 0)
		now = now.Add(500 * time.Microsecond)
	}
	e := c.engines["a"]
	n := 0
	for s := range e.freq.sets {
		for w := range e.freq.sets[s] {
			if e.freq.sets[s][w].count > 0 {
				n++
			}
		}
	}
	if n > freqSets*freqWays {
		t.Fatalf("%d families counted", n)
	}
	// 4,000 touches over 20 s, halving every 30 s: 200/s * 30 s / ln 2 = 8,650 at steady
	// state, times 1 - 2^(-20/30) = 0.37 this early: about 3,200.
	if f := e.freq.at(42, now); f < 2800 || f > 3600 {
		t.Fatalf("hot family counted %.0f, want about 3,200", f)
	}
	if f := e.freq.at(uint64(39999+1000)<<8, now); f < 0.9 || f > 1 {
		t.Fatalf("the last one-off family counted %v, want about 1", f)
	}
}
