package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fasthttp"
)

// stream answers with server-sent events. The body is produced by sseBody, which fasthttp
// drives on the connection's own goroutine (through WriteTo; Read is the same stream as
// an io.Reader): no extra goroutine per stream. When the client goes away, fasthttp's
// write fails and it closes the body, which closes the engine stream (and its
// connection) at once.
func (s *Server) stream(ctx *fasthttp.RequestCtx, endpoint string, t models.Target, r *models.Request, st models.Stream, rc reqCtx) {
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	// The cost is known only at the end: it follows the body as an HTTP trailer.
	_ = ctx.Response.Header.SetTrailer("X-Sluice-Cost-USD")
	b := &sseBody{s: s, st: st, r: r, t: t, endpoint: endpoint, hdr: &ctx.Response.Header, rc: rc,
		a: answer{id: idPrefix(r.Kind) + r.ID, model: t.Model, created: r.Arrived.Unix(), kind: r.Kind}}
	b.bp, b.pool = s.evbufs.get(), &s.evbufs
	var tmp [128]byte
	b.model = append(b.model, jsonx.AppendString(tmp[:0], t.Model)...)
	b.wd.arm(ctx, s.opts.Limits.WriteTimeout)
	ctx.SetBodyStream(b, -1)
}

// writeDeadline gives each write of a streamed answer WriteTimeout to progress (a
// client that stops reading is dropped, which closes the engine stream and frees its
// slot); the deadline moves on as the stream does, so a long answer is not cut.
type writeDeadline struct {
	conn     net.Conn  // the client's
	extended time.Time // when the deadline last moved
}

// arm sets the first deadline (through ctx, so that fasthttp clears it after the
// answer).
func (w *writeDeadline) arm(ctx *fasthttp.RequestCtx, timeout time.Duration) {
	if c := ctx.Conn(); c != nil && ctx.SetWriteDeadline(time.Now().Add(timeout)) == nil {
		w.conn, w.extended = c, time.Now()
	}
}

// extend gives the write about to happen a fresh deadline, moving it at most every
// quarter of the timeout (each move costs timer work).
func (w *writeDeadline) extend(now time.Time, timeout time.Duration) {
	if w.conn == nil {
		return
	}
	if now.Sub(w.extended) > timeout/4 {
		_ = w.conn.SetWriteDeadline(now.Add(timeout))
		w.extended = now
	}
}

// streamErrReason labels a stream that ended with err.
func streamErrReason(err error) string {
	if errors.Is(err, models.ErrCanceled) {
		return "client_disconnect" // the client hung up (hangups cancelled the engine call)
	}
	return "engine_error"
}

type sseBody struct {
	s        *Server
	st       models.Stream
	r        *models.Request
	t        models.Target
	a        answer
	endpoint string
	model    []byte // JSON string of the client's model name
	hdr      *fasthttp.ResponseHeader
	usage    models.Usage
	ended    bool // the engine stream is closed and the request recorded
	idSet    bool // a.id holds the engine's chunk id

	events
	closed    bool
	firstTok  time.Duration
	err       error
	scratch   []byte
	finished  bool
	gotTokens bool

	onClose func() // run once by Close (the large-body gate's release)
	rc      reqCtx // watched until Close: a hang-up cancels the engine call
}

func (b *sseBody) Read(p []byte) (int, error) {
	return b.read(p, b.fill, b.s.opts.Limits.WriteTimeout)
}

// WriteTo writes the events to w as they come (see events.writeTo).
func (b *sseBody) WriteTo(w io.Writer) (int64, error) {
	return b.writeTo(w, b.fill, b.st, b.s.opts.Limits.WriteTimeout)
}

// SupportsBodyWriteTo tells fasthttp that WriteTo writes what Read would return.
func (b *sseBody) SupportsBodyWriteTo() bool { return true }

// events is what the streamed bodies (sseBody, anthropicBody) share: the events not
// yet written and the write deadline, moved on as they are written.
type events struct {
	bp   *[]byte
	pool *bufPool // where bp goes while a slow stream waits (nil: it stays)
	off  int
	done bool          // the last events are in bp
	wd   writeDeadline // moved on as the stream is written
	last time.Time     // when events were last written (writeTo)
}

// read is io.Reader over the events fill appends to bp.
func (e *events) read(p []byte, fill func(), timeout time.Duration) (int, error) {
	for e.off >= len(*e.bp) {
		if e.done {
			return 0, io.EOF
		}
		*e.bp = (*e.bp)[:0]
		e.off = 0
		fill()
	}
	n := copy(p, (*e.bp)[e.off:])
	e.off += n
	e.wd.extend(time.Now(), timeout) // fasthttp writes what was just read
	return n, nil
}

// slowGap: events that come further apart than this are from an engine generating at
// its own pace (a real model, not a replay), and the stream is waited on between them
// with models.WaitReady.
const slowGap = 2 * time.Millisecond

// coalesceBytes bounds the events written together: those at hand (models.AtHand) are
// appended while the buffer holds less than this.
const coalesceBytes = 2 << 10

