package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Options tune a Client. Zero values pick the defaults.
type Options struct {
	MaxIdle      int           // idle keep-alive connections kept (default 256)
	DialTimeout  time.Duration // default 5s
	MaxBodyBytes int           // largest non-streamed response body (default 64 MiB)
	MaxEvent     int           // largest server-sent event of a streamed body (default DefaultMaxEvent)
	TLS          *tls.Config   // for https; nil: system roots
}

// Client sends requests to one base URL (scheme://host:port[/prefix]).
type Client struct {
	scheme string
	host   string // host:port
	prefix string // path prefix, without trailing slash
	opts   Options
	dialer net.Dialer

	mu     sync.Mutex
	idle   []*conn
	closed bool
	dials  atomic.Int64

	// writers are the request writers, shared by the connections: a connection writes
	// only while sending a request, and 1,000 streams held open would otherwise hold
	// 1,000 idle write buffers.
	writers sync.Pool
	// readers are the SSE line readers of streamed responses (Client.SSE).
	readers sync.Pool
	// connReaders are the connections' read buffers: a connection holds one only while
	// it reads (not while idle in the pool, nor while a stream waits for the engine
	// with nothing buffered, Call.WaitReady).
	connReaders sync.Pool
}

// Dials counts the connections the client has opened (to check keep-alive reuse).
func (c *Client) Dials() int64 { return c.dials.Load() }

type conn struct {
	nc net.Conn
	// br is the read buffer (4 KB, as fasthttp's clients: bodies are read past it, not
	// through it), nil while the connection holds none (Client.attach).
	br *bufio.Reader
	// raw is nc's descriptor for Call.WaitReady (nil for TLS: its reader may hold
	// decrypted bytes the descriptor does not show).
	raw syscall.RawConn
	// deadline is the I/O deadline set on nc. Calls whose deadline is within a second
	// of it leave it alone: changing a deadline costs timer operations on every call.
	deadline time.Time
}

// setDeadline gives cn the call's deadline, to within a second.
func (cn *conn) setDeadline(d time.Time) {
	if d.IsZero() {
		if !cn.deadline.IsZero() {
			_ = cn.nc.SetDeadline(time.Time{})
			cn.deadline = time.Time{}
		}
		return
	}
	if diff := d.Sub(cn.deadline); cn.deadline.IsZero() || diff > time.Second || diff < -time.Second {
		_ = cn.nc.SetDeadline(d)
		cn.deadline = d
	}
}

// New returns a client for baseURL, e.g. "http://127.0.0.1:8081" or
// "https://api.openai.com/v1".
func New(baseURL string, opts Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("upstream: bad url %q: %w", baseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("upstream: bad url %q: scheme must be http or https", baseURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("upstream: bad url %q: no host", baseURL)
	}
	host := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			host += ":443"
		} else {
			host += ":80"
		}
	}
	if opts.MaxIdle <= 0 {
		opts.MaxIdle = 256
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 64 << 20
	}
	if opts.MaxEvent <= 0 {
		opts.MaxEvent = DefaultMaxEvent
	}
	return &Client{
		scheme: u.Scheme,
		host:   host,
		prefix: strings.TrimRight(u.Path, "/"),
		opts:   opts,
		dialer: net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second},
	}, nil
}

// URL returns the full URL of path (which starts with '/').
func (c *Client) URL(path string) string {
	return c.scheme + "://" + c.host + c.prefix + path
}

// MaxEvent is the bound on one server-sent event of a streamed body (Client.SSE's).
func (c *Client) MaxEvent() int { return c.opts.MaxEvent }

// Host is the host:port the client dials.
func (c *Client) Host() string { return c.host }

// Prepare sets req's URI to path on this client's base URL and its Host header.
func (c *Client) Prepare(req *fasthttp.Request, method, path string) {
	req.Header.SetMethod(method)
	req.SetRequestURI(c.prefix + path)
	req.Header.SetHost(c.host)
	req.UseHostHeader = true
}

// Close closes idle connections and makes later calls fail.
func (c *Client) Close() {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.closed = true
	c.mu.Unlock()
	for _, cn := range idle {
		_ = cn.nc.Close()
	}
}

var errClosed = errors.New("upstream: client closed")

func (c *Client) get() *conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.idle); n > 0 {
		cn := c.idle[n-1]
		c.idle = c.idle[:n-1]
		return cn
	}
	return nil
}

// attach gives cn a read buffer from the pool when it holds none.
func (c *Client) attach(cn *conn) {
	if cn.br != nil {
		return
	}
	br, _ := c.connReaders.Get().(*bufio.Reader)
	if br == nil {
		br = bufio.NewReaderSize(cn.nc, connReadBuffer)
	} else {
		br.Reset(cn.nc)
	}
	cn.br = br
}

// detach gives cn's read buffer back to the pool when it holds nothing; it reports
// whether it did.
func (c *Client) detach(cn *conn) bool {
	if cn.br == nil || cn.br.Buffered() > 0 {
		return false
	}
	cn.br.Reset(nil)
	c.connReaders.Put(cn.br)
	cn.br = nil
	return true
}

func (c *Client) put(cn *conn) {
	c.detach(cn) // (bytes a server sent unasked stay with the connection)
	c.mu.Lock()
	if !c.closed && len(c.idle) < c.opts.MaxIdle {
		c.idle = append(c.idle, cn)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	_ = cn.nc.Close()
}

func (c *Client) dial(ctx context.Context) (*conn, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	c.dials.Add(1)
	nc, err := c.dialer.DialContext(ctx, "tcp", c.host)
	if err != nil {
		return nil, err
	}
	if c.scheme == "https" {
		cfg := c.opts.TLS
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		cfg = cfg.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(c.host)
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, err
		}
		return &conn{nc: tc}, nil
	}
	return &conn{nc: nc, raw: rawConn(nc)}, nil
}

