package ollama

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/models/tinymodel"
	"github.com/sluice-llm/sluice/runtime/openai"
)

// engineBackend is what this test drives in both runtimes.
type engineBackend interface {
	Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error)
	Capacity() models.Capacity
	Refresh(ctx context.Context) error
}

// TestOverloadAndMissingModel: a real Ollama that holds one model at a time with a queue
// of one (OLLAMA_MAX_LOADED_MODELS=1, OLLAMA_MAX_QUEUE=1) answers 503 once a model swap
// waits behind a running request and its queue is full. Through the native runtime and
// through the OpenAI-compatible one (Ollama's /v1) alike, that is ErrOverloaded with a
// retry hint and the backend stays healthy (it used to be ErrUnavailable, which takes an
// engine out of rotation); and a model the engine lacks is the same 502
// engine_model_not_found from both (it was 404 from one, 502 from the other).
func TestOverloadAndMissingModel(t *testing.T) {
	for _, api := range []string{"native", "v1"} {
		t.Run(api, func(t *testing.T) {
			// An engine of its own: the other's swap may still be under way.
			p := enginetest.StartOllamaEnv(t, 1, "OLLAMA_MAX_LOADED_MODELS=1", "OLLAMA_MAX_QUEUE=1")
			enginetest.OllamaCreate(t, p, chatModel, enginetest.TinyModel(t, tinymodel.Options{}))
			enginetest.OllamaCreate(t, p, embedModel, enginetest.TinyModel(t, tinymodel.Options{Embedding: true}))
			var b engineBackend = newBackend(t, p, 1)
			if api == "v1" {
				v1, err := openai.New(openai.Options{Name: "ollama-v1", BaseURL: p.URL + "/v1", Slots: 1})
				if err != nil {
					t.Fatal(err)
				}
				defer v1.Close()
				b = v1
			}
			ctx := testCtx(t)
			if err := b.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			r := chat(false, 4)
			_, err := b.Open(ctx, models.Target{UpstreamModel: "no-such-model"}, &r)
			var me *models.Error
			if !errors.Is(err, models.ErrUpstream) || !errors.As(err, &me) || me.Code != "engine_model_not_found" {
				t.Fatalf("missing model: %v, want ErrUpstream engine_model_not_found", err)
			}

			// A long answer holds the chat model (not read: the engine blocks on it).
			hctx, release := context.WithCancel(ctx)
			defer release()
			hold := chat(true, 100000)
			st, err := b.Open(hctx, models.Target{UpstreamModel: chatModel}, &hold)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if _, err := st.Recv(); err != nil {
				t.Fatal(err)
			}
			// Requests for the other model: the first waits for the swap, blocking Ollama's
			// scheduler; the next fills its queue of one; the ones after are refused.
			results := make(chan error, 8)
			for range cap(results) {
				go func() {
					r := models.Request{Kind: models.KindEmbedding, Input: []string{"a"}}
					s, err := b.Open(hctx, models.Target{UpstreamModel: embedModel}, &r)
					if s != nil {
						s.Close()
					}
					results <- err
				}()
			}
			deadline := time.After(time.Minute)
			var over *models.Error
			for over == nil {
				select {
				case err := <-results:
					if !errors.Is(err, models.ErrOverloaded) {
						t.Fatalf("a request beyond the engine's queue ended with %v, want ErrOverloaded", err)
					}
					errors.As(err, &over)
				case <-deadline:
					t.Fatal("no request was refused in a minute; the engine's log:\n" + p.Log())
				}
			}
			if over.Code != "engine_overloaded" || over.RetryAfter < time.Second {
				t.Fatalf("overload answer %+v, want engine_overloaded with a retry hint", over)
			}
			if c := b.Capacity(); !c.Healthy {
				t.Fatalf("an overloaded engine was marked down: %+v", c)
			}
			release()
			for range cap(results) - 1 {
				<-results
			}
		})
	}
}
