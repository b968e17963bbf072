package openai

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/upstream"
	"github.com/valyala/fastjson"
)

// TestBufferedChunks: the stream reports a chunk at hand (models.Buffered) only when
// Recv returns it without reading: the engine here sends three chunks, a keep-alive
// comment, a metadata event without choices and half of a fourth chunk at once, then
// stalls until the test lets it go on. A Recv the stream wrongly reported at hand would
// block on the stalled engine; every chunk arrives whole and in order.
func TestBufferedChunks(t *testing.T) {
	goOn := make(chan struct{})
	chunk := chunkEvent
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
		st := &stream{sse: upstream.NewSSE(strings.NewReader("data: first\n\ndata: "+tc.data+"\n\n"), 0), p: &fastjson.Parser{}}
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

// TestBufferedParseReused: Buffered parses the event it reports on and Recv returns that
// parse instead of parsing again; the chunks must be the same as when Buffered is never
// asked, event for event, including a metadata event Recv passes over, usage, an event
// whose error Recv reports and one that is not JSON.
func TestBufferedParseReused(t *testing.T) {
	events := []string{
		`{"id":"c1","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`,
		`{"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"Hello"}}]}`,
		`{"id":"c1","choices":[]}`,
		`{"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":" w\u00f6rld \"q\""}}]}`,
		`{"id":"c1","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"t","function":{"name":"f","arguments":"{}"}}]}}]}`,
		`{"id":"c1","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}`,
		`{"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":2}}}`,
		`{"error":{"message":"boom","type":"server_error"}}`,
	}
	for _, last := range []string{`{"error":{"message":"boom"}}`, `{"choices":[{"delta":`, `{"choices":[]} trailing`} {
		in := ""
		for _, e := range append(slices.Clone(events[:len(events)-1]), last) {
			in += "data: " + e + "\n\n"
		}
		plain, peeked := recvAll(in, false, 20), recvAll(in, true, 20)
		if plain == nil || peeked == nil {
			t.Fatal("no end")
		}
		if !slices.Equal(plain, peeked) {
			t.Errorf("last event %s: with Buffered asked\n%s\nwithout\n%s", last, strings.Join(peeked, "\n"), strings.Join(plain, "\n"))
		}
		if len(plain) != len(events)-1 { // the metadata event is passed over, the last is an error
			t.Errorf("last event %s: %d results, want %d:\n%s", last, len(plain), len(events)-1, strings.Join(plain, "\n"))
		}
	}
}

// recvAll reads the SSE body in through a stream of its own (asking Buffered twice
// before each Recv when peek), at most max chunks, and returns each chunk as a line, the
// last one the error that ended it; nil when max chunks came without an end.
func recvAll(in string, peek bool, max int) []string {
	st := &stream{b: &Backend{}, r: &models.Request{Stream: true}, sse: upstream.NewSSE(strings.NewReader(in), 0), p: &fastjson.Parser{}}
	var out []string
	for range max {
		if peek {
			st.Buffered()
			st.Buffered() // asking twice changes nothing
		}
		c, err := st.Recv()
		if err != nil {
			return append(out, "error: "+err.Error())
		}
		u := ""
		if c.Usage != nil {
			u = fmt.Sprintf("%+v", *c.Usage)
		}
		out = append(out, fmt.Sprintf("%q %q %q %q %s %d %q", c.Text, c.Role, c.FinishReason, c.ToolCalls, u, c.Format, c.Raw))
	}
	return nil
}

// chunkEvent is an engine's streamed content chunk carrying text, as an SSE event.
func chunkEvent(text string) string {
	return `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"` + text + `"},"finish_reason":null}]}` + "\n\n"
}

// BenchmarkRecvAtHand is the engine-side cost of one streamed event as the gateway pays
// it under load (the next event already read, asked about with Buffered, then received),
// over the fake engine's chunk shape; ns/op is per event.
//
//	go test ./runtime/openai -run '^$' -bench RecvAtHand
func BenchmarkRecvAtHand(b *testing.B) {
	var in strings.Builder
	for i := range 200 {
		fmt.Fprintf(&in, "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1764000000,\"model\":\"bench\",\"system_fingerprint\":\"fp\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word%d \"},\"logprobs\":null,\"finish_reason\":null}]}\n\n", i)
	}
	body := in.String()
	r := &models.Request{Stream: true}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		st := &stream{b: &Backend{}, r: r, sse: upstream.NewSSE(strings.NewReader(body), 0), p: &fastjson.Parser{}}
		for {
			st.Buffered()
			if _, err := st.Recv(); err != nil {
				break
			}
			n++
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(n, 1)), "ns/event")
}

