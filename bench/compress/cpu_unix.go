//go:build unix

package compress

import "syscall"

// cpuTime is the CPU seconds the process has used (user and system, all threads, so
// the garbage collector's work counts): throughput per core that other processes on a
// loaded machine do not distort.
func cpuTime() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
