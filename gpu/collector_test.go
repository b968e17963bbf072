//go:build cgo

package gpu

import (
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const a10gMetrics = `
# HELP sluice_gpu_ecc_errors_total ECC memory errors since the driver loaded (volatile counters).
# TYPE sluice_gpu_ecc_errors_total counter
sluice_gpu_ecc_errors_total{gpu="0",type="corrected",uuid="GPU-a10g-0"} 3
sluice_gpu_ecc_errors_total{gpu="0",type="uncorrected",uuid="GPU-a10g-0"} 0
# HELP sluice_gpu_info GPU identity; always 1.
# TYPE sluice_gpu_info gauge
sluice_gpu_info{gpu="0",name="NVIDIA A10G",uuid="GPU-a10g-0"} 1
# HELP sluice_gpu_memory_clock_hz Current GPU memory clock in hertz.
# TYPE sluice_gpu_memory_clock_hz gauge
sluice_gpu_memory_clock_hz{gpu="0",uuid="GPU-a10g-0"} 6.251e+09
# HELP sluice_gpu_memory_free_bytes Free GPU framebuffer memory in bytes.
# TYPE sluice_gpu_memory_free_bytes gauge
sluice_gpu_memory_free_bytes{gpu="0",uuid="GPU-a10g-0"} 2.3622320128e+10
# HELP sluice_gpu_memory_total_bytes Total GPU framebuffer memory in bytes.
# TYPE sluice_gpu_memory_total_bytes gauge
sluice_gpu_memory_total_bytes{gpu="0",uuid="GPU-a10g-0"} 2.5769803776e+10
# HELP sluice_gpu_memory_used_bytes Used GPU framebuffer memory in bytes.
# TYPE sluice_gpu_memory_used_bytes gauge
sluice_gpu_memory_used_bytes{gpu="0",uuid="GPU-a10g-0"} 2.147483648e+09
# HELP sluice_gpu_memory_utilization_ratio Fraction of the last sample period in which GPU memory was read or written (0..1).
# TYPE sluice_gpu_memory_utilization_ratio gauge
sluice_gpu_memory_utilization_ratio{gpu="0",uuid="GPU-a10g-0"} 0.4
# HELP sluice_gpu_power_limit_watts Enforced GPU power limit in watts.
# TYPE sluice_gpu_power_limit_watts gauge
sluice_gpu_power_limit_watts{gpu="0",uuid="GPU-a10g-0"} 300
# HELP sluice_gpu_power_watts GPU power draw in watts.
# TYPE sluice_gpu_power_watts gauge
sluice_gpu_power_watts{gpu="0",uuid="GPU-a10g-0"} 212.5
# HELP sluice_gpu_sm_clock_hz Current GPU SM clock in hertz.
# TYPE sluice_gpu_sm_clock_hz gauge
sluice_gpu_sm_clock_hz{gpu="0",uuid="GPU-a10g-0"} 1.71e+09
# HELP sluice_gpu_temperature_celsius GPU core temperature in degrees Celsius.
# TYPE sluice_gpu_temperature_celsius gauge
sluice_gpu_temperature_celsius{gpu="0",uuid="GPU-a10g-0"} 61
# HELP sluice_gpu_utilization_ratio Fraction of the last sample period in which a kernel ran on the GPU (0..1).
# TYPE sluice_gpu_utilization_ratio gauge
sluice_gpu_utilization_ratio{gpu="0",uuid="GPU-a10g-0"} 0.87
# HELP sluice_gpus Number of GPUs in the latest inventory snapshot.
# TYPE sluice_gpus gauge
sluice_gpus 1
`

func TestCollectorA10G(t *testing.T) {
	box, _ := a10gBox(t)
	m := NewMonitor(NewNVMLSource(box), MonitorOptions{})
	c := NewCollector(m)

	// Before the first refresh: no GPUs, no per-GPU series.
	if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP sluice_gpus Number of GPUs in the latest inventory snapshot.
# TYPE sluice_gpus gauge
sluice_gpus 0
`)); err != nil {
		t.Errorf("before refresh: %v", err)
	}

	m.Refresh(t.Context())
	if err := testutil.CollectAndCompare(c, strings.NewReader(a10gMetrics)); err != nil {
		t.Error(err)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestCollectorPowerNotSupported(t *testing.T) {
	box, dev := a10gBox(t)
	dev.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	m := NewMonitor(NewNVMLSource(box), MonitorOptions{})
	m.Refresh(t.Context())
	c := NewCollector(m)
	tests := []struct {
		metric string
		want   int
	}{
		{"sluice_gpu_power_watts", 0}, // left out, not exported as 0 W
		{"sluice_gpu_power_limit_watts", 1},
		{"sluice_gpu_memory_used_bytes", 1},
		{"sluice_gpu_ecc_errors_total", 2},
	}
	for _, tt := range tests {
		if got := testutil.CollectAndCount(c, tt.metric); got != tt.want {
			t.Errorf("%s: %d series, want %d", tt.metric, got, tt.want)
		}
	}
}

func TestCollectorDGXH100(t *testing.T) {
	m := NewMonitor(NewNVMLSource(h100Box(t)), MonitorOptions{})
	m.Refresh(t.Context())
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(NewCollector(m)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		metric string
		want   int
	}{
		{"sluice_gpus", 1},
		{"sluice_gpu_info", 8},
		{"sluice_gpu_memory_total_bytes", 8},
		{"sluice_gpu_utilization_ratio", 8},
		{"sluice_gpu_ecc_errors_total", 16},
	}
	for _, tt := range tests {
		got, err := testutil.GatherAndCount(reg, tt.metric)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("%s: %d series, want %d", tt.metric, got, tt.want)
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP sluice_gpus Number of GPUs in the latest inventory snapshot.
# TYPE sluice_gpus gauge
sluice_gpus 8
`), "sluice_gpus"); err != nil {
		t.Error(err)
	}
	// The mock box's GPU i draws 100 + 50×i W.
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP sluice_gpu_power_watts GPU power draw in watts.
# TYPE sluice_gpu_power_watts gauge
sluice_gpu_power_watts{gpu="0",uuid="GPU-h100-0"} 100
sluice_gpu_power_watts{gpu="1",uuid="GPU-h100-1"} 150
sluice_gpu_power_watts{gpu="2",uuid="GPU-h100-2"} 200
sluice_gpu_power_watts{gpu="3",uuid="GPU-h100-3"} 250
sluice_gpu_power_watts{gpu="4",uuid="GPU-h100-4"} 300
sluice_gpu_power_watts{gpu="5",uuid="GPU-h100-5"} 350
sluice_gpu_power_watts{gpu="6",uuid="GPU-h100-6"} 400
sluice_gpu_power_watts{gpu="7",uuid="GPU-h100-7"} 450
`), "sluice_gpu_power_watts"); err != nil {
		t.Error(err)
	}
}

func TestCollectorWithoutNVML(t *testing.T) {
	lib := &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}
	m := NewMonitor(NewNVMLSource(lib), MonitorOptions{})
	m.Refresh(t.Context())
	if n := testutil.CollectAndCount(NewCollector(m)); n != 1 {
		t.Errorf("%d series without NVML, want only sluice_gpus", n)
	}
}
