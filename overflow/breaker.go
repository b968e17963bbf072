package overflow

import (
	"sync"
	"time"
)

// Breaker states, as exported by sluice_overflow_breaker_state.
const (
	stateClosed   = 0
	stateOpen     = 1
	stateHalfOpen = 2
)

// breaker is a consecutive-failure circuit breaker: after failures failures in a row
// it opens (no requests) for cooldown, then lets one probe through (half-open): its
// success closes the circuit, its failure opens it again.
type breaker struct {
	failures int
	cooldown time.Duration

	mu       sync.Mutex
	state    int
	fails    int
	openedAt time.Time
	probing  bool
}

// allow reports whether a request may go through now.
func (b *breaker) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case stateClosed:
		return true
	case stateOpen:
		if now.Sub(b.openedAt) < b.cooldown {
			return false
		}
		b.state, b.probing = stateHalfOpen, true
		return true
	default:
		if b.probing {
			return false
		}
		b.probing = true
		return true
	}
}

// retryIn is how long until an open circuit lets a probe through.
func (b *breaker) retryIn(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != stateOpen {
		return 0
	}
	return max(b.cooldown-now.Sub(b.openedAt), 0)
}

func (b *breaker) success() {
	b.mu.Lock()
	b.state, b.fails, b.probing = stateClosed, 0, false
	b.mu.Unlock()
}

func (b *breaker) failure(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fails++
	if b.state == stateHalfOpen || b.fails >= b.failures {
		b.state, b.openedAt, b.probing = stateOpen, now, false
	}
}

// release ends a probe that neither succeeded nor failed (a request that was not the
// provider's fault, e.g. invalid or cancelled), so that another may probe.
func (b *breaker) release() {
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

func (b *breaker) current() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}