// TestWaitReadyGivesParserBack: a stream holds no JSON parser while it waits for the
// engine (WaitReady), including after Buffered parsed the next event ahead, and every
// chunk still arrives whole and in order.
func TestWaitReadyGivesParserBack(t *testing.T) {
	goOn := make(chan struct{})
	chunk := chunkEvent
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, chunk("a")+chunk("b"))
		w.(http.Flusher).Flush()
		<-goOn
		fmt.Fprint(w, chunk("c")+`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\ndata: [DONE]\n\n")
	}))
	defer engine.Close()
	release := sync.OnceFunc(func() { close(goOn) })
	defer release()
	b, err := New(Options{Name: "fake", BaseURL: engine.URL + "/v1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := &models.Request{Kind: models.KindChat, Model: "m", Stream: true, Messages: []models.Message{{Role: "user", Content: "hi"}}}
	ms, err := b.Open(ctx, models.Target{Model: "m", UpstreamModel: "m"}, r)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	st := ms.(*stream)
	recv := func(want string) {
		t.Helper()
		c, err := st.Recv()
		if err != nil || c.Text != want {
			t.Fatalf("Recv = %q, %v; want %q", c.Text, err, want)
		}
	}
	recv("a")
	if !st.Buffered() || st.peeked == nil {
		t.Fatal("the second chunk, read with the first, is not parsed ahead")
	}
	st.WaitReady() // returns at once: the chunk is here
	if st.p != nil || st.peeked != nil {
		t.Fatal("the parser is held through WaitReady")
	}
	recv("b")
	time.AfterFunc(50*time.Millisecond, release)
	st.WaitReady() // waits for the engine
	if st.p != nil {
		t.Fatal("the parser is held through WaitReady")
	}
	recv("c")
	c, err := st.Recv()
	if err != nil || c.FinishReason != "stop" {
		t.Fatalf("Recv = %+v, %v; want the finish", c, err)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("Recv after the finish = %v, want EOF", err)
	}
}

// TestRepeatedKeysLastCopy: of a key an engine's event repeats (written plainly or with
// an escape), the last copy counts, as for the clients that read the forwarded event,
// whether Buffered parsed the event first or not.
func TestRepeatedKeysLastCopy(t *testing.T) {
	for _, tc := range []struct{ data, text, finish string }{
		{`{"\u0065rror":{"message":"x"},"error":null,"choices":[{"delta":{"content":"E1"}}]}`, "E1", ""},
		{`{"choices":[{"delta":{"role":"assistant","con\u0074ent":"A","content":"B"}}]}`, "B", ""},
		{`{"choices":[{"d\u0065lta":{"content":"D3"},"delta":{"content":"D4"}}]}`, "D4", ""},
		{`{"choices":[{"delta":{"content":"F2"},"fin\u0069sh_reason":"length","finish_reason":"stop"}]}`, "F2", "stop"},
		{`{"choices":[{"delta":{"content":"a","content":"b"}}],"choices":[{"delta":{"content":"c"}}]}`, "c", ""},
	} {
		for _, peek := range []bool{false, true} {
			st := &stream{b: &Backend{}, r: &models.Request{Stream: true}, p: &fastjson.Parser{},
				sse: upstream.NewSSE(strings.NewReader("data: first\n\ndata: "+tc.data+"\n\n"), 0)}
			if _, _, err := st.sse.Next(); err != nil {
				t.Fatal(err)
			}
			if peek && !st.Buffered() {
				t.Errorf("%s: not at hand", tc.data)
			}
			c, err := st.Recv()
			if err != nil || c.Text != tc.text || c.FinishReason != tc.finish {
				t.Errorf("%s (Buffered asked: %v): text %q, finish %q, %v; want %q, %q", tc.data, peek, c.Text, c.FinishReason, err, tc.text, tc.finish)
			}
		}
	}
}
