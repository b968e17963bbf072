package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fasthttp"
)

// Limits protect the server from slow, abusive or too many clients. Zero fields take
// the defaults below; a negative cap turns it off.
type Limits struct {
	// HeaderTimeout: a request's headers (and a body of up to 64 KiB) in, from its first
	// byte (default 10s). BodyTimeout: a larger or chunked body in, once the headers are
	// (default 60s).
	HeaderTimeout time.Duration
	BodyTimeout   time.Duration
	// WriteTimeout bounds each write of an answer (default 60s): a client that stops
	// reading is dropped and its engine request cancelled.
	WriteTimeout time.Duration
	IdleTimeout  time.Duration // keep-alive connections idle this long close (default 120s)
	// MaxConnections caps open client connections (default 4096): more get 503.
	MaxConnections int
	// MaxConcurrentRequests caps inference requests waiting or running (default 1024):
	// more get 429.
	MaxConcurrentRequests int
	// At most MaxLargeBodies requests whose body is over LargeBodyBytes (or of unknown
	// length) are read or in flight at once (defaults 32 and 1 MiB): more get 429.
	LargeBodyBytes int
	MaxLargeBodies int
	// OversizeDrain is how much of a refused body is read and thrown away after the
	// answer, so that clients still sending see it (default 64 MiB).
	OversizeDrain int
}

func (l *Limits) applyDefaults() {
	if l.HeaderTimeout <= 0 {
		l.HeaderTimeout = 10 * time.Second
	}
	if l.BodyTimeout <= 0 {
		l.BodyTimeout = 60 * time.Second
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = 60 * time.Second
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = 120 * time.Second
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = 4096
	}
	if l.MaxConcurrentRequests == 0 {
		l.MaxConcurrentRequests = 1024
	}
	if l.LargeBodyBytes <= 0 {
		l.LargeBodyBytes = 1 << 20
	}
	if l.MaxLargeBodies == 0 {
		l.MaxLargeBodies = 32
	}
	if l.OversizeDrain <= 0 {
		l.OversizeDrain = 64 << 20
	}
}

// errBusy answers requests over MaxConcurrentRequests.
var errBusy = &models.Error{Kind: models.ErrRejected, Code: "too_many_requests", RetryAfter: time.Second,
	Msg: "the server has as many requests in flight as it accepts (server.limits.max_concurrent_requests); retry later"}

// errBodiesBusy answers a large body over MaxLargeBodies.
var errBodiesBusy = &models.Error{Kind: models.ErrRejected, Code: "too_many_large_requests", RetryAfter: time.Second,
	Msg: "the server is reading as many large request bodies as it accepts at once (server.limits.max_large_bodies); retry later"}

// errSlowRequest answers a request whose headers or body did not arrive in time.
var errSlowRequest = &models.Error{Kind: models.ErrInvalid, Status: fasthttp.StatusRequestTimeout, Code: "request_timeout",
	Msg: "the request did not arrive in time (server.limits.header_timeout, body_timeout)"}

// admit counts an inference request in; false when over MaxConcurrentRequests.
func (s *Server) admit() bool {
	n := s.active.Add(1)
	if max := s.opts.Limits.MaxConcurrentRequests; max > 0 && n > int64(max) {
		s.active.Add(-1)
		return false
	}
	return true
}

// bodyGate bounds how many large request bodies are read or in flight at once. It
// decides after the headers, before fasthttp reads a body: a large body takes a token
// (released when its request ends) or is refused. Only requests with large bodies (or
// chunked ones) touch its lock; the rest pay one comparison.
type bodyGate struct {
	large   int
	max     int // < 0: no cap
	maxBody int // bodies over this are refused (413) without a token
	mu      sync.Mutex
	used    int
	state   map[*fasthttp.RequestHeader]gateState
}

type gateState uint8

const (
	gateHeld    gateState = iota + 1 // the request holds a token
	gateRefused                      // refused: the body limit was lowered to fail it
)

func newBodyGate(l Limits, maxBody int) *bodyGate {
	return &bodyGate{large: l.LargeBodyBytes, max: l.MaxLargeBodies, maxBody: maxBody, state: map[*fasthttp.RequestHeader]gateState{}}
}

// isLarge reports whether a request with this Content-Length (fasthttp: -1 chunked, -2
// none) needs a token.
func (g *bodyGate) isLarge(cl int) bool { return g.max >= 0 && (cl > g.large || cl == -1) }

