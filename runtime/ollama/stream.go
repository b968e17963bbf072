package ollama

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/openai"
	"github.com/sluice-llm/sluice/runtime/upstream"
)

// stream is one request in flight. A producer goroutine runs the client's call and
// sends chunks over ch, blocking while the buffer is full (a slow reader slows the
// call down; it never loses a chunk). The producer sets err and closes ch when the call
// ends, then closes done. Recv, Usage and Close are for the reader; Close may also be
// called from another goroutine to abort a Recv.
type stream struct {
	b      *Backend
	r      *models.Request
	cancel context.CancelFunc
	ch     chan models.Chunk
	done   chan struct{}
	err    error // the producer's outcome; read only after ch is closed

	// Reader state.
	peek      *models.Chunk // the chunk Open waited for
	eof       bool
	closed    atomic.Bool
	text      strings.Builder // text received so far, for estimates
	usage     models.Usage
	haveUsage bool
}

var _ models.Stream = (*stream)(nil)

// start runs call in a new goroutine.
func (b *Backend) start(ctx context.Context, r *models.Request, call func(ctx context.Context, p *producer) error) *stream {
	var cancel context.CancelFunc
	if r.Deadline.IsZero() {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithDeadline(ctx, r.Deadline) // the request's timeout
	}
	rec := &bodyErr{}
	ctx = context.WithValue(ctx, bodyErrKey{}, rec)
	s := &stream{b: b, r: r, cancel: cancel, ch: make(chan models.Chunk, b.chunkBuffer), done: make(chan struct{})}
	p := &producer{b: b, r: r, ch: s.ch}
	b.inFlight.Add(1)
	go func() {
		defer close(s.done)
		err := call(ctx, p)
		s.err = p.finish(ctx, err, rec.get())
		b.inFlight.Add(-1)
		close(s.ch)
	}()
	return s
}

// first waits for the first chunk, or for the error that ended the call before any.
func (s *stream) first() error {
	c, ok := <-s.ch
	if !ok {
		s.eof = true
		return s.err
	}
	s.peek = &c
	return nil
}

// WaitReady receives the next chunk ahead of Recv (models.Waiter): the caller waits on
// the producer's channel, at its own depth.
func (s *stream) WaitReady() {
	if s.peek != nil || s.eof || s.closed.Load() {
		return
	}
	if c, ok := <-s.ch; ok {
		s.peek = &c
	}
}

// Buffered reports whether the next chunk is already received (models.Buffered).
func (s *stream) Buffered() bool {
	return !s.eof && !s.closed.Load() && (s.peek != nil || len(s.ch) > 0)
}

func (s *stream) Recv() (models.Chunk, error) {
	if s.eof || s.closed.Load() {
		return models.Chunk{}, io.EOF
	}
	var c models.Chunk
	if s.peek != nil {
		c, s.peek = *s.peek, nil
	} else {
		var ok bool
		c, ok = <-s.ch
		if !ok || s.closed.Load() {
			s.eof = true
			if ok || s.err == nil {
				return models.Chunk{}, io.EOF
			}
			return models.Chunk{}, s.err
		}
	}
	s.text.WriteString(c.Text)
	if c.Usage != nil {
		s.usage, s.haveUsage = *c.Usage, true
	}
	return c, nil
}

// Usage is what the engine reported, or an estimate of the prompt and of the text
// received so far.
func (s *stream) Usage() models.Usage {
	if s.haveUsage {
		return s.usage
	}
	return openai.EstimateUsage(s.b.opts.Counter, s.r, s.text.String())
}

// Close cancels the call if it is still running and waits for its goroutine to end.
func (s *stream) Close() error {
	if !s.closed.Swap(true) {
		s.cancel()
	}
	<-s.done
	return nil
}

// producer turns the client's callbacks into chunks. It lives on the producer
// goroutine only.
type producer struct {
	b  *Backend
	r  *models.Request
	ch chan<- models.Chunk

	sent     bool            // a chunk went out
	text     strings.Builder // all text, for estimates and non-streamed answers
	calls    []api.ToolCall  // tool calls of a non-streamed answer
	tools    int             // tool calls so far
	last     models.Chunk    // finish reason and usage of a non-streamed answer
	produced bool            // text or tool calls arrived
	done     bool            // done:true arrived
}

