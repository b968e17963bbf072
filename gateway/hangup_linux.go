package gateway

import (
	"context"
	"errors"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// hangups notices clients that close their connection while their request waits in the
// scheduler's queue or runs, and cancels the request's context: the scheduler drops it
// from its queue, or the runtime aborts the engine call and frees the slot. fasthttp
// gives no such signal (it reads a connection only between requests), and a failed
// write reveals a departed client only once there is something to write.
//
// One goroutine waits in epoll_wait on every watched connection, registered once per
// connection for EPOLLRDHUP (the client closed its side: FIN) and, implicitly, EPOLLHUP
// and EPOLLERR (reset), edge-triggered. It never reads the connection, so no byte of a
// pipelined request is taken from fasthttp's reader. A request pays a lock and a store
// when it starts and ends; a connection pays one epoll_ctl when its first inference
// request starts and one when it closes.
//
// Like Go's net/http, sluice takes a client that shuts down its sending side (a
// half-close) for one that left.
type hangups struct {
	epfd, wake int

	mu     sync.Mutex
	closed bool
	byID   map[uint64]*watched
	nextID uint64
	done   chan struct{}
}

// watched is a connection under watch.
type watched struct {
	id uint64
	fd int // valid while registered: the connection deregisters before it closes

	mu     sync.Mutex
	cancel context.CancelFunc // the current request's, nil between requests
	hup    bool               // the client has gone
}

const wakeID = 0 // the eventfd that stops the loop

func newHangups() *hangups {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setID(&ev, wakeID)
	if unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev) != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wake)
		return nil
	}
	h := &hangups{epfd: epfd, wake: wake, byID: map[uint64]*watched{}, nextID: wakeID + 1, done: make(chan struct{})}
	return h
}

func setID(ev *unix.EpollEvent, id uint64) {
	ev.Fd, ev.Pad = int32(uint32(id)), int32(uint32(id>>32))
}

func eventID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// run waits for hang-ups until stop.
func (h *hangups) run(onHangup func()) {
	defer close(h.done)
	events := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(h.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		for i := range events[:n] {
			id := eventID(&events[i])
			if id == wakeID {
				return
			}
			h.mu.Lock()
			w := h.byID[id]
			h.mu.Unlock()
			if w != nil && w.hangup() {
				onHangup()
			}
		}
	}
}

// stop ends the loop and releases the epoll instance; connections still open are no
// longer watched.
func (h *hangups) stop() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	h.byID = nil
	h.mu.Unlock()
	one := [8]byte{1}
	_, _ = unix.Write(h.wake, one[:])
	<-h.done
	_ = unix.Close(h.epfd)
	_ = unix.Close(h.wake)
}

// hangup marks the client gone and cancels its request; it reports whether there was
// one to cancel.
func (w *watched) hangup() bool {
	w.mu.Lock()
	w.hup = true
	cancel := w.cancel
	w.cancel = nil
	w.mu.Unlock()
	if cancel != nil {
		cancel()
		return true
	}
	return false
}

// watch starts watching c for the request whose context cancel cancels, registering
// the connection on its first request. It returns nil when c cannot be watched (not a
// socket sluice accepted) and cancels at once when the client has already gone.
func (h *hangups) watch(c *limitConn, cancel context.CancelFunc) *watched {
	w := c.w
	if w == nil {
		if w = h.register(c); w == nil {
			return nil
		}
	}
	w.mu.Lock()
	gone := w.hup
	if !gone {
		w.cancel = cancel
	}
	w.mu.Unlock()
	if gone {
		cancel()
	}
	return w
}

// unwatch ends the request's watch (its connection stays registered).
func (w *watched) unwatch() {
	w.mu.Lock()
	w.cancel = nil
	w.mu.Unlock()
}

func (h *hangups) register(c *limitConn) *watched {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || c.closed.Load() {
		return nil
	}
	w := &watched{id: h.nextID}
	var regErr error
	err = rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLET}
		setID(&ev, w.id)
		w.fd = int(fd)
		regErr = unix.EpollCtl(h.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err != nil || regErr != nil {
		return nil
	}
	h.nextID++
	h.byID[w.id] = w
	c.w = w
	return w
}

// forget deregisters a connection before it closes (while its descriptor is still its
// own, so a new connection reusing the number is never confused with it).
func (h *hangups) forget(c *limitConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := c.w
	if w == nil || h.closed {
		return
	}
	delete(h.byID, w.id)
	_ = unix.EpollCtl(h.epfd, unix.EPOLL_CTL_DEL, w.fd, nil)
}
