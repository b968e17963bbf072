package ollama

import (
	"testing"

	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/backendtest"
)

// TestConformance runs the suite every backend passes against a real Ollama.
func TestConformance(t *testing.T) {
	p := startEngine(t, 2)
	b := newBackend(t, p, 2)
	backendtest.Run(t, backendtest.Harness{
		Backend:  b,
		Chat:     models.Target{Backend: "ollama", UpstreamModel: chatModel},
		Embed:    models.Target{Backend: "ollama", UpstreamModel: embedModel},
		Kill:     p.Kill,
		InFlight: b.InFlight,
		Waiter:   true,
	})
}
