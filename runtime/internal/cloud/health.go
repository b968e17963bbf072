package cloud

import (
	"sync/atomic"
	"time"

	"github.com/sluice-llm/sluice/models"
)

// Health is the capacity of a cloud backend. A provider is not probed (a probe costs a
// request against its rate limit and says little about the next one): it is healthy
// with its configured concurrency as slots, unless a circuit breaker has opened its
// circuit through SetCircuit.
type Health struct {
	slots   int
	circuit atomic.Pointer[circuit]
}

type circuit struct {
	reason string
	since  time.Time
}

// NewHealth returns the health of a backend allowed slots requests at once.
func NewHealth(slots int) *Health { return &Health{slots: slots} }

// Capacity is the backend's snapshot for the scheduler.
func (h *Health) Capacity() models.Capacity {
	c := models.Capacity{Slots: h.slots, Healthy: true}
	if o := h.circuit.Load(); o != nil {
		c.Healthy, c.Reason, c.UpdatedAt = false, o.reason, o.since
	}
	return c
}

// SetCircuit opens (open true, with a reason shown on status pages) or closes the
// backend's circuit. It is the hook for the circuit breaker, which lives with the
// routing stage: the backend itself never opens its circuit.
func (h *Health) SetCircuit(open bool, reason string) {
	if !open {
		h.circuit.Store(nil)
		return
	}
	if reason == "" {
		reason = "circuit open"
	}
	h.circuit.Store(&circuit{reason: reason, since: time.Now()})
}

// CircuitOpen reports whether the circuit is open.
func (h *Health) CircuitOpen() bool { return h.circuit.Load() != nil }

// Overlay returns c marked unhealthy while the circuit is open (for backends that keep
// their own capacity, such as a probed OpenAI-compatible engine).
func (h *Health) Overlay(c models.Capacity) models.Capacity {
	if o := h.circuit.Load(); o != nil {
		c.Healthy, c.Reason, c.UpdatedAt = false, o.reason, o.since
	}
	return c
}