// connReadBuffer is each connection's read buffer; its request writer comes from the
// client's pool (Client.writers).
const connReadBuffer = 4 << 10

// connWriteBuffer is a pooled request writer's buffer.
const connWriteBuffer = 16 << 10

// writeRequest sends req on cn through one of c's pooled writers.
func (c *Client) writeRequest(cn *conn, req *fasthttp.Request) error {
	w, _ := c.writers.Get().(*bufio.Writer)
	if w == nil {
		w = bufio.NewWriterSize(cn.nc, connWriteBuffer)
	} else {
		w.Reset(cn.nc)
	}
	err := req.Write(w)
	if err == nil {
		err = w.Flush()
	}
	w.Reset(nil)
	c.writers.Put(w)
	return err
}

// Call is one request in flight. Resp holds the response headers, and the body unless
// the call streams; read a streamed body with Body. Release must always be called.
type Call struct {
	Resp   *fasthttp.Response
	c      *Client
	cn     *conn
	stop   func() bool
	body   io.Reader
	eof    bool
	failed bool
}

// Do sends req (prepared with Prepare) and reads the response headers. With stream set
// the body is left on the connection for Body; otherwise it is read in full. Cancelling
// ctx interrupts the call at any point and closes its connection; ctx's deadline bounds
// every read and write.
func (c *Client) Do(ctx context.Context, req *fasthttp.Request, stream bool) (*Call, error) {
	d, _ := ctx.Deadline()
	return c.DoUntil(ctx, req, stream, d)
}

// DoUntil is Do with an explicit deadline for the call's I/O (zero: none) instead of a
// context deadline: the connection's own deadline enforces it, so a request needs no
// timer of its own. A call past its deadline fails with os.ErrDeadlineExceeded.
func (c *Client) DoUntil(ctx context.Context, req *fasthttp.Request, stream bool, deadline time.Time) (*Call, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	resp := fasthttp.AcquireResponse()
	for attempt := 0; ; attempt++ {
		cn := c.get()
		reused := cn != nil
		if cn == nil {
			var err error
			if cn, err = c.dial(ctx); err != nil {
				fasthttp.ReleaseResponse(resp)
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, err
			}
		}
		c.attach(cn)
		cn.setDeadline(deadline)
		stop := noStop
		if ctx.Done() != nil {
			stop = context.AfterFunc(ctx, func() { _ = cn.nc.SetDeadline(time.Unix(1, 0)) })
		}
		err := c.writeRequest(cn, req)
		if err == nil {
			resp.Reset()
			resp.StreamBody = stream
			err = resp.ReadLimitBody(cn.br, c.opts.MaxBodyBytes)
		}
		if err != nil {
			stop()
			_ = cn.nc.Close()
			if ctx.Err() != nil {
				fasthttp.ReleaseResponse(resp)
				return nil, ctx.Err()
			}
			// A reused keep-alive connection the server had closed: retry once on a new one.
			if reused && attempt == 0 && isStale(err) {
				continue
			}
			fasthttp.ReleaseResponse(resp)
			return nil, err
		}
		call := &Call{Resp: resp, c: c, cn: cn, stop: stop}
		if stream {
			call.body = resp.BodyStream()
			if call.body != nil && resp.Header.ContentLength() == -1 {
				// Chunked: decoded here, several buffered chunks a read (chunked.go).
				// fasthttp's unread stream is only released, at Release.
				call.body = &chunked{br: cn.br}
			}
		} else {
			call.eof = true
		}
		return call, nil
	}
}

// noStop is the stop function of a call whose context can never be cancelled.
func noStop() bool { return true }

func isStale(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne *net.OpError
	if errors.As(err, &ne) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe") ||
		strings.Contains(s, "server closed connection")
}

// Read reads the streamed body.
func (call *Call) Read(p []byte) (int, error) {
	if call.body == nil {
		return 0, io.EOF
	}
	n, err := call.body.Read(p)
	if err == io.EOF {
		call.eof = true
	} else if err != nil {
		call.failed = true
	}
	return n, err
}

// Drain reads what is left of a streamed body (an engine's last chunk terminator after
// its final event), waiting at most d, so the connection can be reused. It reads through
// r, the reader wrapping the call (e.g. an SSE reader with buffered bytes), at most max
// bytes; anything more and the connection is dropped at Release.
func (call *Call) Drain(r io.Reader, max int64, d time.Duration) {
	if call.eof || call.body == nil {
		return
	}
	_ = call.cn.nc.SetReadDeadline(time.Now().Add(d))
	n, _ := io.Copy(io.Discard, io.LimitReader(r, max))
	if n >= max {
		call.failed = true
	}
	// Restore the call's deadline (or none) for the connection's next use.
	_ = call.cn.nc.SetReadDeadline(call.cn.deadline)
}

// Discard marks the connection as not reusable (for servers that close it themselves).
func (call *Call) Discard() { call.failed = true }

// Release returns the connection to the pool when the exchange completed cleanly, and
// closes it otherwise (an unfinished stream is aborted this way). Idempotent.
func (call *Call) Release() {
	if call.c == nil {
		return
	}
	interrupted := !call.stop()
	clean := call.eof && !call.failed && !interrupted && !call.Resp.ConnectionClose()
	if call.body != nil {
		if !clean {
			// Do not let fasthttp drain an unfinished body: cut the connection first.
			_ = call.cn.nc.Close()
		}
		_ = call.Resp.CloseBodyStream()
	}
	if clean {
		call.c.put(call.cn)
	} else {
		_ = call.cn.nc.Close()
	}
	fasthttp.ReleaseResponse(call.Resp)
	call.Resp = nil
	call.c = nil
}
