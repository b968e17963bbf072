package cloudtest

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestTokensAndSplit(t *testing.T) {
	toks := Tokens(5)
	if len(toks) != 5 || strings.HasPrefix(toks[0], " ") || !strings.HasPrefix(toks[1], " ") {
		t.Fatalf("tokens %q", toks)
	}
	text := strings.Join(toks, "")
	if got := Split(text); strings.Join(got, "|") != strings.Join(toks, "|") {
		t.Fatalf("Split(%q) = %q", text, got)
	}
	if Split("") != nil || CountTokens("") != 0 || CountTokens("abcde") != 2 {
		t.Fatal("edge cases")
	}
}

func TestScriptRecorderCounter(t *testing.T) {
	var s Script[int]
	s.Push(1, 2)
	if a, _ := s.Pop(); a != 1 {
		t.Fatal(a)
	}
	if b, _ := s.Pop(); b != 2 {
		t.Fatal(b)
	}
	if _, ok := s.Pop(); ok {
		t.Fatal("empty script popped")
	}
	var r Recorder[int]
	for i := range 100 {
		r.Add(i)
	}
	if last, _ := r.Last(); last != 99 {
		t.Fatal(last)
	}
	var c Counter
	c.Begin()
	if n := c.Begin(); n != 2 {
		t.Fatal(n)
	}
	c.End()
	c.Cancel()
	<-c.Canceled()
	if st := c.Stats(); st.Requests != 2 || st.InFlight != 1 || st.MaxInFlight != 2 || st.Canceled != 1 {
		t.Fatalf("%+v", st)
	}
}

func TestPacerStopsOnCancel(t *testing.T) {
	p := Latency{TTFT: 1 << 40}.Start() // would wait for hours
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Wait(ctx); err == nil {
		t.Fatal("Wait ignored the cancelled context")
	}
	// No latency: every token is due at once.
	if err := (Latency{}).Start().WaitAll(context.Background(), 50); err != nil {
		t.Fatal(err)
	}
}

func TestSSE(t *testing.T) {
	w := httptest.NewRecorder()
	s := NewSSE(w, true)
	_ = s.Event("ping", []byte(`{}`))
	_ = s.Event("", []byte(`[DONE]`))
	if got := w.Body.String(); got != "event: ping\r\ndata: {}\r\n\r\ndata: [DONE]\r\n\r\n" || w.Header().Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%q", got)
	}
}
