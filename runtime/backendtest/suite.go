package backendtest

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/models"
)

// Backend is what the suite drives (the scheduler's view of a backend).
type Backend interface {
	Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error)
	Capacity() models.Capacity
	Refresh(ctx context.Context) error
}

// Harness gives the suite a backend over a real engine.
type Harness struct {
	Backend Backend
	Chat    models.Target // a chat model
	Embed   models.Target // an embedding model (Backend: "" when the engine has none)
	// EmbedBackend serves Embed (llama-server needs a second process for embeddings).
	EmbedBackend Backend
	// Kill stops the engine for good (the last test uses it).
	Kill func()
	// InFlight reports requests the backend has open (nil: not checked).
	InFlight func() int
	// Dials counts connections opened to the engine (nil: keep-alive not checked).
	Dials func() int64
	// StreamsCloseConn: the engine closes the connection after a streamed answer
	// (llama-server), so only non-streamed requests reuse connections.
	StreamsCloseConn bool
	// Waiter: the backend's streams implement models.Waiter and models.Buffered.
	Waiter bool
}

func chatReq(stream bool, maxTokens int) *models.Request {
	return &models.Request{
		Kind: models.KindChat, Model: "m", Stream: stream, IncludeUsage: stream,
		Messages: []models.Message{{Role: "system", Content: "You are terse."}, {Role: "user", Content: "Write about the sea."}},
		Sampling: models.Sampling{MaxTokens: maxTokens},
	}
}

