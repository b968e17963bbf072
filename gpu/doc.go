// Package gpu owns what sluice knows about the GPUs of one box: the
// inventory and live telemetry read through NVML (Source, Monitor), the
// Prometheus collector over it (NewCollector), VRAM estimates of GGUF models
// (EstimateVRAM, EstimateShape) and the placement of models onto GPUs (Place).
//
// A Monitor refreshes an immutable Snapshot on an interval and publishes it
// through an atomic pointer; readers never block it. Without NVML (no driver,
// no GPU, or a binary built without cgo) the Monitor reports zero devices and
// the reason in Snapshot.Err; it never returns an error that stops sluice.
//
// The NVML-backed Source needs cgo (github.com/NVIDIA/go-nvml does not build
// without it); builds with CGO_ENABLED=0 get a Source that reports no GPUs.
//
// Estimates and placement are pure functions over values: they do not log,
// read NVML or touch shared state.
//
// This package must not import the gateway, scheduler, router or runtime
// packages; they import it.
package gpu
