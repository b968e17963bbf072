package sched

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// clkTck is the kernel's USER_HZ: the unit of the CPU times in /proc (100 on every
// Linux architecture Go supports).
const clkTck = 100

// cpuSample is a reading of the host's busy CPU time and the CPU time of this process
// and the given engine processes (Linux /proc; zeros elsewhere).
type cpuSample struct {
	at       time.Time
	hostBusy float64 // seconds, all CPUs
	ours     float64 // seconds: this process and the engines
	ok       bool
}

func sampleCPU(pids []int) cpuSample {
	s := cpuSample{at: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return s
	}
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already counted in user
			break
		}
		n, _ := strconv.ParseFloat(v, 64)
		s.hostBusy += n / clkTck
	}
	s.ours = procCPU("self")
	for _, p := range pids {
		if p > 0 {
			s.ours += procCPU(strconv.Itoa(p))
		}
	}
	s.ok = true
	return s
}

// procCPU is a process's user plus system time in seconds (its own, not its children's).
func procCPU(pid string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The command name is in parentheses and may hold spaces: fields count from the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64) // utime is field 14 of stat
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / clkTck
}

// foreignCPU is the CPU time, in CPUs (0 .. NumCPU), that other processes used on the
// host between two samples: the benchmark's noise.
func foreignCPU(a, b cpuSample) float64 {
	if !a.ok || !b.ok {
		return 0
	}
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 {
		return 0
	}
	return max(0, (b.hostBusy-a.hostBusy)-(b.ours-a.ours)) / wall
}
