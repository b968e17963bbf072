package bench

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// pacer sleeps until a send time with microsecond precision. time.Sleep cannot: when the
// process is idle, Go's netpoller waits in whole milliseconds, so short sleeps overshoot
// by up to 1 ms, which would swamp a 150 µs request. A non-blocking timerfd is read
// through the netpoller instead: the kernel's high-resolution timer wakes epoll exactly.
type pacer struct {
	fd int
	f  *os.File
}

func newPacer() (*pacer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("timerfd_create", err)
	}
	return &pacer{fd: fd, f: os.NewFile(uintptr(fd), "timerfd")}, nil
}

// wait returns at due (at once when due has passed).
func (p *pacer) wait(due time.Time) error {
	d := time.Until(due)
	if d <= 0 {
		return nil
	}
	its := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(p.fd, 0, &its, nil); err != nil {
		return os.NewSyscallError("timerfd_settime", err)
	}
	var buf [8]byte // the expiration count
	_, err := p.f.Read(buf[:])
	return err
}

func (p *pacer) close() error { return p.f.Close() }
