//go:build cgo

package gpu

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

var realNVML = flag.Bool("nvml", false, "require a real NVML library with at least one GPU (run on a GPU box)")

// telemetry is what the mock GPUs report. go-nvml's server mocks only wire
// identity, memory and MIG calls; every other Device method is a nil func
// that panics when called, so tests wire the telemetry themselves.
type telemetry struct {
	used          uint64 // bytes; free is total-used
	util, memUtil uint32
	powerMW       uint32
	limitMW       uint32
	tempC         uint32
	smMHz, memMHz uint32
	eccCorrected  uint64
	eccUncorrect  uint64
}

func wire(d *server.Device, uuid string, t telemetry) {
	d.UUID = uuid // the mocks draw a random UUID; tests want stable ones
	d.MemoryInfo = nvml.Memory{Total: d.MemoryInfo.Total, Used: t.used, Free: d.MemoryInfo.Total - t.used}
	d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		return nvml.Utilization{Gpu: t.util, Memory: t.memUtil}, nvml.SUCCESS
	}
	d.GetPowerUsageFunc = func() (uint32, nvml.Return) { return t.powerMW, nvml.SUCCESS }
	d.GetEnforcedPowerLimitFunc = func() (uint32, nvml.Return) { return t.limitMW, nvml.SUCCESS }
	d.GetTemperatureFunc = func(s nvml.TemperatureSensors) (uint32, nvml.Return) {
		if s != nvml.TEMPERATURE_GPU {
			return 0, nvml.ERROR_INVALID_ARGUMENT
		}
		return t.tempC, nvml.SUCCESS
	}
	d.GetClockInfoFunc = func(c nvml.ClockType) (uint32, nvml.Return) {
		switch c {
		case nvml.CLOCK_SM:
			return t.smMHz, nvml.SUCCESS
		case nvml.CLOCK_MEM:
			return t.memMHz, nvml.SUCCESS
		}
		return 0, nvml.ERROR_INVALID_ARGUMENT
	}
	d.GetTotalEccErrorsFunc = func(e nvml.MemoryErrorType, c nvml.EccCounterType) (uint64, nvml.Return) {
		if c != nvml.VOLATILE_ECC {
			return 0, nvml.ERROR_INVALID_ARGUMENT
		}
		if e == nvml.MEMORY_ERROR_TYPE_CORRECTED {
			return t.eccCorrected, nvml.SUCCESS
		}
		return t.eccUncorrect, nvml.SUCCESS
	}
}

// h100Box is go-nvml's DGX H100 mock (8 × "NVIDIA H100 80GB HBM3") with
// telemetry: GPU i has i GiB in use, i×10 % utilization.
func h100Box(t *testing.T) *server.Server {
	t.Helper()
	s := dgxh100.New()
	for i, d := range s.Devices {
		wire(d.(*server.Device), fmt.Sprintf("GPU-h100-%d", i), telemetry{
			used: uint64(i) << 30, util: uint32(i * 10), memUtil: uint32(i * 5),
			powerMW: 100_000 + uint32(i)*50_000, limitMW: 700_000, tempC: 30 + uint32(i),
			smMHz: 1980, memMHz: 2619,
		})
	}
	return s
}

// a10g is an AWS g5 GPU as the mock framework would describe it.
var a10gConfig = gpus.Config{
	Name:         "NVIDIA A10G",
	Architecture: nvml.DEVICE_ARCH_AMPERE,
	Brand:        nvml.BRAND_NVIDIA,
	MemoryMB:     24576,
	CudaMajor:    8,
	CudaMinor:    6,
	PciDeviceId:  0x223710DE,
}

// a10gBox is one A10G with 2 GiB in use, 300 W limit, ECC on.
func a10gBox(t *testing.T) (*server.Server, *server.Device) {
	t.Helper()
	s, err := server.New(
		server.WithGPUs(a10gConfig),
		server.WithDriverVersion("550.54.15"),
		server.WithNVMLVersion("12.550.54.15"),
		server.WithCUDADriverVersion(12040),
	)
	if err != nil {
		t.Fatal(err)
	}
	d := s.Devices[0].(*server.Device)
	wire(d, "GPU-a10g-0", telemetry{
		used: 2 << 30, util: 87, memUtil: 40, powerMW: 212_500, limitMW: 300_000, tempC: 61,
		smMHz: 1710, memMHz: 6251, eccCorrected: 3, eccUncorrect: 0,
	})
	return s, d
}

func TestNVMLSourceDGXH100(t *testing.T) {
	src := NewNVMLSource(h100Box(t))
	t.Cleanup(func() { src.Close() })
	devs, err := src.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 8 {
		t.Fatalf("got %d devices, want 8", len(devs))
	}
	for i, d := range devs {
		want := Device{
			Index: i, UUID: fmt.Sprintf("GPU-h100-%d", i), Name: "NVIDIA H100 80GB HBM3",
			MemoryTotal: 80 << 30, MemoryUsed: uint64(i) << 30, MemoryFree: uint64(80-i) << 30,
			UtilizationGPU: uint32(i * 10), UtilizationMemory: uint32(i * 5),
			PowerDrawW: 100 + float64(i)*50, PowerLimitW: 700, TemperatureC: 30 + uint32(i),
			SMClockMHz: 1980, MemClockMHz: 2619,
		}
		if !equalDevice(d, want) {
			t.Errorf("device %d:\n got %+v\nwant %+v", i, d, want)
		}
	}
}

