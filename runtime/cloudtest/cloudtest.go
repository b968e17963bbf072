package cloudtest

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Latency shapes a fake's answers like a real provider's: the first token after TTFT
// (measured from the request's arrival), then one token every 1/TokensPerSecond.
type Latency struct {
	TTFT            time.Duration
	TokensPerSecond float64 // 0: the tokens after the first come at once
}

// Pacer paces the tokens of one answer.
type Pacer struct {
	start time.Time
	lat   Latency
	n     int
}

// Start starts pacing an answer that arrived now.
func (l Latency) Start() *Pacer { return &Pacer{start: time.Now(), lat: l} }

// Wait blocks until the next token is due, or ctx ends (then it returns ctx's error).
func (p *Pacer) Wait(ctx context.Context) error {
	due := p.start.Add(p.lat.TTFT)
	if p.lat.TokensPerSecond > 0 && p.n > 0 {
		due = due.Add(time.Duration(float64(p.n) / p.lat.TokensPerSecond * float64(time.Second)))
	}
	p.n++
	d := time.Until(due)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitAll blocks until n tokens are due (a whole answer of n tokens), or ctx ends.
func (p *Pacer) WaitAll(ctx context.Context, n int) error {
	if n < 1 {
		n = 1
	}
	p.n = n - 1
	return p.Wait(ctx)
}

var words = strings.Fields(`Sluice answers from a simulated cloud model. The local engines were busy, so this
request overflowed to a provider allowed by its residency policy. Every token here is priced at list
price and counted in the usage the provider reports. The quick brown fox jumps over the lazy dog while
the scheduler keeps the local GPUs busy and the queue short.`)

// Tokens returns the deterministic reply of n tokens: words, each after the first with
// its leading space.
func Tokens(n int) []string {
	out := make([]string, n)
	for i := range out {
		w := words[i%len(words)]
		if i > 0 {
			w = " " + w
		}
		out[i] = w
	}
	return out
}

// Split cuts text into tokens the way Tokens makes them (each word with its leading
// space), for replies given as text.
func Split(text string) []string {
	if text == "" {
		return nil
	}
	var out []string
	start := 0
	for i := 1; i < len(text); i++ {
		if text[i] == ' ' && text[i-1] != ' ' {
			out = append(out, text[start:i])
			start = i
		}
	}
	return append(out, text[start:])
}

// CountTokens is the fakes' tokenizer: about 4 bytes a token, at least 1 for any text.
func CountTokens(s string) int {
	if s == "" {
		return 0
	}
	return (len(s) + 3) / 4
}

// Script is a queue of failures to play on the next requests.
type Script[F any] struct {
	mu sync.Mutex
	q  []F
}

// Push queues failures, played one per request in order.
func (s *Script[F]) Push(f ...F) {
	s.mu.Lock()
	s.q = append(s.q, f...)
	s.mu.Unlock()
}

// Pop takes the next failure, if any.
func (s *Script[F]) Pop() (F, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var zero F
	if len(s.q) == 0 {
		return zero, false
	}
	f := s.q[0]
	s.q = s.q[1:]
	return f, true
}

// Stats counts what a fake served.
type Stats struct {
	Requests    int64 // requests received
	Failed      int64 // answered with an error (scripted, invalid, rate-limited)
	Canceled    int64 // abandoned by the client before the answer ended
	InFlight    int64 // requests being answered now
	MaxInFlight int64 // the most at once
}

// Counter keeps Stats.
type Counter struct {
	requests, failed, canceled, inflight, maxInflight atomic.Int64
	once                                              sync.Once
	cancels                                           chan struct{}
}

func (c *Counter) ch() chan struct{} {
	c.once.Do(func() { c.cancels = make(chan struct{}, 1024) })
	return c.cancels
}

// Canceled receives once for each request the client abandoned.
func (c *Counter) Canceled() <-chan struct{} { return c.ch() }

// Begin counts a request in and returns how many are in flight with it.
func (c *Counter) Begin() int64 {
	c.requests.Add(1)
	n := c.inflight.Add(1)
	for {
		m := c.maxInflight.Load()
		if n <= m || c.maxInflight.CompareAndSwap(m, n) {
			return n
		}
	}
}

// End counts a request out.
func (c *Counter) End() { c.inflight.Add(-1) }

// Fail counts an error answer.
func (c *Counter) Fail() { c.failed.Add(1) }

// Cancel counts a request the client abandoned.
func (c *Counter) Cancel() {
	c.canceled.Add(1)
	select {
	case c.ch() <- struct{}{}:
	default:
	}
}

// Stats returns the counts so far.
func (c *Counter) Stats() Stats {
	return Stats{Requests: c.requests.Load(), Failed: c.failed.Load(), Canceled: c.canceled.Load(),
		InFlight: c.inflight.Load(), MaxInFlight: c.maxInflight.Load()}
}

// Recorder keeps the last requests a fake decoded, for tests to inspect.
type Recorder[R any] struct {
	mu   sync.Mutex
	last []R
}

// Add records r, keeping the last 64.
func (rc *Recorder[R]) Add(r R) {
	rc.mu.Lock()
	if len(rc.last) == 64 {
		copy(rc.last, rc.last[1:])
		rc.last = rc.last[:63]
	}
	rc.last = append(rc.last, r)
	rc.mu.Unlock()
}

// Last returns the last request recorded (ok false when none).
func (rc *Recorder[R]) Last() (R, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var zero R
	if len(rc.last) == 0 {
		return zero, false
	}
	return rc.last[len(rc.last)-1], true
}

// SSE writes server-sent events.
type SSE struct {
	w   http.ResponseWriter
	f   http.Flusher
	eol string
	buf []byte
}

// NewSSE starts an event stream on w (status 200). crlf ends lines with \r\n, as
// Google's servers do.
func NewSSE(w http.ResponseWriter, crlf bool) *SSE {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	s := &SSE{w: w, f: f, eol: "\n"}
	if crlf {
		s.eol = "\r\n"
	}
	return s
}

// Event writes one event (name may be empty) and flushes it.
func (s *SSE) Event(name string, data []byte) error {
	s.buf = s.buf[:0]
	if name != "" {
		s.buf = append(s.buf, "event: "...)
		s.buf = append(s.buf, name...)
		s.buf = append(s.buf, s.eol...)
	}
	s.buf = append(s.buf, "data: "...)
	s.buf = append(s.buf, data...)
	s.buf = append(s.buf, s.eol...)
	s.buf = append(s.buf, s.eol...)
	if _, err := s.w.Write(s.buf); err != nil {
		return err
	}
	if s.f != nil {
		s.f.Flush()
	}
	return nil
}
