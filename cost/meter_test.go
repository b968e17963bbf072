package cost

import (
	"math"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time        { return c.t }
func (c *clock) add(d time.Duration)   { c.t = c.t.Add(d) }
func near(a, b float64) bool           { return math.Abs(a-b) < 1e-9 }
func (s Split) String() (p, c float64) { return s.Prompt, s.Completion }

func TestMeterSharesCost(t *testing.T) {
	c := &clock{t: time.Unix(0, 0)}
	m := NewMeter(3600, c.now) // $1 a second
	c.add(2 * time.Second)     // idle 2
	a := m.Start()
	c.add(1 * time.Second) // a alone: 1
	a.FirstToken()
	b := m.Start()
	c.add(2 * time.Second) // a and b: 1 each
	b.FirstToken()
	c.add(2 * time.Second) // 1 each
	ca := a.Finish()
	c.add(1 * time.Second) // b alone: 1
	cb := b.Finish()
	c.add(3 * time.Second) // idle 3
	if !near(ca.Prompt, 1) || !near(ca.Completion, 2) {
		t.Fatalf("a = %+v, want prompt 1 completion 2", ca)
	}
	if !near(cb.Prompt, 1) || !near(cb.Completion, 2) {
		t.Fatalf("b = %+v, want prompt 1 completion 2", cb)
	}
	idle, busy := m.Totals()
	if !near(idle, 5) || !near(busy, 6) || !near(busy, ca.Total()+cb.Total()) {
		t.Fatalf("idle %v busy %v", idle, busy)
	}
	if again := a.Finish(); again != ca {
		t.Fatalf("End not idempotent")
	}
}

func TestMeterNoTokenIsPrompt(t *testing.T) {
	c := &clock{t: time.Unix(0, 0)}
	m := NewMeter(7200, c.now)
	j := m.Start()
	c.add(time.Second)
	if s := j.Finish(); !near(s.Prompt, 2) || s.Completion != 0 {
		t.Fatalf("split = %+v", s)
	}
}

func TestPrices(t *testing.T) {
	tab := DefaultGPUHourly()
	for name, want := range map[string]float64{
		"NVIDIA H100 80GB HBM3": 2.69, "NVIDIA H100 PCIe": 2.39, "NVIDIA A10G": 1.01, "NVIDIA A10": 0.60,
		"NVIDIA L40S": 0.86, "NVIDIA L4": 0.43, "NVIDIA H200": 3.59,
	} {
		if got, ok := GPUHourly(tab, name); !ok || got != want {
			t.Errorf("GPUHourly(%q) = %v %v, want %v", name, got, ok, want)
		}
	}
	if _, ok := GPUHourly(tab, "Tesla K80"); ok {
		t.Errorf("K80 matched")
	}
	if got := DefaultCloudPrices()["gpt-4o"].Of(1_000_000, 500_000); !near(got, 7.5) {
		t.Errorf("gpt-4o price = %v", got)
	}
}
