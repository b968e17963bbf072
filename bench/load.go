package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Mode is streaming or not.
type Mode string

// Modes.
const (
	NonStream Mode = "nonstream"
	Stream    Mode = "stream"
)

// chatRequest is a realistic client request (~300 bytes): a system and a user message.
// The user message ends with a ticket number that each send stamps anew (stamp), so no
// two requests are the same: sluice's answer cache sees a miss every time, as the
// engine-bound traffic the benchmark is about.
func chatRequest(mode Mode) []byte {
	b := []byte(`{"model":"bench","messages":[` +
		`{"role":"system","content":"You are a concise assistant for a travel company. Answer in one short sentence and do not add any greeting."},` +
		`{"role":"user","content":"What is the capital of France, and which river flows through it? Ticket ` + ticketMark + `"}],` +
		`"temperature":0.2,"max_tokens":64`)
	if mode == Stream {
		b = append(b, `,"stream":true,"stream_options":{"include_usage":true}`...)
	}
	return append(b, '}')
}

// ticketMark is the placeholder stamp overwrites with a request's sequence number.
const ticketMark = "#0000000000"

// stamp writes n into body's ticket number, in place.
func stamp(body []byte, n uint64) {
	i := bytes.Index(body, []byte("Ticket #"))
	if i < 0 || i+7+len(ticketMark) > len(body) {
		return
	}
	d := body[i+7+1 : i+7+len(ticketMark)]
	for j := len(d) - 1; j >= 0; j-- {
		d[j] = byte('0' + n%10)
		n /= 10
	}
}

// validate reports what is wrong with an answer: anything but a complete 200 answer
// carrying the fake engine's text and usage is an error.
func validate(mode Mode, status int, body []byte) error {
	if status != fasthttp.StatusOK {
		if len(body) > 200 {
			body = body[:200]
		}
		return fmt.Errorf("status %d: %s", status, body)
	}
	switch {
	case mode == NonStream && !bytes.Contains(body, []byte(`"content":"`+answerText+`"`)):
		return errors.New("answer without the expected content")
	case mode == Stream && !bytes.Contains(body, []byte(lastDelta)):
		return errors.New("stream without the expected last delta")
	case !bytes.Contains(body, []byte(`"usage":{`)):
		return errors.New("answer without usage")
	case mode == Stream && !bytes.HasSuffix(body, []byte(sseDone)):
		return errors.New("stream does not end with data: [DONE]")
	}
	return nil
}

// loadTarget is one thing the generator drives, with a client per mode. Connections
// persist across segments.
type loadTarget struct {
	name    string
	url     string
	clients map[Mode]*fasthttp.HostClient
}

func newLoadTarget(name, addr string, conns int) *loadTarget {
	t := &loadTarget{name: name, url: "http://" + addr + "/v1/chat/completions", clients: map[Mode]*fasthttp.HostClient{}}
	for _, m := range []Mode{NonStream, Stream} {
		t.clients[m] = &fasthttp.HostClient{
			Addr:                addr,
			MaxConns:            conns,
			MaxIdleConnDuration: 5 * time.Minute,
			ReadTimeout:         10 * time.Second,
			WriteTimeout:        10 * time.Second,
			StreamResponseBody:  m == Stream,
		}
	}
	return t
}

func (t *loadTarget) close() {
	for _, c := range t.clients {
		c.CloseIdleConnections()
	}
}

// generator is an open-loop load generator: request i is due at start + i/rate whether
// or not earlier ones have been answered, and its latency runs from that due time. Each
// worker takes the next due time, sleeps until it (pacer), sends and reads the answer;
// when every worker is busy the next request is late, and the lateness is measured.
type generator struct {
	workers []*worker
	seq     atomic.Uint64 // requests sent, across segments: each gets its own ticket number
}

type worker struct {
	p    *pacer
	req  fasthttp.Request
	resp fasthttp.Response
	buf  []byte
}

func newGenerator(n int) (*generator, error) {
	g := &generator{}
	for range n {
		p, err := newPacer()
		if err != nil {
			g.close()
			return nil, err
		}
		g.workers = append(g.workers, &worker{p: p, buf: make([]byte, 0, 4096)})
	}
	return g, nil
}

