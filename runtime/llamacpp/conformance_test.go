package llamacpp

import (
	"testing"

	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/backendtest"
)

func TestConformance(t *testing.T) {
	chat := enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Slots: 2})
	embed := enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Embedding: true, Slots: 1, Ctx: 512})
	b, err := New(Options{Name: "llama", URL: chat.URL, Slots: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	eb, err := New(Options{Name: "llama-embed", URL: embed.URL, Slots: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer eb.Close()
	backendtest.Run(t, backendtest.Harness{
		Backend: b, EmbedBackend: eb,
		Chat:     models.Target{Backend: "llama", UpstreamModel: "tiny"},
		Embed:    models.Target{Backend: "llama-embed", UpstreamModel: "tiny-embed"},
		Kill:     chat.Kill,
		InFlight: b.InFlight,
		Dials:    b.Dials,
		// llama-server (cpp-httplib) closes the connection after a streamed answer,
		// though it announces keep-alive; sluice does not reuse those.
		StreamsCloseConn: true,
		Waiter:           true,
	})
}
