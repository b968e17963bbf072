package scheduler

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkSubmit measures Submit and Release of a job that runs at once, after `warm`
// prompt families went through the engines, each new op bringing one more family (or
// reusing one of 64 when warm is 0): the frequency table must not slow Submit down as the
// families pile up.
func BenchmarkSubmit(b *testing.B) {
	for _, warm := range []int{0, 4000, 8000, 50000} {
		b.Run(fmt.Sprintf("families=%d", warm), func(b *testing.B) {
			c := NewCore(Config{MaxQueue: 1 << 20})
			for i := range 4 {
				c.AddEngine(fmt.Sprintf("e%d", i), 8, true, false)
			}
			cs := cands("e0", "e1", "e2", "e3")
			now := t0
			blocks := make([][]uint64, 64)
			for i := range blocks {
				blocks[i] = []uint64{uint64(i) << 20, uint64(i)<<20 | 1}
			}
			j := &Job{Model: "m", Tenant: "t", Candidates: cs, Cost: 1}
			for f := range warm {
				j.Blocks = []uint64{uint64(f+64) << 20}
				_ = c.Submit(now, j)
				c.Release(now, j, true, 0)
				now = now.Add(time.Millisecond)
			}
			fresh := make([][]uint64, b.N)
			for i := range fresh {
				if warm == 0 {
					fresh[i] = blocks[i%len(blocks)]
				} else {
					fresh[i] = []uint64{uint64(warm+64+i) << 20}
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				j.Blocks = fresh[i]
				if err := c.Submit(now, j); err != nil || !j.Running() {
					b.Fatal(err)
				}
				c.Release(now, j, true, 0)
				now = now.Add(time.Millisecond)
			}
		})
	}
}

// BenchmarkDispatchPrefixWait measures one Dispatch in a large fleet with cost-aware
// waiting on and off: 64 engines x 8 slots, all busy but one slot on each of 8 engines;
// 256 waiting jobs of 32 tenants, each with its prompt cached on a busy slot (with
// waiting on, every one of them waits for its own), then 8 cached nowhere that take the
// free slots. Each op rebuilds the state (not timed).
func BenchmarkDispatchPrefixWait(b *testing.B) {
	fam := func(f int) []uint64 {
		bl := make([]uint64, 16)
		for i := range bl {
			bl[i] = uint64(f<<20 | i)
		}
		return bl
	}
	for _, off := range []bool{false, true} {
		b.Run(fmt.Sprintf("no_prefix_wait=%v", off), func(b *testing.B) {
			var ids []string
			for e := range 64 {
				ids = append(ids, fmt.Sprintf("e%02d", e))
			}
			all := cands(ids...)
			setup := func() (*Core, time.Time) {
				c := NewCore(Config{MaxQueue: 1 << 20, NoPrefixWait: off})
				for e, id := range ids {
					c.AddEngine(id, 8, true, false)
					for i := range 3 {
						w := job("w", 0, []uint64{uint64(1e6 + e*10 + i), 1, 2, 3}, id)
						w.PromptTokens = 1000
						_ = c.Submit(t0, w)
						c.Release(t0.Add(200*time.Millisecond), w, true, time.Second)
					}
				}
				now := t0.Add(20 * time.Second)
				n := 0
				for e, id := range ids {
					for s := range 8 {
						if e < 8 && s == 7 {
							continue
						}
						j := job(fmt.Sprint("f", n), 0, fam(n), id)
						j.PromptTokens = 1024
						_ = c.Submit(now, j)
						n++
					}
				}
				for i := range 256 + 8 {
					f := i
					if i >= 256 {
						f = 9000 + i
					}
					j := job(fmt.Sprint("t", i%32), 0, fam(f), ids...)
					j.Candidates, j.PromptTokens, j.state, j.Enqueued = all, 1024, jobQueued, now
					c.queues[0].push(j, 0)
				}
				return c, now
			}
			for b.Loop() {
				b.StopTimer()
				c, now := setup()
				b.StartTimer()
				if got := c.Dispatch(now); len(got) != 8 {
					b.Fatalf("started %d, want 8", len(got))
				}
			}
		})
	}
}
