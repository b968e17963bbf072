package openai

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/upstream"
)

// TestOversizedEngineEvent: an engine that streams an event over the bound (here a
// chunk whose content never ends) fails the request with an engine error once the bound
// is passed; sluice does not gather the line in memory.
func TestOversizedEngineEvent(t *testing.T) {
	const bound = 256 << 10
	var sent int
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"finish_reason":null}]}`+"\n\n")
		fmt.Fprint(w, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"`)
		pad := strings.Repeat("a", 32<<10)
		for sent < 64<<20 {
			if _, err := io.WriteString(w, pad); err != nil {
				return // sluice hung up
			}
			sent += len(pad)
		}
	}))
	defer engine.Close()
	b, err := New(Options{Name: "fake", BaseURL: engine.URL + "/v1", Upstream: upstream.Options{MaxEvent: bound}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r := &models.Request{Kind: models.KindChat, Model: "m", Stream: true,
		Messages: []models.Message{{Role: "user", Content: "hi"}}}
	st, err := b.Open(context.Background(), models.Target{Model: "m", UpstreamModel: "m"}, r)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if c, err := st.Recv(); err != nil || c.Text != "hi" {
		t.Fatalf("first chunk: %+v %v", c, err)
	}
	_, err = st.Recv()
	var me *models.Error
	if !errors.As(err, &me) || !errors.Is(err, models.ErrUpstream) || me.Code != "engine_event_too_large" {
		t.Fatalf("oversized event: err = %v, want an engine_event_too_large engine error", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}
