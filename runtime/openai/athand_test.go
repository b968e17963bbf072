package openai

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/upstream"
)

// TestBufferedChunks: the stream reports a chunk at hand (models.Buffered) only when
// Recv returns it without reading: the engine here sends three chunks, a keep-alive
// comment, a metadata event without choices and half of a fourth chunk at once, then
// stalls until the test lets it go on. A Recv the stream wrongly reported at hand would
// block on the stalled engine; every chunk arrives whole and in order.
func TestBufferedChunks(t *testing.T) {
	goOn := make(chan struct{})
	chunk := func(text string) string {
		return `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"` + text + `"},"finish_reason":null}]}` + "\n\n"
	}
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fourth := chunk("d")
		fmt.Fprint(w, chunk("a")+chunk("b")+": keep-alive\n\n"+chunk("c")+`data: {"id":"c1","choices":[]}`+"\n\n"+fourth[:40])
		w.(http.Flusher).Flush()
		<-goOn
		fmt.Fprint(w, fourth[40:]+`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\ndata: [DONE]\n\n")
	}))
	defer engine.Close()
	release := sync.OnceFunc(func() { close(goOn) })
	defer release() // before engine.Close, which waits for the handler
	b, err := New(Options{Name: "fake", BaseURL: engine.URL + "/v1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r := &models.Request{Kind: models.KindChat, Model: "m", Stream: true, Messages: []models.Message{{Role: "user", Content: "hi"}}}
	// A wrong report fails the test at this deadline instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := b.Open(ctx, models.Target{Model: "m", UpstreamModel: "m"}, r)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var got string
	c, err := st.Recv() // reads the engine's first burst
	if err != nil {
		t.Fatal(err)
	}
	got += c.Text
	for _, want := range []string{"b", "c"} {
		if !models.AtHand(st) {
			t.Fatalf("chunk %q was read with the first but is not reported at hand", want)
		}
		if c, err = st.Recv(); err != nil || c.Text != want { // within the deadline

			t.Fatalf("chunk at hand: %q %v, want %q", c.Text, err, want)
		}
		got += c.Text
	}
	// Next: an event Recv passes over (no choices) and half a chunk: Recv would wait.
	if models.AtHand(st) {
		t.Fatal("reported at hand with only an event Recv passes over and half a chunk buffered")
	}
	release()
	for {
		c, err := st.Recv()
		if err != nil {
			break
		}
		got += c.Text
		if c.FinishReason == "stop" && models.AtHand(st) {
			t.Fatal("the end of the stream ([DONE]) reported as a chunk at hand")
		}
	}
	if got != "abcd" {
		t.Fatalf("text %q, want abcd", got)
	}
}

// TestBufferedEventKinds: which buffered events the stream reports at hand, by their data.
func TestBufferedEventKinds(t *testing.T) {
	for _, tc := range []struct {
		data string
		want bool
	}{
		{`{"choices":[{"index":0,"delta":{"content":"a"}}]}`, true},
		{`{"id":"c", "choices": [ {"index":0,"delta":{}}]}`, true},
		{`{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}`, true},
		{`{"choices":[]}`, false},
		{`{"id":"c","choices":[],"meta":{"usage":{"x":1}}}`, false},
		{`{"id":"c","choices":[],"usage":null,"x":{"choices":[{}]}}`, false},
		{`{"content":"\"choices\":[{"}`, false},
		{`[DONE]`, false},
		{`{"choices":[{`, false},
	} {
		// The first event read fills the reader's buffer with the second, whole.
		st := &stream{sse: upstream.NewSSE(strings.NewReader("data: first\n\ndata: "+tc.data+"\n\n"), 0)}
		if _, _, err := st.sse.Next(); err != nil {
			t.Fatal(err)
		}
		if _, ok := st.sse.BufferedData(); !ok {
			t.Fatalf("%s: not buffered", tc.data)
		}
		if got := st.Buffered(); got != tc.want {
			t.Errorf("%s: Buffered() = %v, want %v", tc.data, got, tc.want)
		}
	}
}
