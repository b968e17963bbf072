package gpu

import (
	"context"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often a Monitor refreshes when MonitorOptions
// leaves Interval zero.
const DefaultInterval = 5 * time.Second

// notReadYet is the Err of the snapshot a Monitor holds before its first
// read.
const notReadYet = "gpu: not read yet"

// MonitorOptions configure a Monitor. The zero value refreshes every
// DefaultInterval on the wall clock.
type MonitorOptions struct {
	// Interval between refreshes; 0 means DefaultInterval.
	Interval time.Duration
	// Now stamps Snapshot.Taken; nil means time.Now.
	Now func() time.Time
	// Ticks, when set, drives the refreshes instead of a ticker of
	// Interval: Run refreshes once per value received. Tests use it.
	Ticks <-chan time.Time
}

// Monitor keeps the latest Snapshot of a Source. Run refreshes it on an
// interval; Snapshot returns it without blocking. A Monitor is safe for
// concurrent use.
type Monitor struct {
	src      Source
	interval time.Duration
	now      func() time.Time
	ticks    <-chan time.Time

	snap atomic.Pointer[Snapshot]
}

// NewMonitor returns a Monitor over src. Until the first refresh its
// Snapshot has no devices and Err "gpu: not read yet". The Monitor does not
// own src: the caller closes it after Run returns.
func NewMonitor(src Source, opts MonitorOptions) *Monitor {
	m := &Monitor{src: src, interval: opts.Interval, now: opts.Now, ticks: opts.Ticks}
	if m.interval <= 0 {
		m.interval = DefaultInterval
	}
	if m.now == nil {
		m.now = time.Now
	}
	m.snap.Store(&Snapshot{Err: notReadYet})
	return m
}

// Snapshot returns the latest snapshot. It must not be modified.
func (m *Monitor) Snapshot() Snapshot { return *m.snap.Load() }

// Refresh reads the source once, publishes the result and returns it. A
// failed read publishes a snapshot with no devices and the reason in Err.
// When ctx ends during the read nothing is published and the previous
// snapshot is returned.
func (m *Monitor) Refresh(ctx context.Context) Snapshot {
	devs, err := m.src.Read(ctx)
	if ctx.Err() != nil {
		return m.Snapshot()
	}
	s := &Snapshot{Devices: devs, Taken: m.now()}
	if err != nil {
		s.Devices, s.Err = nil, err.Error()
	}
	m.snap.Store(s)
	return *s
}

// Run refreshes at once and then on every tick until ctx is done (or the
// injected Ticks channel is closed), and then returns nil. Read failures never stop it: they land in Snapshot().Err.
func (m *Monitor) Run(ctx context.Context) error {
	ticks := m.ticks
	if ticks == nil {
		t := time.NewTicker(m.interval)
		defer t.Stop()
		ticks = t.C
	}
	m.Refresh(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-ticks:
			if !ok {
				return nil
			}
			m.Refresh(ctx)
		}
	}
}