func equalDevice(a, b Device) bool {
	return reflect.DeepEqual(a, b)
}

func TestNVMLSourceFieldErrors(t *testing.T) {
	notSupported := func() (uint32, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	tests := []struct {
		name        string
		break_      func(d *server.Device)
		wantMissing Field
		wantErrs    []string
		noName      bool
	}{
		{
			name:   "all fields",
			break_: func(*server.Device) {},
		},
		{
			name:        "power draw not supported",
			break_:      func(d *server.Device) { d.GetPowerUsageFunc = notSupported },
			wantMissing: FieldPowerDraw,
		},
		{
			name: "ecc not supported",
			break_: func(d *server.Device) {
				d.GetTotalEccErrorsFunc = func(nvml.MemoryErrorType, nvml.EccCounterType) (uint64, nvml.Return) {
					return 0, nvml.ERROR_NOT_SUPPORTED
				}
			},
			wantMissing: FieldECC,
		},
		{
			name: "temperature lost, utilization no permission",
			break_: func(d *server.Device) {
				d.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 0, nvml.ERROR_GPU_IS_LOST }
				d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
					return nvml.Utilization{}, nvml.ERROR_NO_PERMISSION
				}
			},
			wantMissing: FieldTemperature | FieldUtilization,
			wantErrs:    []string{"utilization: no permission", "temperature: gpu is lost"},
		},
		{
			name: "memory and name unreadable",
			break_: func(d *server.Device) {
				d.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) { return nvml.Memory{}, nvml.ERROR_UNKNOWN }
				d.GetNameFunc = func() (string, nvml.Return) { return "", nvml.ERROR_TIMEOUT }
			},
			wantMissing: FieldMemory,
			wantErrs:    []string{"name: timeout", "memory: unknown error"},
			noName:      true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			box, dev := a10gBox(t)
			tt.break_(dev)
			devs, err := NewNVMLSource(box).Read(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(devs) != 1 {
				t.Fatalf("got %d devices, want 1", len(devs))
			}
			want := Device{
				Index: 0, UUID: "GPU-a10g-0", Name: "NVIDIA A10G",
				MemoryTotal: 24 << 30, MemoryUsed: 2 << 30, MemoryFree: 22 << 30,
				UtilizationGPU: 87, UtilizationMemory: 40, PowerDrawW: 212.5, PowerLimitW: 300,
				TemperatureC: 61, SMClockMHz: 1710, MemClockMHz: 6251, ECCCorrected: 3,
				Missing: tt.wantMissing, Errs: tt.wantErrs,
			}
			clearMissing(&want)
			if tt.noName {
				want.Name = ""
			}
			if !equalDevice(devs[0], want) {
				t.Errorf("\n got %+v\nwant %+v", devs[0], want)
			}
		})
	}
}

// clearMissing zeroes the values of d's missing fields, as Read leaves them.
func clearMissing(d *Device) {
	if !d.Has(FieldMemory) {
		d.MemoryTotal, d.MemoryUsed, d.MemoryFree = 0, 0, 0
	}
	if !d.Has(FieldUtilization) {
		d.UtilizationGPU, d.UtilizationMemory = 0, 0
	}
	if !d.Has(FieldPowerDraw) {
		d.PowerDrawW = 0
	}
	if !d.Has(FieldPowerLimit) {
		d.PowerLimitW = 0
	}
	if !d.Has(FieldTemperature) {
		d.TemperatureC = 0
	}
	if !d.Has(FieldECC) {
		d.ECCCorrected, d.ECCUncorrected = 0, 0
	}
}

func TestNVMLSourceDeviceHandleFails(t *testing.T) {
	box := h100Box(t)
	box.DeviceGetHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		if i == 3 {
			return nil, nvml.ERROR_GPU_IS_LOST
		}
		return box.Devices[i], nvml.SUCCESS
	}
	devs, err := NewNVMLSource(box).Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 8 {
		t.Fatalf("got %d devices, want 8", len(devs))
	}
	if d := devs[3]; d.Missing != AllFields || !slices.Equal(d.Errs, []string{"handle: gpu is lost"}) {
		t.Errorf("lost device = %+v", d)
	}
	if d := devs[4]; d.Missing != 0 || d.UUID != "GPU-h100-4" {
		t.Errorf("device after the lost one = %+v", d)
	}
}

