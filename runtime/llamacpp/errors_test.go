package llamacpp

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/models"
)

// TestContextTooLong: a prompt longer than the slot's context is the client's error
// (400, code context_length_exceeded, as OpenAI answers it), streamed or not, and the
// engine stays healthy.
func TestContextTooLong(t *testing.T) {
	p := enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Slots: 1, Ctx: 256})
	b, err := New(Options{Name: "small", URL: p.URL, Slots: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("the quick brown fox jumps over the lazy dog ", 200)
	for _, stream := range []bool{false, true} {
		r := &models.Request{Kind: models.KindChat, Stream: stream, Sampling: models.Sampling{MaxTokens: 4},
			Messages: []models.Message{{Role: "user", Content: long}}}
		st, err := b.Open(ctx, models.Target{Backend: "small", UpstreamModel: "tiny"}, r)
		if err == nil {
			// An engine may report it inside the stream instead.
			for err == nil {
				_, err = st.Recv()
			}
			_ = st.Close()
		}
		var me *models.Error
		if !errors.Is(err, models.ErrInvalid) || !errors.As(err, &me) || me.Code != "context_length_exceeded" {
			t.Fatalf("stream=%v: %v (%#v), want ErrInvalid with code context_length_exceeded", stream, err, me)
		}
		if strings.Contains(me.Msg, "127.0.0.1") {
			t.Errorf("message shows the engine's address: %q", me.Msg)
		}
	}
	if !b.Capacity().Healthy {
		t.Fatalf("engine marked down by a client's long prompt: %+v", b.Capacity())
	}
}
