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
