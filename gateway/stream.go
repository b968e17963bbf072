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

// stream answers with server-sent events. The body is produced by sseBody, a reader that
// fasthttp pulls from on the connection's own goroutine: no extra goroutine per stream.
// When the client goes away, fasthttp's write fails and it closes the reader, which
// closes the engine stream (and its connection) at once.
func (s *Server) stream(ctx *fasthttp.RequestCtx, endpoint string, t models.Target, r *models.Request, st models.Stream, rc reqCtx) {
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	// The cost is known only at the end: it follows the body as an HTTP trailer.
	_ = ctx.Response.Header.SetTrailer("X-Sluice-Cost-USD")
	b := &sseBody{s: s, st: st, r: r, t: t, endpoint: endpoint, hdr: &ctx.Response.Header, rc: rc,
		a: answer{id: idPrefix(r.Kind) + r.ID, model: t.Model, created: r.Arrived.Unix(), kind: r.Kind}}
	b.bp = s.getBuf()
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
func (w *writeDeadline) extend(timeout time.Duration) {
	if w.conn == nil {
		return
	}
	if now := time.Now(); now.Sub(w.extended) > timeout/4 {
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

	bp        *[]byte
	off       int
	done      bool
	closed    bool
	firstTok  time.Duration
	err       error
	scratch   []byte
	finished  bool
	gotTokens bool

	wd      writeDeadline // moved on as the stream is written
	onClose func()        // run once by Close (the large-body gate's release)
	rc      reqCtx        // watched until Close: a hang-up cancels the engine call
}

func (b *sseBody) Read(p []byte) (int, error) {
	for b.off >= len(*b.bp) {
		if b.done {
			return 0, io.EOF
		}
		*b.bp = (*b.bp)[:0]
		b.off = 0
		b.fill()
	}
	n := copy(p, (*b.bp)[b.off:])
	b.off += n
	b.wd.extend(b.s.opts.Limits.WriteTimeout) // fasthttp writes what was just read
	return n, nil
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

// end writes the closing events: the usage chunk when the client asked for it and the
// engine did not send one, then [DONE], or an error event when the engine failed.
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
	b.s.putBuf(b.bp)
	b.bp = nil
	return nil
}

var _ io.ReadCloser = (*sseBody)(nil)