// writeTo writes the events fill appends to bp: fasthttp frames each Write as one chunk
// and flushes it, with no copy buffer of its own held for the stream's life
// (fasthttp.BodyWriterTo). Events the engine has already sent (models.AtHand: read
// and buffered, as when it writes faster than the client is written to) go in the
// same Write, up to coalesceBytes: one system call for several, and never a wait for
// an event not yet sent. Between the events of a slow stream it
// waits for the engine with models.WaitReady at this shallow depth rather than deep in
// the stages' Recv: the goroutine's stack then shrinks back (to 8 KiB from 16 or 32
// with the chain's frames) while the engine works, which is most of a slow stream's
// life. That costs a peek at the engine's connection per event, next to gaps of
// milliseconds.
func (e *events) writeTo(w io.Writer, fill func(), st models.Stream, timeout time.Duration) (int64, error) {
	var total int64
	slow := false
	for {
		if e.off < len(*e.bp) {
			now := time.Now()
			slow = !e.last.IsZero() && now.Sub(e.last) > slowGap
			e.last = now
			e.wd.extend(now, timeout)
			n, err := w.Write((*e.bp)[e.off:])
			total += int64(n)
			e.off += n
			if err != nil {
				return total, err
			}
		}
		if e.done {
			return total, nil
		}
		*e.bp = (*e.bp)[:0]
		e.off = 0
		if slow {
			// The buffer is empty: it goes back to the pool while the engine works
			// (unless large events grew it past what the pool keeps: it stays then).
			if e.pool != nil && cap(*e.bp) <= e.pool.max {
				e.pool.put(e.bp)
				e.bp = nil
			}
			models.WaitReady(st)
			if e.bp == nil {
				e.bp = e.pool.get()
			}
		}
		fill()
		for !e.done && len(*e.bp) < coalesceBytes && models.AtHand(st) {
			fill()
		}
	}
}

func (b *sseBody) event(data []byte) {
	buf := append(*b.bp, "data: "...)
	buf = append(buf, data...)
	*b.bp = append(buf, '\n', '\n')
}

// fill appends the next event(s) to the buffer.
func (b *sseBody) fill() {
	c, err := b.st.Recv()
	switch {
	case err == nil:
		if b.firstTok == 0 && (c.Text != "" || len(c.ToolCalls) > 0) {
			b.firstTok = time.Since(b.r.Arrived)
		}
		switch c.Format {
		case models.FormatOpenAIUsage:
			// sluice writes its own usage chunk at the end (with the cost).
			return
		case models.FormatOpenAIChunk, models.FormatOpenAIFull:
			b.spliced(c.Raw)
		default:
			b.scratch = b.a.appendChunk(b.scratch[:0], &c)
			b.event(b.scratch)
		}
	case err == io.EOF:
		b.end(nil)
	default:
		b.end(err)
	}
}

func (b *sseBody) spliced(raw []byte) {
	if !b.idSet {
		// Chunks sluice writes itself (the usage chunk) carry the engine's id: clients
		// (the SDKs' accumulators) drop chunks of another id.
		b.idSet = true
		if s, e, ok := jsonx.Find(raw, "id"); ok && e-s > 2 && raw[s] == '"' && bytes.IndexByte(raw[s+1:e-1], '\\') < 0 {
			b.a.id = string(raw[s+1 : e-1])
		}
	}
	out, err := jsonx.Set(b.scratch[:0], raw, "model", b.model)
	if err != nil {
		out = append(b.scratch[:0], raw...)
	}
	b.scratch = out
	b.event(out)
}

// end writes the closing events: sluice's usage chunk (with the cost) when the client
// asked for usage (the engine's own usage chunk is never forwarded), then [DONE], or an
// error event when the engine failed.
func (b *sseBody) end(err error) {
	b.done = true
	b.err = err
	b.closeEngine()
	if b.r.IncludeUsage {
		b.scratch = b.a.appendUsageChunk(b.scratch[:0], b.usage)
		b.event(b.scratch)
	}
	b.hdr.Set("X-Sluice-Cost-USD", strconv.FormatFloat(b.usage.Cost.Total(), 'f', 8, 64))
	if err != nil {
		b.scratch = appendErrorJSON(b.scratch[:0], err, b.r.ID)
		b.event(b.scratch)
		b.s.m.streamErr.WithLabelValues(b.t.Model, streamErrReason(err)).Inc()
		return
	}
	b.event([]byte("[DONE]"))
}

// closeEngine closes the engine stream (freeing its slot) and records the final usage,
// once.
func (b *sseBody) closeEngine() {
	if b.ended {
		return
	}
	b.ended = true
	_ = b.st.Close()
	b.usage = b.st.Usage()
	status := fasthttp.StatusOK
	switch {
	case !b.done:
		status = 499 // the client went away
	case b.err != nil:
		status, _, _ = statusOf(b.err)
	}
	b.s.record(b.r, b.t, &b.usage, status, b.firstTok)
}

// Close is called by fasthttp when the body is written or the client went away.
func (b *sseBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	code := "200"
	if !b.done {
		// The client disconnected mid-stream.
		b.err = &models.Error{Kind: models.ErrCanceled, Msg: "client disconnected"}
		b.s.m.streamErr.WithLabelValues(b.t.Model, "client_disconnect").Inc()
		code = "499"
	} else if b.err != nil {
		status, _, _ := statusOf(b.err)
		code = itoa(status)
	}
	b.closeEngine()
	b.rc.end()
	b.s.finish(b.endpoint, b.t, b.r, b.usage, b.err, b.firstTok)
	if code == "200" {
		b.s.m.series(b.endpoint, b.t.Model).ok.Inc()
	} else {
		b.s.m.requests.WithLabelValues(b.endpoint, b.t.Model, code).Inc()
	}
	b.s.m.inflight.Dec()
	b.s.active.Add(-1)
	if b.onClose != nil {
		b.onClose()
	}
	b.s.evbufs.put(b.bp)
	b.bp = nil
	return nil
}

var (
	_ io.ReadCloser         = (*sseBody)(nil)
	_ fasthttp.BodyWriterTo = (*sseBody)(nil)
	_ fasthttp.BodyWriterTo = (*anthropicBody)(nil)
)
