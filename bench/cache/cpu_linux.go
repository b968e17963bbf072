package cache

import (
	"runtime"
	"syscall"
	"time"
)

// threadCPU runs fn on one locked OS thread and returns the CPU time that thread spent:
// on a shared, loaded machine this stays near what fn costs, where wall time does not.
func threadCPU(fn func()) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var a, b syscall.Rusage
	if syscall.Getrusage(1 /* RUSAGE_THREAD */, &a) != nil {
		fn()
		return 0
	}
	fn()
	if syscall.Getrusage(1, &b) != nil {
		return 0
	}
	return time.Duration(b.Utime.Nano() + b.Stime.Nano() - a.Utime.Nano() - a.Stime.Nano())
}
