package openai

import (
	"testing"

	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/models/tinymodel"
	"github.com/sluice-llm/sluice/runtime/backendtest"
)

// TestConformanceOllamaV1 drives Ollama's OpenAI-compatible /v1 endpoints, the way
// sluice drives vLLM or any other OpenAI-compatible engine.
func TestConformanceOllamaV1(t *testing.T) {
	o := enginetest.StartOllama(t, 2)
	enginetest.OllamaCreate(t, o, "tiny", enginetest.TinyModel(t, tinymodel.Options{}))
	enginetest.OllamaCreate(t, o, "tiny-embed", enginetest.TinyModel(t, tinymodel.Options{Embedding: true}))
	b, err := New(Options{Name: "ollama-v1", BaseURL: o.URL + "/v1", Slots: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	backendtest.Run(t, backendtest.Harness{
		Backend:  b,
		Chat:     models.Target{Backend: "ollama-v1", UpstreamModel: "tiny"},
		Embed:    models.Target{Backend: "ollama-v1", UpstreamModel: "tiny-embed"},
		Kill:     o.Kill,
		InFlight: b.InFlight,
		Dials:    b.Dials,
		Waiter:   true,
	})
}
