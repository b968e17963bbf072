package models

// Usage counts the tokens of one request.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	CachedTokens     int // prompt tokens served from the engine's prefix cache
	// Estimated is true when sluice counted the tokens itself because the engine did not
	// report them (or the stream was cut short).
	Estimated bool
	Cost      Cost
}

// Cost is what a request cost, in US dollars.
type Cost struct {
	Prompt     float64 // hardware time until the first token (prefill)
	Completion float64 // hardware time after it (decode)
	// Reference is what the same tokens would cost on ReferenceModel at list prices.
	Reference      float64
	ReferenceModel string
	// Unpriced: the target has no price (a remote engine nobody priced): the cost is
	// unknown, which is not the same as zero.
	Unpriced bool
	// Avoided is set on an answer served from the answer cache: the hardware cost of
	// producing it when it was first asked (what serving it again would have cost). The
	// answer itself costs nothing (Prompt and Completion are 0).
	Avoided float64
}

// Total is the request's own cost.
func (c Cost) Total() float64 { return c.Prompt + c.Completion }

// CostMeter accounts an engine's cost to the requests it serves (cost.Meter).
type CostMeter interface {
	Begin() CostJob
}

// CostJob is one request's account on a CostMeter.
type CostJob interface {
	FirstToken()                       // the prompt phase ends
	End() (prompt, completion float64) // dollars; idempotent
}

// Total is prompt plus completion tokens.
func (u Usage) Total() int { return u.PromptTokens + u.CompletionTokens }

// Format says what shape Chunk.Raw has.
type Format uint8

// Raw formats.
const (
	FormatNone        Format = iota // Raw is empty: use the structured fields
	FormatOpenAIChunk               // a chat.completion.chunk or text_completion chunk (stream)
	FormatOpenAIFull                // a whole chat.completion / text_completion / embeddings list
	FormatOpenAIUsage               // a usage-only chunk (empty choices)
)

// Chunk is one piece of an engine's answer. Backends that speak OpenAI set Raw to the
// engine's JSON so the gateway can forward it with only the model name changed; every
// backend also fills the structured fields, which caches, ledgers and other wire formats
// read.
type Chunk struct {
	Raw    []byte
	Format Format

	Role         string
	Text         string // content delta (stream) or whole content (non-stream)
	ToolCalls    []byte // raw JSON array of tool calls (deltas when streaming)
	FinishReason string
	Usage        *Usage // set on the chunk that carries usage

	// Embeddings of an embeddings request, one per input.
	Embeddings [][]float32
}

// Stream is an engine's answer in progress. Recv returns io.EOF after the last chunk.
// Close aborts an unfinished request and frees what it holds; it is idempotent and must
// always be called.
type Stream interface {
	Recv() (Chunk, error)
	// Usage is the usage so far: what the engine reported, or sluice's own count of the
	// prompt and of the text streamed so far (Estimated) when it reported nothing.
	Usage() Usage
	Close() error
}

// Waiter is a Stream that can wait until its next chunk may be ready without reading it.
// A caller holding a slow stream (an engine generating at tens of tokens a second)
// waits there between chunks: the wait runs at a shallow depth, so the goroutine's
// stack shrinks back while the engine works, where a Recv blocked deep in the chain of
// stages would keep it large. Stages that wrap a stream pass WaitReady on.
type Waiter interface {
	// WaitReady returns when a Recv may find its chunk without waiting long. It may
	// return early (Recv then waits as usual); a failure is left for Recv to report.
	WaitReady()
}

// WaitReady waits on st when it is a Waiter, and returns at once otherwise.
func WaitReady(st Stream) {
	if w, ok := st.(Waiter); ok {
		w.WaitReady()
	}
}

// Buffered is a Stream that can tell, without blocking, that its next chunk is at hand:
// already received from the engine (in sluice's buffers, or read into them from the
// connection's without waiting), so that Recv returns it without waiting. The gateway
// writes the events at hand to the client together, one write (and one system call)
// for several, where an engine's events arrive faster than they are written one by
// one. Stages that wrap a stream pass Buffered on.
type Buffered interface {
	// Buffered reports whether Recv would return at once. It must not wait (it may move
	// bytes already received between buffers), and it answers false when it cannot be
	// sure.
	Buffered() bool
}

// AtHand reports whether st is Buffered and has its next chunk at hand.
func AtHand(st Stream) bool {
	b, ok := st.(Buffered)
	return ok && b.Buffered()
}

// TokenCounter counts tokens of text, for usage estimates.
type TokenCounter interface {
	CountTokens(text string) int
}