func (g *generator) close() {
	for _, w := range g.workers {
		_ = w.p.close()
	}
}

// segment is the outcome of one timed run against one target.
type segment struct {
	lat      []int64 // ns from due time to the whole answer read; -1: failed
	ttfb     []int64 // ns from due time to the response headers (streams)
	errs     int
	firstErr error
	elapsed  time.Duration
}

// run sends rate requests a second for d to t, in mode.
func (g *generator) run(ctx context.Context, t *loadTarget, mode Mode, body []byte, rate int, d time.Duration) (*segment, error) {
	n := int(float64(rate) * d.Seconds())
	if n < 1 {
		n = 1
	}
	interval := float64(time.Second) / float64(rate)
	seg := &segment{lat: make([]int64, n)}
	if mode == Stream {
		seg.ttfb = make([]int64, n)
	}
	hc := t.clients[mode]
	var (
		next   atomic.Int64
		wg     sync.WaitGroup
		mu     sync.Mutex
		runErr error
	)
	start := time.Now().Add(time.Millisecond)
	workers := g.workers
	if len(workers) > n {
		workers = workers[:n]
	}
	for _, w := range workers {
		w.req.Reset()
		w.req.SetRequestURI(t.url)
		w.req.Header.SetMethod(fasthttp.MethodPost)
		w.req.Header.SetContentType("application/json")
		w.req.SetBody(body)
		wg.Add(1)
		goLabeled("loadgen", func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				due := start.Add(time.Duration(float64(i) * interval))
				if err := w.p.wait(due); err != nil {
					mu.Lock()
					runErr = err
					mu.Unlock()
					return
				}
				stamp(w.req.Body(), g.seq.Add(1))
				lat, ttfb, err := w.do(hc, mode, due)
				if err != nil {
					lat = -1
					mu.Lock()
					seg.errs++
					if seg.firstErr == nil {
						seg.firstErr = err
					}
					mu.Unlock()
				}
				seg.lat[i] = lat
				if seg.ttfb != nil {
					seg.ttfb[i] = ttfb
				}
			}
		})
	}
	wg.Wait()
	seg.elapsed = time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if runErr != nil {
		return nil, fmt.Errorf("bench: pacing: %w", runErr)
	}
	return seg, nil
}

// do sends one request and reads the whole answer; it returns the latency and the time
// to the response headers, both from due.
func (w *worker) do(hc *fasthttp.HostClient, mode Mode, due time.Time) (lat, ttfb int64, err error) {
	if err := hc.Do(&w.req, &w.resp); err != nil {
		return 0, 0, err
	}
	ttfb = int64(time.Since(due)) // the status line and headers are in
	body := w.resp.Body()
	if bs := w.resp.BodyStream(); bs != nil {
		w.buf = w.buf[:0]
		for {
			if len(w.buf) == cap(w.buf) {
				w.buf = append(w.buf, 0)[:len(w.buf)]
			}
			n, rerr := bs.Read(w.buf[len(w.buf):cap(w.buf)])
			w.buf = w.buf[:len(w.buf)+n]
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				_ = w.resp.CloseBodyStream()
				return 0, 0, rerr
			}
		}
		if err := w.resp.CloseBodyStream(); err != nil {
			return 0, 0, err
		}
		body = w.buf
	}
	lat = int64(time.Since(due))
	return lat, ttfb, validate(mode, w.resp.StatusCode(), body)
}

// errString shortens an error for a report.
func errString(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// formatDuration prints ns as µs or ms with three significant figures.
func formatDuration(ns float64) string {
	switch {
	case ns < 0:
		return "-" + formatDuration(-ns)
	case ns < 1e6:
		return strconv.FormatFloat(ns/1e3, 'f', 0, 64) + "µs"
	case ns < 1e9:
		return strconv.FormatFloat(ns/1e6, 'f', 2, 64) + "ms"
	}
	return strconv.FormatFloat(ns/1e9, 'f', 2, 64) + "s"
}