func TestNVMLSourceInit(t *testing.T) {
	tests := []struct {
		name      string
		ret       nvml.Return
		wantErr   string
		wantInits int // after three reads
	}{
		{"library not found", nvml.ERROR_LIBRARY_NOT_FOUND, "gpu: unavailable: nvml: library not found", 1},
		{"driver not loaded", nvml.ERROR_DRIVER_NOT_LOADED, "gpu: unavailable: nvml: init: driver not loaded", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lib := &mock.Interface{InitFunc: func() nvml.Return { return tt.ret }}
			src := NewNVMLSource(lib)
			for range 3 {
				devs, err := src.Read(t.Context())
				if !errors.Is(err, ErrUnavailable) || err.Error() != tt.wantErr || devs != nil {
					t.Fatalf("Read = %v, %v; want nil, %q", devs, err, tt.wantErr)
				}
			}
			if n := len(lib.InitCalls()); n != tt.wantInits {
				t.Errorf("Init called %d times, want %d", n, tt.wantInits)
			}
			if err := src.Close(); err != nil {
				t.Errorf("Close after failed init: %v", err)
			}
		})
	}
}

func TestMonitorWithoutNVML(t *testing.T) {
	lib := &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}
	synctest.Test(t, func(t *testing.T) {
		ticks := make(chan time.Time)
		m := NewMonitor(NewNVMLSource(lib), MonitorOptions{Ticks: ticks})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		synctest.Wait()
		ticks <- time.Time{}
		synctest.Wait()
		s := m.Snapshot()
		if len(s.Devices) != 0 || s.Err != "gpu: unavailable: nvml: library not found" {
			t.Errorf("snapshot = %+v", s)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
}

func TestNVMLSourceClose(t *testing.T) {
	box := h100Box(t)
	src := NewNVMLSource(box)
	if _, err := src.Read(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(box.ShutdownCalls()); n != 1 {
		t.Errorf("Shutdown called %d times, want 1", n)
	}
	if _, err := src.Read(t.Context()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Read after Close = %v, want ErrUnavailable", err)
	}
}

func TestMonitorRefreshDGXH100(t *testing.T) {
	box := h100Box(t)
	dev0 := box.Devices[0].(*server.Device)
	synctest.Test(t, func(t *testing.T) {
		start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		now := start
		clock := func() time.Time { now = now.Add(time.Second); return now }
		ticks := make(chan time.Time)
		m := NewMonitor(NewNVMLSource(box), MonitorOptions{Now: clock, Ticks: ticks})
		if s := m.Snapshot(); s.Err != notReadYet || len(s.Devices) != 0 {
			t.Fatalf("before Run: %+v", s)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()

		synctest.Wait() // the first refresh happens at once
		first := m.Snapshot()
		if first.Err != "" || len(first.Devices) != 8 || !first.Taken.Equal(start.Add(time.Second)) {
			t.Fatalf("first snapshot: err %q, %d devices, taken %v", first.Err, len(first.Devices), first.Taken)
		}
		if d, _ := first.Device(0); d.MemoryUsed != 0 {
			t.Fatalf("first snapshot: GPU 0 uses %d bytes", d.MemoryUsed)
		}

		// An engine loads a model on GPU 0.
		dev0.MemoryInfo = nvml.Memory{Total: 80 << 30, Used: 45 << 30, Free: 35 << 30}
		ticks <- time.Time{}
		synctest.Wait()
		second := m.Snapshot()
		if d, _ := second.Device(0); d.MemoryUsed != 45<<30 || d.MemoryFree != 35<<30 {
			t.Errorf("after tick: GPU 0 used %d free %d", d.MemoryUsed, d.MemoryFree)
		}
		if !second.Taken.Equal(start.Add(2 * time.Second)) {
			t.Errorf("after tick: taken %v", second.Taken)
		}
		// The first snapshot is immutable: a refresh swaps in a new one.
		if d, _ := first.Device(0); d.MemoryUsed != 0 {
			t.Errorf("first snapshot changed: GPU 0 uses %d bytes", d.MemoryUsed)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

// TestNewSource reads the box's real NVML. Without a GPU (this project's CI)
// it must report "library not found" and no devices; with -nvml it must find
// at least one GPU with every core reading.
func TestNewSource(t *testing.T) {
	src := NewSource()
	defer src.Close()
	devs, err := src.Read(t.Context())
	if !*realNVML {
		if err == nil {
			t.Skipf("NVML present (%d GPUs); run with -nvml to check them", len(devs))
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Read = %v, want ErrUnavailable", err)
		}
		t.Logf("no NVML here: %v", err)
		return
	}
	if err != nil || len(devs) == 0 {
		t.Fatalf("Read = %d devices, %v", len(devs), err)
	}
	for _, d := range devs {
		t.Logf("%+v", d)
		if d.UUID == "" || d.Name == "" || !d.Has(FieldMemory|FieldUtilization|FieldTemperature) || d.MemoryTotal == 0 {
			t.Errorf("GPU %d lacks core readings: %+v", d.Index, d)
		}
	}
	m := NewMonitor(src, MonitorOptions{})
	start := time.Now()
	snap := m.Refresh(t.Context())
	t.Logf("one refresh of %d GPUs took %v", len(snap.Devices), time.Since(start))
	if err := WriteTable(os.Stdout, snap); err != nil {
		t.Fatal(err)
	}
}
