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
