package gpu

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeSource is a Source whose readings the test sets.
type fakeSource struct {
	mu     sync.Mutex
	devs   []Device
	err    error
	reads  int
	before func(ctx context.Context) // runs inside Read
}

func (f *fakeSource) set(devs []Device, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devs, f.err = devs, err
}

func (f *fakeSource) Read(ctx context.Context) ([]Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.before != nil {
		f.before(ctx)
	}
	return f.devs, f.err
}

func (f *fakeSource) Close() error { return nil }

func (f *fakeSource) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

func TestMonitorRefresh(t *testing.T) {
	gpu0 := Device{Index: 0, UUID: "GPU-0", Name: "NVIDIA A10G", MemoryTotal: 24 << 30}
	taken := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		devs []Device
		err  error
		want Snapshot
	}{
		{"one GPU", []Device{gpu0}, nil, Snapshot{Devices: []Device{gpu0}, Taken: taken}},
		{"no GPUs", nil, nil, Snapshot{Taken: taken}},
		{
			"unavailable", nil, fmt.Errorf("%w: nvml: library not found", ErrUnavailable),
			Snapshot{Taken: taken, Err: "gpu: unavailable: nvml: library not found"},
		},
		{
			"partial read dropped", []Device{gpu0}, errors.New("gpu: nvml: device count: unknown error"),
			Snapshot{Taken: taken, Err: "gpu: nvml: device count: unknown error"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &fakeSource{devs: tt.devs, err: tt.err}
			m := NewMonitor(src, MonitorOptions{Now: func() time.Time { return taken }})
			got := m.Refresh(t.Context())
			if !snapshotsEqual(got, tt.want) || !snapshotsEqual(m.Snapshot(), tt.want) {
				t.Errorf("Refresh = %+v, Snapshot = %+v; want %+v", got, m.Snapshot(), tt.want)
			}
		})
	}
}

func snapshotsEqual(a, b Snapshot) bool { return reflect.DeepEqual(a, b) }

func TestMonitorRefreshCancelledKeepsSnapshot(t *testing.T) {
	src := &fakeSource{devs: []Device{{Index: 0, UUID: "GPU-0"}}}
	m := NewMonitor(src, MonitorOptions{})
	first := m.Refresh(t.Context())

	ctx, cancel := context.WithCancel(t.Context())
	src.before = func(context.Context) { cancel() } // sluice shuts down mid-read
	src.err = context.Canceled
	got := m.Refresh(ctx)
	if !snapshotsEqual(got, first) || !snapshotsEqual(m.Snapshot(), first) {
		t.Errorf("cancelled refresh replaced the snapshot: %+v", m.Snapshot())
	}
}

func TestMonitorRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{}
		ticks := make(chan time.Time)
		m := NewMonitor(src, MonitorOptions{Ticks: ticks})
		done := make(chan error, 1)
		go func() { done <- m.Run(t.Context()) }()

		for i := range 3 {
			synctest.Wait()
			if n := src.readCount(); n != i+1 {
				t.Fatalf("after %d ticks: %d reads, want %d", i, n, i+1)
			}
			if n := len(m.Snapshot().Devices); n != i {
				t.Fatalf("after %d ticks: %d devices, want %d", i, n, i)
			}
			src.set(append(m.Snapshot().Devices, Device{Index: i}), nil)
			ticks <- time.Time{}
		}
		close(ticks)
		if err := <-done; err != nil {
			t.Errorf("Run = %v after Ticks closed, want nil", err)
		}
	})
}

func TestMonitorRunInterval(t *testing.T) {
	// The default ticker path, on synctest's fake clock: a bubble's clock
	// jumps whenever every goroutine in it is blocked.
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{}
		m := NewMonitor(src, MonitorOptions{Interval: time.Minute})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		start := time.Now()
		timer := time.NewTimer(5*time.Minute + time.Second)
		<-timer.C
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
		if n := src.readCount(); n != 6 { // at once, then every minute for five minutes
			t.Errorf("%d reads in %v, want 6", n, time.Since(start))
		}
		if got := m.Snapshot().Taken; !got.Equal(start.Add(5 * time.Minute)) {
			t.Errorf("last snapshot taken at %v, want %v", got, start.Add(5*time.Minute))
		}
	})
}
