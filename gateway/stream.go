package gateway

import (
	"context"
	"io"
	"time"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fasthttp"
)

// stream answers with server-sent events. The body is produced by sseBody, a reader that
// fasthttp pulls from on the connection's own goroutine: no extra goroutine per stream.
// When the client goes away, fasthttp's write fails and it closes the reader, which
// cancels the request's context and closes the engine stream at once.
func (s *Server) stream(ctx *fasthttp.RequestCtx, rctx context.Context, cancel context.CancelFunc,
	endpoint string, t models.Target, r *models.Request, st models.Stream) {
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	b := &sseBody{s: s, st: st, r: r, t: t, cancel: cancel, endpoint: endpoint,
		a: answer{id: idPrefix(r.Kind) + r.ID, model: t.Model, created: r.Arrived.Unix(), kind: r.Kind}}
	b.bp = s.getBuf()
	var tmp [128]byte
	b.model = append(b.model, jsonx.AppendString(tmp[:0], t.Model)...)
	_ = rctx
	ctx.SetBodyStream(b, -1)
}

type sseBody struct {
	s        *Server
	st       models.Stream
	r        *models.Request
	t        models.Target
	a        answer
	cancel   context.CancelFunc
	endpoint string
	model    []byte // JSON string of the client's model name

	bp        *[]byte
	off       int
	done      bool
	closed    bool
	sawUsage  bool
	firstTok  time.Duration
	err       error
	scratch   []byte
	finished  bool
	gotTokens bool
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
			if !b.r.IncludeUsage {
				return
			}
			b.sawUsage = true
			b.spliced(c.Raw)
		case models.FormatOpenAIChunk, models.FormatOpenAIFull:
			if c.Usage != nil {
				b.sawUsage = true
			}
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
	if b.r.IncludeUsage && !b.sawUsage {
		b.scratch = b.a.appendUsageChunk(b.scratch[:0], b.st.Usage())
		b.event(b.scratch)
	}
	if err != nil {
		b.scratch = appendErrorJSON(b.scratch[:0], err)
		b.event(b.scratch)
		b.s.m.streamErr.WithLabelValues(b.t.Model, "engine_error").Inc()
		return
	}
	b.event([]byte("[DONE]"))
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
	b.cancel()
	u := b.st.Usage()
	_ = b.st.Close()
	b.s.finish(b.endpoint, b.t, b.r, u, b.err, b.firstTok)
	b.s.m.requests.WithLabelValues(b.endpoint, b.t.Model, code).Inc()
	b.s.m.inflight.Dec()
	b.s.putBuf(b.bp)
	b.bp = nil
	return nil
}

var _ io.ReadCloser = (*sseBody)(nil)