// drain reads a stream to the end and returns its text, finish reason and chunk count.
func drain(t *testing.T, st models.Stream) (text, finish string, n int) {
	t.Helper()
	for {
		c, err := st.Recv()
		if err == io.EOF {
			return text, finish, n
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		n++
		text += c.Text
		if c.FinishReason != "" {
			finish = c.FinishReason
		}
	}
}

// Run runs the suite. The harness's engine is killed by the last subtest.
func Run(t *testing.T, h Harness) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := h.Backend.Refresh(ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if c := h.Backend.Capacity(); !c.Healthy || c.Slots < 1 {
		t.Fatalf("capacity after refresh = %+v, want healthy with slots", c)
	}
	checkIdle := func(t *testing.T) {
		t.Helper()
		if h.InFlight == nil {
			return
		}
		if n := h.InFlight(); n != 0 {
			t.Fatalf("backend still has %d requests open", n)
		}
	}

	t.Run("chat", func(t *testing.T) {
		st, err := h.Backend.Open(ctx, h.Chat, chatReq(false, 16))
		if err != nil {
			t.Fatal(err)
		}
		text, finish, n := drain(t, st)
		u := st.Usage()
		st.Close()
		if n != 1 || strings.TrimSpace(text) == "" || finish == "" {
			t.Fatalf("non-stream: %d chunks, text %q, finish %q", n, text, finish)
		}
		if u.PromptTokens <= 0 || u.CompletionTokens <= 0 || u.CompletionTokens > 16 {
			t.Fatalf("usage = %+v", u)
		}
		checkIdle(t)
	})

	t.Run("chat stream", func(t *testing.T) {
		st, err := h.Backend.Open(ctx, h.Chat, chatReq(true, 24))
		if err != nil {
			t.Fatal(err)
		}
		text, finish, n := drain(t, st)
		u := st.Usage()
		st.Close()
		if n < 3 || strings.TrimSpace(text) == "" || finish == "" {
			t.Fatalf("stream: %d chunks, text %q, finish %q", n, text, finish)
		}
		if u.PromptTokens <= 0 || u.CompletionTokens <= 0 || u.CompletionTokens > 24 {
			t.Fatalf("usage = %+v", u)
		}
		if _, err := st.Recv(); err != io.EOF {
			t.Fatalf("Recv after close = %v, want EOF", err)
		}
		checkIdle(t)
	})

	t.Run("chat stream waited on", func(t *testing.T) {
		// A reader that asks whether the next chunk is at hand (models.AtHand) and waits
		// with models.WaitReady before Recv (as the gateway does between a slow stream's
		// events) gets the whole answer, and no wait hangs: not after the last event, not
		// with chunks already buffered (every other chunk is waited for even when at hand).
		st, err := h.Backend.Open(ctx, h.Chat, chatReq(true, 24))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if _, ok := st.(models.Waiter); ok != h.Waiter {
			t.Fatalf("stream implements models.Waiter: %v, harness says %v", ok, h.Waiter)
		}
		if _, ok := st.(models.Buffered); ok != h.Waiter {
			t.Fatalf("stream implements models.Buffered: %v, harness says %v (as for models.Waiter)", ok, h.Waiter)
		}
		var (
			text, finish string
			n            int
			rerr         error
		)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				if !models.AtHand(st) || i%2 == 1 {
					models.WaitReady(st)
				}
				c, err := st.Recv()
				if err != nil {
					if err != io.EOF {
						rerr = err
					}
					return
				}
				n++
				text += c.Text
				if c.FinishReason != "" {
					finish = c.FinishReason
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatalf("no end after a minute: %d chunks read, WaitReady or Recv hangs", n)
		}
		if rerr != nil || n < 3 || strings.TrimSpace(text) == "" || finish == "" {
			t.Fatalf("waited stream: %d chunks, text %q, finish %q, error %v", n, text, finish, rerr)
		}
		st.Close()
		checkIdle(t)
	})

	t.Run("keep-alive", func(t *testing.T) {
		if h.Dials == nil {
			t.Skip("backend does not count its connections")
		}
		// Finished requests, streamed or not, leave their connection to the next one.
		for _, stream := range []bool{true, false} {
			st, err := h.Backend.Open(ctx, h.Chat, chatReq(stream, 6))
			if err != nil {
				t.Fatal(err)
			}
			drain(t, st)
			st.Close()
		}
		seq := []bool{true, false, true}
		if h.StreamsCloseConn {
			seq = []bool{false, false, false}
		}
		before := h.Dials()
		for _, stream := range seq {
			st, err := h.Backend.Open(ctx, h.Chat, chatReq(stream, 6))
			if err != nil {
				t.Fatal(err)
			}
			drain(t, st)
			st.Close()
		}
		if d := h.Dials() - before; d != 0 {
			t.Fatalf("%d new connections for 3 sequential requests; want them reused", d)
		}
	})

	t.Run("completion", func(t *testing.T) {
		for _, stream := range []bool{false, true} {
			r := &models.Request{Kind: models.KindCompletion, Model: "m", Stream: stream,
				Prompt: []string{"Once upon a time"}, Sampling: models.Sampling{MaxTokens: 10}}
			st, err := h.Backend.Open(ctx, h.Chat, r)
			if err != nil {
				t.Fatal(err)
			}
			text, _, _ := drain(t, st)
			u := st.Usage()
			st.Close()
			if strings.TrimSpace(text) == "" || u.CompletionTokens <= 0 {
				t.Fatalf("stream=%v: text %q usage %+v", stream, text, u)
			}
		}
		checkIdle(t)
	})

	t.Run("embeddings", func(t *testing.T) {
		if h.Embed.Backend == "" {
			t.Fatal("harness has no embedding model")
		}
		eb := h.EmbedBackend
		if eb == nil {
			eb = h.Backend
		}
		if err := eb.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		r := &models.Request{Kind: models.KindEmbedding, Model: "e", Input: []string{"one", "two words", "three words here"}}
		st, err := eb.Open(ctx, h.Embed, r)
		if err != nil {
			t.Fatal(err)
		}
		c, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		vecs := c.Embeddings
		u := st.Usage()
		if _, err := st.Recv(); err != io.EOF {
			t.Fatalf("second Recv = %v, want EOF", err)
		}
		st.Close()
		if len(vecs) != 3 || len(vecs[0]) != 64 || len(vecs[2]) != 64 {
			t.Fatalf("embeddings: %d vectors", len(vecs))
		}
		if u.PromptTokens <= 0 {
			t.Fatalf("usage = %+v", u)
		}
	})

	t.Run("cancel mid-stream", func(t *testing.T) {
		cctx, ccancel := context.WithCancel(ctx)
		st, err := h.Backend.Open(cctx, h.Chat, chatReq(true, 1500))
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if _, err := st.Recv(); err != nil {
				t.Fatalf("Recv before cancel: %v", err)
			}
		}
		ccancel()
		start := time.Now()
		var rerr error
		for rerr == nil {
			_, rerr = st.Recv()
		}
		if rerr == io.EOF {
			t.Fatalf("Recv after cancel ended cleanly; want an error")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Recv took %v to notice the cancel", d)
		}
		st.Close()
		checkIdle(t)
	})

	t.Run("close early", func(t *testing.T) {
		st, err := h.Backend.Open(ctx, h.Chat, chatReq(true, 1500))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		checkIdle(t)
		// The engine still serves afterwards.
		st, err = h.Backend.Open(ctx, h.Chat, chatReq(false, 4))
		if err != nil {
			t.Fatal(err)
		}
		drain(t, st)
		st.Close()
	})

	t.Run("engine down", func(t *testing.T) {
		h.Kill()
		_, err := h.Backend.Open(ctx, h.Chat, chatReq(false, 4))
		if !errors.Is(err, models.ErrUnavailable) {
			t.Fatalf("Open on a dead engine = %v, want ErrUnavailable", err)
		}
		var me *models.Error
		if !errors.As(err, &me) || me.RetryAfter <= 0 {
			t.Fatalf("no Retry-After hint: %#v", err)
		}
		_ = h.Backend.Refresh(ctx)
		if h.Backend.Capacity().Healthy {
			t.Fatalf("dead engine reported healthy")
		}
	})
}
