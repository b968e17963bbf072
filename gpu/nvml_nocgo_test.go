//go:build !cgo

package gpu

import (
	"errors"
	"testing"
)

func TestNewSourceWithoutCgo(t *testing.T) {
	src := NewSource()
	devs, err := src.Read(t.Context())
	if devs != nil || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Read = %v, %v; want no devices and ErrUnavailable", devs, err)
	}
	m := NewMonitor(src, MonitorOptions{})
	if s := m.Refresh(t.Context()); len(s.Devices) != 0 || s.Err != "gpu: unavailable: nvml: built without cgo (CGO_ENABLED=0)" {
		t.Errorf("snapshot = %+v", s)
	}
	if err := src.Close(); err != nil {
		t.Error(err)
	}
}
