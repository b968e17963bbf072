//go:build cgo

package gpu

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// NewSource returns the Source for this box: NVML through the system's
// libnvidia-ml.so.1, loaded on the first Read. Without the library every
// Read fails with "gpu: unavailable: nvml: library not found".
func NewSource() Source { return NewNVMLSource(nvml.New()) }

// NewNVMLSource returns a Source over lib, a real NVML library (nvml.New())
// or a mock from github.com/NVIDIA/go-nvml/pkg/nvml/mock. The source calls
// lib.Init on the first Read and lib.Shutdown on Close.
func NewNVMLSource(lib nvml.Interface) Source { return &nvmlSource{lib: lib} }

var _ Source = (*nvmlSource)(nil)

type nvmlSource struct {
	lib nvml.Interface

	mu      sync.Mutex // serializes Init, Read and Close
	inited  bool
	initErr error // sticky: set when the library is absent
	closed  bool
}

func (s *nvmlSource) Read(ctx context.Context) ([]Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.initLocked(); err != nil {
		return nil, err
	}
	n, ret := s.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("gpu: nvml: device count: %s", retText(ret))
	}
	devs := make([]Device, 0, n)
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, ret := s.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			devs = append(devs, Device{
				Index:   i,
				Missing: AllFields,
				Errs:    []string{"handle: " + retText(ret)},
			})
			continue
		}
		devs = append(devs, readDevice(i, h))
	}
	return devs, nil
}

// initLocked initializes NVML once. A missing library is remembered: it
// does not appear while sluice runs, and retrying would only repeat the
// dlopen. Other failures (driver not loaded yet) are retried on the next
// Read.
func (s *nvmlSource) initLocked() error {
	switch {
	case s.closed:
		return fmt.Errorf("%w: nvml: source closed", ErrUnavailable)
	case s.inited:
		return nil
	case s.initErr != nil:
		return s.initErr
	}
	ret := s.lib.Init()
	switch ret {
	case nvml.SUCCESS:
		s.inited = true
		return nil
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		s.initErr = fmt.Errorf("%w: nvml: library not found", ErrUnavailable)
		return s.initErr
	default:
		return fmt.Errorf("%w: nvml: init: %s", ErrUnavailable, retText(ret))
	}
}

func (s *nvmlSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if !s.inited {
		return nil
	}
	s.inited = false
	if ret := s.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("gpu: nvml: shutdown: %s", retText(ret))
	}
	return nil
}

// readDevice reads every field of one GPU; a failed reading marks its field
// missing and leaves the others alone.
func readDevice(i int, h nvml.Device) Device {
	d := Device{Index: i}
	fail := func(f Field, what string, ret nvml.Return) {
		d.Missing |= f
		if ret != nvml.ERROR_NOT_SUPPORTED {
			d.Errs = append(d.Errs, what+": "+retText(ret))
		}
	}

	if uuid, ret := h.GetUUID(); ret == nvml.SUCCESS {
		d.UUID = uuid
	} else {
		d.Errs = append(d.Errs, "uuid: "+retText(ret))
	}
	if name, ret := h.GetName(); ret == nvml.SUCCESS {
		d.Name = name
	} else {
		d.Errs = append(d.Errs, "name: "+retText(ret))
	}

	if m, ret := h.GetMemoryInfo(); ret == nvml.SUCCESS {
		d.MemoryTotal, d.MemoryUsed, d.MemoryFree = m.Total, m.Used, m.Free
	} else {
		fail(FieldMemory, "memory", ret)
	}
	if u, ret := h.GetUtilizationRates(); ret == nvml.SUCCESS {
		d.UtilizationGPU, d.UtilizationMemory = u.Gpu, u.Memory
	} else {
		fail(FieldUtilization, "utilization", ret)
	}
	if mw, ret := h.GetPowerUsage(); ret == nvml.SUCCESS {
		d.PowerDrawW = float64(mw) / 1000
	} else {
		fail(FieldPowerDraw, "power_draw", ret)
	}
	if mw, ret := h.GetEnforcedPowerLimit(); ret == nvml.SUCCESS {
		d.PowerLimitW = float64(mw) / 1000
	} else {
		fail(FieldPowerLimit, "power_limit", ret)
	}
	// GetTemperature is marked deprecated in favour of GetTemperatureV, which
	// needs a 2024 driver (R550+); the old call works on every driver.
	if c, ret := h.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
		d.TemperatureC = c
	} else {
		fail(FieldTemperature, "temperature", ret)
	}
	if mhz, ret := h.GetClockInfo(nvml.CLOCK_SM); ret == nvml.SUCCESS {
		d.SMClockMHz = mhz
	} else {
		fail(FieldSMClock, "sm_clock", ret)
	}
	if mhz, ret := h.GetClockInfo(nvml.CLOCK_MEM); ret == nvml.SUCCESS {
		d.MemClockMHz = mhz
	} else {
		fail(FieldMemClock, "mem_clock", ret)
	}
	corrected, ret := h.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_CORRECTED, nvml.VOLATILE_ECC)
	if ret == nvml.SUCCESS {
		var uncorrected uint64
		uncorrected, ret = h.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.VOLATILE_ECC)
		if ret == nvml.SUCCESS {
			d.ECCCorrected, d.ECCUncorrected = corrected, uncorrected
		}
	}
	if ret != nvml.SUCCESS {
		fail(FieldECC, "ecc", ret)
	}
	return d
}

// retText turns an NVML return code into a lowercase phrase. Return.Error
// gives "ERROR_NOT_SUPPORTED" before the library is loaded and "Not
// Supported" after; the common codes get one spelling either way.
func retText(ret nvml.Return) string {
	switch ret {
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return "library not found"
	case nvml.ERROR_NOT_SUPPORTED:
		return "not supported"
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return "driver not loaded"
	case nvml.ERROR_NO_PERMISSION:
		return "no permission"
	case nvml.ERROR_GPU_IS_LOST:
		return "gpu is lost"
	case nvml.ERROR_UNINITIALIZED:
		return "not initialized"
	case nvml.ERROR_INVALID_ARGUMENT:
		return "invalid argument"
	case nvml.ERROR_UNKNOWN:
		return "unknown error"
	}
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(ret.Error(), "ERROR_"), "_", " "))
}
