package overflow

import (
	"context"
	"io"
	"sync"

	"github.com/sluice-llm/sluice/models"
)

// fakeStream yields chunks, then err (io.EOF when nil).
type fakeStream struct {
	chunks []models.Chunk
	err    error
	usage  models.Usage
	target models.Target
	i      int
	closed bool
	onEnd  func()
}

func (f *fakeStream) Recv() (models.Chunk, error) {
	if f.i < len(f.chunks) {
		f.i++
		return f.chunks[f.i-1], nil
	}
	if f.err != nil {
		return models.Chunk{}, f.err
	}
	return models.Chunk{}, io.EOF
}

func (f *fakeStream) Usage() models.Usage   { return f.usage }
func (f *fakeStream) Target() models.Target { return f.target }
func (f *fakeStream) Close() error {
	if !f.closed && f.onEnd != nil {
		f.onEnd()
	}
	f.closed = true
	return nil
}

func text(s string) models.Chunk {
	return models.Chunk{Text: s, Format: models.FormatOpenAIChunk, Raw: []byte(`{}`)}
}

// fakeOpener answers each Open with the next behaviour in its script (repeating the
// last), and records the targets it was opened with.
type fakeOpener struct {
	mu     sync.Mutex
	name   string
	script []func(t models.Target) (models.Stream, error)
	calls  []models.Target
	open   int // streams not yet closed
}

func (f *fakeOpener) Open(_ context.Context, t models.Target, _ *models.Request) (models.Stream, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, t)
	i := min(len(f.calls)-1, len(f.script)-1)
	st, err := f.script[i](t)
	if fs, ok := st.(*fakeStream); ok && err == nil {
		f.open++
		fs.onEnd = func() { f.mu.Lock(); f.open--; f.mu.Unlock() }
	}
	return st, err
}

func (f *fakeOpener) n() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func ok(words ...string) func(models.Target) (models.Stream, error) {
	return func(t models.Target) (models.Stream, error) {
		fs := &fakeStream{usage: models.Usage{PromptTokens: 1000, CompletionTokens: 100}, target: t}
		fs.chunks = append(fs.chunks, models.Chunk{Role: "assistant", Format: models.FormatOpenAIChunk, Raw: []byte(`{"role"}`)})
		for _, w := range words {
			fs.chunks = append(fs.chunks, text(w))
		}
		fs.chunks = append(fs.chunks, models.Chunk{FinishReason: "stop"})
		if t.Backend == "" && len(t.Candidates) > 0 {
			fs.target.Backend = t.Candidates[0].Backend
		}
		return fs, nil
	}
}

func fail(err error) func(models.Target) (models.Stream, error) {
	return func(models.Target) (models.Stream, error) { return nil, err }
}

// failAfter opens, then fails after n text chunks.
func failAfter(n int, err error) func(models.Target) (models.Stream, error) {
	return func(t models.Target) (models.Stream, error) {
		fs := &fakeStream{err: err, target: t, usage: models.Usage{PromptTokens: 1000, Cost: models.Cost{Prompt: 0.001}}}
		fs.chunks = append(fs.chunks, models.Chunk{Role: "assistant"})
		for i := 0; i < n; i++ {
			fs.chunks = append(fs.chunks, text("w"))
		}
		return fs, nil
	}
}
