package gpu

import (
	"context"
	"errors"
	"strings"
	"time"
)

// ErrUnavailable means GPU telemetry cannot be read on this box at all: no
// NVML library, no driver, or a build without cgo. Errors that wrap it carry
// the reason, e.g. "gpu: unavailable: nvml: library not found".
var ErrUnavailable = errors.New("gpu: unavailable")

// Source reads the current state of every GPU of the box. The NVML-backed
// Source comes from NewSource (or NewNVMLSource with an injected
// nvml.Interface, cgo builds only); tests may supply their own.
type Source interface {
	// Read returns one Device per GPU, ordered by index. A reading that a
	// GPU does not support, or that fails, marks the field missing in
	// Device.Missing and does not fail the device nor the read. Read fails
	// only when the GPUs cannot be enumerated; an error wrapping
	// ErrUnavailable means there is no GPU telemetry on this box.
	Read(ctx context.Context) ([]Device, error)
	// Close releases the source (NVML shutdown). Read must not be called
	// after Close.
	Close() error
}

// Field names one telemetry reading of a Device; Fields combine as a bit set.
type Field uint16

// Fields of a Device that a GPU may be unable to report.
const (
	FieldMemory      Field = 1 << iota // MemoryTotal, MemoryUsed, MemoryFree
	FieldUtilization                   // UtilizationGPU, UtilizationMemory
	FieldPowerDraw                     // PowerDrawW
	FieldPowerLimit                    // PowerLimitW
	FieldTemperature                   // TemperatureC
	FieldSMClock                       // SMClockMHz
	FieldMemClock                      // MemClockMHz
	FieldECC                           // ECCCorrected, ECCUncorrected

	// AllFields is every Field: what a device that cannot be opened misses.
	AllFields = FieldMemory | FieldUtilization | FieldPowerDraw | FieldPowerLimit |
		FieldTemperature | FieldSMClock | FieldMemClock | FieldECC
)

// String names the fields of f, separated by "|", e.g. "power_draw|ecc".
func (f Field) String() string {
	if f == 0 {
		return "none"
	}
	var names []string
	for bit := Field(1); bit != 0 && bit <= f; bit <<= 1 {
		if f&bit == 0 {
			continue
		}
		switch bit {
		case FieldMemory:
			names = append(names, "memory")
		case FieldUtilization:
			names = append(names, "utilization")
		case FieldPowerDraw:
			names = append(names, "power_draw")
		case FieldPowerLimit:
			names = append(names, "power_limit")
		case FieldTemperature:
			names = append(names, "temperature")
		case FieldSMClock:
			names = append(names, "sm_clock")
		case FieldMemClock:
			names = append(names, "mem_clock")
		case FieldECC:
			names = append(names, "ecc")
		default:
			names = append(names, "unknown")
		}
	}
	return strings.Join(names, "|")
}

// Device is one GPU as read at one moment. Values of fields listed in
// Missing are zero and must not be used.
type Device struct {
	Index int    // NVML index (PCI bus order), as in nvidia-smi
	UUID  string // "GPU-…", stable across reboots; "" if unreadable
	Name  string // e.g. "NVIDIA H100 80GB HBM3"; "" if unreadable

	MemoryTotal uint64 // bytes
	// MemoryUsed counts what the driver reserves, so it reads ~0.6 GiB on
	// an idle H200 where nvidia-smi says 0 MiB; MemoryFree agrees with
	// nvidia-smi and is what placement goes by.
	MemoryUsed uint64 // bytes
	MemoryFree uint64 // bytes

	UtilizationGPU    uint32 // percent of time a kernel ran, 0..100
	UtilizationMemory uint32 // percent of time memory was read or written, 0..100

	PowerDrawW   float64 // watts
	PowerLimitW  float64 // enforced power limit, watts
	TemperatureC uint32  // GPU core, degrees Celsius
	SMClockMHz   uint32  // current SM clock
	MemClockMHz  uint32  // current memory clock

	ECCCorrected   uint64 // volatile (since driver load) corrected ECC errors
	ECCUncorrected uint64 // volatile uncorrected ECC errors

	// Missing lists the fields this GPU did not report: unsupported (an
	// A10G has no ECC counters when ECC is off, many GPUs no power reading
	// inside a VM) or failed.
	Missing Field
	// Errs describes readings that failed for a reason other than "not
	// supported", e.g. "power_draw: gpu is lost". Empty on a healthy GPU.
	Errs []string
}

// Has reports whether d carries every field in f.
func (d Device) Has(f Field) bool { return d.Missing&f == 0 }

// Snapshot is the GPU inventory at one moment. It is immutable once
// published: readers must not modify it or its Devices.
type Snapshot struct {
	Devices []Device
	Taken   time.Time // when the read finished
	// Err says why the read failed, e.g.
	// "gpu: unavailable: nvml: library not found"; "" on success. A failed
	// read carries no Devices.
	Err string
}

// Device returns the device with NVML index i.
func (s Snapshot) Device(i int) (Device, bool) {
	for _, d := range s.Devices {
		if d.Index == i {
			return d, true
		}
	}
	return Device{}, false
}