// admit runs after a request's headers are in; it returns the body limit to apply
// (0: the server's). limit is the request's own when it is not the server's (uploads).
func (g *bodyGate) admit(h *fasthttp.RequestHeader, limit int) int {
	cl := h.ContentLength()
	maxBody := g.maxBody
	if limit > 0 {
		maxBody = limit
	}
	if !g.isLarge(cl) || cl > maxBody {
		return limit // small, or too large anyway: fasthttp answers 413 without reading it
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state[h] == gateHeld {
		g.used-- // left by a request that never reached the handler or error handler
	}
	if g.used < g.max {
		g.used++
		g.state[h] = gateHeld
		return limit
	}
	g.state[h] = gateRefused
	return g.large // a chunked body that turns out small still passes
}

// done ends a request's claim; it reports whether the request was refused.
func (g *bodyGate) done(h *fasthttp.RequestHeader) (refused bool) {
	g.mu.Lock()
	st := g.state[h]
	delete(g.state, h)
	if st == gateHeld {
		g.used--
	}
	g.mu.Unlock()
	return st == gateRefused
}

// holds reports whether the request holds a token (it must call done when it ends).
func (g *bodyGate) holds(h *fasthttp.RequestHeader) bool {
	if !g.isLarge(h.ContentLength()) {
		return false
	}
	g.mu.Lock()
	st := g.state[h]
	if st == gateRefused {
		delete(g.state, h) // a small chunked body that got through anyway
	}
	g.mu.Unlock()
	return st == gateHeld
}

func (g *bodyGate) inUse() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.used
}

// smallBody is the largest body that must arrive within the header timeout (counted
// from the request's first byte) rather than get the body timeout of its own: typical
// requests then cost no extra deadline change.
const smallBody = 64 << 10

// headerReceived applies the body timeout and the large-body gate once a request's
// headers are in.
func (s *Server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	rc := fasthttp.RequestConfig{MaxRequestBodySize: s.gate.admit(h, s.uploadLimit(h))}
	if cl := h.ContentLength(); cl > smallBody || cl == -1 {
		rc.ReadTimeout = s.opts.Limits.BodyTimeout
	}
	return rc
}

// refuseAndLinger answers a request whose body sluice will not read (too large, or too
// many large ones at once), then reads and discards what the client still sends, up to
// OversizeDrain bytes and BodyTimeout, before the connection closes. Closing at once
// would reset the connection while the client uploads, and clients that read only
// after sending (the OpenAI SDKs) would see "connection error" instead of the answer.
func (s *Server) refuseAndLinger(ctx *fasthttp.RequestCtx, err error) {
	writeError(ctx, err, "")
	ctx.SetConnectionClose()
	c := ctx.Conn()
	hc, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return // fasthttp writes the answer and closes
	}
	bw := bufio.NewWriterSize(c, 1024)
	if ctx.Response.Write(bw) != nil || bw.Flush() != nil || hc.CloseWrite() != nil {
		return
	}
	// fasthttp writes the answer again after this returns; that write fails on the
	// half-closed connection, harmlessly, and the connection closes.
	_ = c.SetReadDeadline(time.Now().Add(s.opts.Limits.BodyTimeout))
	n, _ := io.Copy(io.Discard, io.LimitReader(c, int64(s.opts.Limits.OversizeDrain)))
	s.m.drained.Add(float64(n))
}

// isTimeout reports a read that ran past its deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// limitListener caps open connections: over the cap, a connection gets a 503 in
// OpenAI's format and is closed (after a short linger, so that the client reads it).
type limitListener struct {
	net.Listener
	s      *Server
	max    int64
	answer []byte // rejectAnswer
	open   atomic.Int64
	// lingering counts rejected connections being answered (bounded: under a flood
	// they are closed at once).
	lingering atomic.Int64
}

// rejectAnswer is the whole HTTP answer to a connection over the cap.
func rejectAnswer() []byte {
	body := appendErrorJSON(nil, &models.Error{Kind: models.ErrOverloaded, Status: fasthttp.StatusServiceUnavailable,
		Code: "too_many_connections",
		Msg:  "the server has as many connections open as it accepts (server.limits.max_connections); retry later"}, "")
	return append([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"+
		"Connection: close\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"), body...)
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.max > 0 && l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.s.m.connRejected.Inc()
			l.reject(c)
			continue
		}
		if l.max <= 0 {
			l.open.Add(1)
		}
		return &limitConn{Conn: c, l: l}, nil
	}
}

func (l *limitListener) reject(c net.Conn) {
	if l.lingering.Add(1) > 256 {
		l.lingering.Add(-1)
		_ = c.Close()
		return
	}
	go func() {
		defer l.lingering.Add(-1)
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write(l.answer); err != nil {
			return
		}
		if hc, ok := c.(interface{ CloseWrite() error }); ok {
			_ = hc.CloseWrite()
			_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
		}
	}()
}

// limitConn is an accepted connection; it leaves the count when closed. It keeps the
// underlying connection's CloseWrite and SyscallConn (for the hang-up watcher).
type limitConn struct {
	net.Conn
	l      *limitListener
	closed atomic.Bool
	w      *watched // set by the hang-up watcher when it registers the connection
}

func (c *limitConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
		if h := c.l.s.hangups; h != nil {
			h.forget(c)
		}
	}
	return c.Conn.Close()
}

func (c *limitConn) CloseWrite() error {
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (c *limitConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}
