package openai

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/upstream"
)

func evChunk(text string) string {
	return `data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"` + text + `"},"finish_reason":null}]}` + "\n\n"
}

const evStop = `data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n"

func readWaited(t *testing.T, st models.Stream) (string, error) {
	t.Helper()
	var got strings.Builder
	for i := 0; ; i++ {
		if !models.AtHand(st) || i%2 == 0 {
			models.WaitReady(st)
		}
		c, err := st.Recv()
		if err == io.EOF {
			return got.String(), nil
		}
		if err != nil {
			return got.String(), err
		}
		got.WriteString(c.Text)
	}
}

// TestStreamTransports: a stream read as the gateway reads a slow one (WaitReady
// between events, AtHand) over TLS (no descriptor to wait on: only the SSE reader's
// buffer goes back to the pool) and with a body of fixed length (read through fasthttp's
// stream, never detached), closed twice and waited on after Close, gets its events whole
// and leaves its connection to the next stream.
func TestStreamTransports(t *testing.T) {
	handlerFor := func(fixed bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			body := evChunk("a") + evChunk("b") + evChunk("c") + evStop
			if fixed {
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				for i := 0; i < len(body); i += 50 {
					io.WriteString(w, body[i:min(i+50, len(body))])
					w.(http.Flusher).Flush()
					time.Sleep(3 * time.Millisecond)
				}
				return
			}
			for _, part := range []string{evChunk("a"), evChunk("b")[:30], evChunk("b")[30:], evChunk("c"), evStop} {
				io.WriteString(w, part)
				w.(http.Flusher).Flush()
				time.Sleep(3 * time.Millisecond)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		tls   bool
		fixed bool
	}{{"plain", false, false}, {"tls", true, false}, {"fixed", false, true}, {"tls fixed", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			var srv *httptest.Server
			handler := handlerFor(tc.fixed)
			if tc.tls {
				srv = httptest.NewTLSServer(handler)
			} else {
				srv = httptest.NewServer(handler)
			}
			defer srv.Close()
			b, err := New(Options{Name: "fake", BaseURL: srv.URL + "/v1", Upstream: upstream.Options{TLS: &tls.Config{InsecureSkipVerify: true}}})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			for round := range 3 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r := &models.Request{Kind: models.KindChat, Model: "m", Stream: true, Messages: []models.Message{{Role: "user", Content: "hi"}}}
				st, err := b.Open(ctx, models.Target{Model: "m", UpstreamModel: "m"}, r)
				if err != nil {
					t.Fatal(err)
				}
				if cl := st.(*stream).call.Resp.Header.ContentLength(); (cl >= 0) != tc.fixed {
					t.Fatalf("content length %d", cl)
				}
				got, err := readWaited(t, st)
				st.Close()
				st.Close()
				models.WaitReady(st)
				cancel()
				if err != nil || got != "abc" {
					t.Fatalf("round %d: %q %v", round, got, err)
				}
			}
			if d := b.client.Dials(); d != 1 {
				t.Fatalf("%d dials for 3 streams: the connection is not reused", d)
			}
		})
	}
}

// TestStreamCancelAndCut: a stream waiting with nothing buffered (its buffers in the
// pools) returns from the wait and fails cleanly when its context is cancelled, when its
// deadline passes, and when the engine cuts the connection inside a chunk.
func TestStreamCancelAndCut(t *testing.T) {
	hold := make(chan struct{})
	var cut atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, evChunk("a"))
		w.(http.Flusher).Flush()
		if cut.Load() {
			time.Sleep(20 * time.Millisecond)
			hj, _, _ := w.(http.Hijacker).Hijack()
			hj.Write([]byte("40\r\ndata: {\"choi"))
			hj.Close()
			return
		}
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(hold)
	b, err := New(Options{Name: "fake", BaseURL: srv.URL + "/v1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r := &models.Request{Kind: models.KindChat, Model: "m", Stream: true, Messages: []models.Message{{Role: "user", Content: "hi"}}}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := b.Open(ctx, models.Target{Model: "m", UpstreamModel: "m"}, r)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := st.Recv(); err != nil || c.Text != "a" {
		t.Fatal(c, err)
	}
	time.AfterFunc(30*time.Millisecond, cancel)
	models.WaitReady(st)
	if models.AtHand(st) {
		t.Fatal("at hand after a cancel")
	}
	_, err = st.Recv()
	t.Log("after cancel:", err)
	if err == nil {
		t.Fatal("no error after cancel")
	}
	models.WaitReady(st)
	st.Close()
	st.Close()
	models.WaitReady(st)
	_ = models.AtHand(st)

	// deadline via r.Deadline (the connection's own deadline)
	r2 := &models.Request{Kind: models.KindChat, Model: "m", Stream: true, Messages: []models.Message{{Role: "user", Content: "hi"}}, Deadline: time.Now().Add(500 * time.Millisecond)}
	st, err = b.Open(context.Background(), models.Target{Model: "m", UpstreamModel: "m"}, r2)
	if err != nil {
		t.Fatal(err)
	}
	st.Recv()
	models.WaitReady(st)
	_, err = st.Recv()
	t.Log("after deadline:", err)
	if err == nil {
		t.Fatal("no error after deadline")
	}
	st.Close()

	// the engine cuts the connection inside a chunk while the stream waits
	cut.Store(true)
	st, err = b.Open(context.Background(), models.Target{Model: "m", UpstreamModel: "m"}, r)
	if err != nil {
		t.Fatal(err)
	}
	st.Recv()
	models.WaitReady(st)
	_ = models.AtHand(st)
	models.WaitReady(st)
	_, err = st.Recv()
	t.Log("after cut:", err)
	if err == nil {
		t.Fatal("no error after cut")
	}
	st.Close()
}
