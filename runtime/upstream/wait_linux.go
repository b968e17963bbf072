package upstream

import "syscall"

// waitReadable parks until rc has data (or its end, or an error) without reading it:
// a peek that does not block, then the runtime's poller until the next edge. The
// poller's readiness is reset before the first peek, so data that arrives between the
// peek and the wait still wakes it.
func waitReadable(rc syscall.RawConn) {
	var b [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN && err != syscall.EINTR
	})
}
