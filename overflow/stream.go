package overflow

import (
	"errors"
	"io"

	"github.com/sluice-llm/sluice/models"
)

// peekChunks bounds how many chunks without a token (a role-only delta, keep-alive
// metadata) are read ahead before Open returns.
const peekChunks = 4

// routed is the stream Open returns: the target's own stream, with the chunks read
// ahead replayed first, remote usage priced per token, the cost of failed attempts
// added, and the remote engine's slot and breaker settled on Close.
type routed struct {
	models.Stream
	s        *Stage
	t        models.Target
	p        *provider // nil: local, through the scheduler
	model    string    // catalog name (prices)
	failed   models.Cost
	overflow string
	cancel   func() // ends the context a bounded local attempt was opened with

	buf      [peekChunks]models.Chunk
	n, pos   int
	eof      bool
	midError bool
	closed   bool
}

var _ models.Stream = (*routed)(nil)

// peek reads up to the first chunk that carries a token (or a finish, usage, or a whole
// answer). Chunks before it are copied: the engine may reuse their buffers.
func (x *routed) peek() error {
	for x.n < len(x.buf) {
		c, err := x.Stream.Recv()
		if errors.Is(err, io.EOF) {
			x.eof = true
			return nil
		}
		if err != nil {
			return err
		}
		if !substantive(&c) && x.n < len(x.buf)-1 {
			c.Raw = append([]byte(nil), c.Raw...)
			x.buf[x.n] = c
			x.n++
			continue
		}
		x.buf[x.n] = c
		x.n++
		return nil
	}
	return nil
}

func substantive(c *models.Chunk) bool {
	return c.Text != "" || len(c.ToolCalls) > 0 || c.FinishReason != "" || c.Usage != nil ||
		c.Embeddings != nil || c.Format == models.FormatOpenAIFull || c.Format == models.FormatOpenAIUsage
}

// WaitReady passes the wait on to the target's stream unless chunks are held back
// (models.Waiter).
func (x *routed) WaitReady() {
	if x.pos >= x.n && !x.eof {
		models.WaitReady(x.Stream)
	}
}

// Buffered reports a chunk held back, or asks the target's stream (models.Buffered).
func (x *routed) Buffered() bool {
	if x.pos < x.n {
		return true
	}
	return !x.eof && models.AtHand(x.Stream)
}

func (x *routed) Recv() (models.Chunk, error) {
	if x.pos < x.n {
		c := x.buf[x.pos]
		x.buf[x.pos] = models.Chunk{}
		x.pos++
		return c, nil
	}
	if x.eof {
		return models.Chunk{}, io.EOF
	}
	c, err := x.Stream.Recv()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, models.ErrCanceled) {
		x.midError = true
	}
	return c, err
}

// priced adds the remote engine's list price to u (local streams carry their
// hardware cost already).
func (x *routed) priced(u models.Usage) models.Usage {
	if x.p != nil {
		u.Cost.Prompt, u.Cost.Completion = x.p.prices[x.model].Of(u.PromptTokens, u.CompletionTokens)
	}
	return u
}

// Usage is the target's usage, priced, plus what failed attempts before it cost.
func (x *routed) Usage() models.Usage {
	u := x.priced(x.Stream.Usage())
	u.Cost.Prompt += x.failed.Prompt
	u.Cost.Completion += x.failed.Completion
	return u
}

// Target is where the request went: the scheduler's choice for local candidates.
func (x *routed) Target() models.Target {
	if x.p == nil {
		if ts, ok := x.Stream.(targeter); ok {
			t := ts.Target()
			t.Model, t.Tier, t.Region = x.t.Model, x.t.Tier, x.t.Region
			return t
		}
	}
	return x.t
}

func (x *routed) Close() error {
	if x.closed {
		return nil
	}
	x.closed = true
	err := x.Stream.Close()
	if x.cancel != nil {
		x.cancel()
	}
	if x.p != nil {
		x.p.release()
		if x.midError {
			x.p.br.failure(x.s.opts.Now())
		}
	}
	if x.overflow != "" {
		x.s.m.overflowCost.WithLabelValues(x.overflow, x.p.id).Add(x.Usage().Cost.Total())
	}
	return err
}