// send hands c to the reader, setting the role on the first chunk of a chat answer.
// It fails only when ctx ends.
func (p *producer) send(ctx context.Context, c models.Chunk) error {
	if !p.sent && p.r.Kind == models.KindChat {
		c.Role = "assistant"
	}
	select {
	case p.ch <- c:
		p.sent = true
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// add takes one response of /api/chat or /api/generate. A streamed answer goes out as
// it comes; a non-streamed one is gathered and sent by finish.
func (p *producer) add(ctx context.Context, text string, calls []api.ToolCall, done bool, reason string, m api.Metrics) error {
	p.text.WriteString(text)
	if text != "" || len(calls) > 0 {
		p.produced = true
	}
	c := models.Chunk{Text: text}
	if len(calls) > 0 {
		if p.r.Stream {
			c.ToolCalls = appendToolCalls(nil, calls, p.tools, newCallID)
		} else {
			p.calls = append(p.calls, calls...)
		}
		p.tools += len(calls)
	}
	if done {
		p.done = true
		c.FinishReason = p.finishReason(reason)
		c.Usage = &models.Usage{PromptTokens: m.PromptEvalCount, CompletionTokens: m.EvalCount}
	}
	if !p.r.Stream {
		p.last = c
		return nil
	}
	if c.Text == "" && len(c.ToolCalls) == 0 && !done {
		return nil // a keep-alive, or thinking text that sluice does not forward
	}
	return p.send(ctx, c)
}

func (p *producer) finishReason(reason string) string {
	switch {
	case p.tools > 0:
		return "tool_calls"
	case reason == "length":
		return "length"
	}
	return "stop"
}

// embeddings sends the one chunk of an embeddings answer.
func (p *producer) embeddings(ctx context.Context, vecs [][]float32, promptTokens int) error {
	u := models.Usage{PromptTokens: promptTokens}
	if promptTokens == 0 {
		u = openai.EstimateUsage(p.b.opts.Counter, p.r, "")
	}
	p.done, p.produced = true, true
	return p.send(ctx, models.Chunk{Embeddings: vecs, Usage: &u})
}

// finish decides how the answer ends once the call has returned err; readErr is the
// first error reading the response body, if any. It may send the last chunk and
// returns what Recv reports after the last chunk (nil: io.EOF).
func (p *producer) finish(ctx context.Context, err, readErr error) error {
	b := p.b
	if err == nil && p.done && (p.r.Stream || p.r.Kind == models.KindEmbedding) {
		return nil // the last chunk went out already
	}
	switch {
	case ctx.Err() != nil:
		return b.mapError(ctx, ctx.Err())
	case err != nil:
		return b.mapError(ctx, err)
	case !p.done && readErr != nil:
		// The client stops at a read error and reports success: the connection broke.
		b.setHealth(false, "connection lost: "+upstream.Cause(readErr), false)
		return &models.Error{Kind: models.ErrUnavailable, Code: "engine_unavailable", RetryAfter: time.Second,
			Msg: fmt.Sprintf("ollama backend %q: connection to the engine broke mid-answer (%s)", b.opts.Name, upstream.Cause(readErr)), Err: readErr}
	case !p.done && !p.produced:
		return &models.Error{Kind: models.ErrUpstream, Code: "engine_stream_ended",
			Msg: fmt.Sprintf("ollama backend %q: engine ended the answer without output", b.opts.Name)}
	}
	var last models.Chunk
	if !p.r.Stream {
		last = models.Chunk{Text: p.text.String(), FinishReason: p.last.FinishReason, Usage: p.last.Usage}
		if len(p.calls) > 0 {
			last.ToolCalls = appendToolCalls(nil, p.calls, 0, newCallID)
		}
	}
	if !p.done {
		// Ollama aborts a generation that repeats itself and closes the stream without
		// done:true. Finish it as a stop, with counted usage.
		last.FinishReason = p.finishReason("stop")
		u := openai.EstimateUsage(b.opts.Counter, p.r, p.text.String())
		last.Usage = &u
	}
	if err := p.send(ctx, last); err != nil {
		return b.mapError(ctx, err)
	}
	return nil
}

// newCallID returns an OpenAI-style id for a tool call the engine did not name.
func newCallID() string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [12]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return "call_" + string(b[:])
}
