package overflow

import "sync/atomic"

// budget caps retries at a share of requests (a token bucket in thousandths: each
// request adds ratio, each retry takes one, the bucket holds at most reserve), so that
// failing targets do not multiply the load on the rest.
type budget struct {
	milli   atomic.Int64
	add     int64
	reserve int64
}

func newBudget(ratio float64, reserve int) *budget {
	b := &budget{add: int64(ratio * 1000), reserve: int64(max(reserve, 1)) * 1000}
	b.milli.Store(b.reserve)
	return b
}

func (b *budget) deposit() {
	for {
		v := b.milli.Load()
		n := min(v+b.add, b.reserve)
		if n == v || b.milli.CompareAndSwap(v, n) {
			return
		}
	}
}

func (b *budget) take() bool {
	for {
		v := b.milli.Load()
		if v < 1000 {
			return false
		}
		if b.milli.CompareAndSwap(v, v-1000) {
			return true
		}
	}
}
