//go:build !unix

package compress

// cpuTime is not measured here: throughput falls back to wall time.
func cpuTime() float64 { return 0 }
