package gateway_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/gateway"
)

// rawResponse reads one HTTP response from br (the status code and the body), failing
// the test when none comes within 20 s.
func rawResponse(t testing.TB, c net.Conn, br *bufio.Reader) (int, http.Header, []byte) {
	t.Helper()
	code, h, b, err := readResponse(c, br)
	if err != nil {
		t.Fatalf("no HTTP response: %v", err)
	}
	return code, h, b
}

func readResponse(c net.Conn, br *bufio.Reader) (int, http.Header, []byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

func openAIError(t testing.TB, b []byte) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("not an OpenAI error: %q", b)
	}
	return e
}

func dial(t testing.TB, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// TestSlowHeaders: a client that sends its headers slowly (slowloris) gets a 408 and
// is disconnected once HeaderTimeout passes.
func TestSlowHeaders(t *testing.T) {
	g := startGateway(t, gateway.Options{Limits: gateway.Limits{HeaderTimeout: 200 * time.Millisecond}}, 1)
	c, br := dial(t, g.Addr)
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	code, _, b := rawResponse(t, c, br)
	if code != 408 || openAIError(t, b).Error.Code == nil {
		t.Fatalf("slow headers: %d %s", code, b)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open after the 408: %v", err)
	}
}

// TestSlowBody: a small body that does not arrive within HeaderTimeout of the request's
// first byte, or a larger one within BodyTimeout of its headers, gets a 408.
func TestSlowBody(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits gateway.Limits
		length int
	}{
		{"small", gateway.Limits{HeaderTimeout: 200 * time.Millisecond, BodyTimeout: time.Hour}, 500},
		{"large", gateway.Limits{BodyTimeout: 200 * time.Millisecond}, 100 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, gateway.Options{Limits: tc.limits}, 1)
			c, br := dial(t, g.Addr)
			fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"model\":", tc.length)
			code, _, b := rawResponse(t, c, br)
			if code != 408 {
				t.Fatalf("slow body: %d %s", code, b)
			}
			openAIError(t, b)
		})
	}
}

// TestSlowReaderFreesSlot: a client that stops reading a streamed answer is dropped
// once a write stalls for WriteTimeout; its engine stream closes and the slot is free.
func TestSlowReaderFreesSlot(t *testing.T) {
	g := startGateway(t, gateway.Options{Limits: gateway.Limits{WriteTimeout: 300 * time.Millisecond}}, 1)
	c, br := dial(t, g.Addr)
	body := chatBody("words 100000000", true)
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("status line %q: %v", line, err)
	}
	// ... and read no more: the socket buffers fill, the server's writes stall.
	g.waitClosed(t, 1, "client stopped reading")
	g.slotFree(t)
}

// TestMaxConcurrentRequests: over the cap, requests get 429 with Retry-After at once.
func TestMaxConcurrentRequests(t *testing.T) {
	g := startGateway(t, gateway.Options{Limits: gateway.Limits{MaxConcurrentRequests: 2}}, 4)
	g.Fake.started = make(chan string, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(g.URL+"/v1/chat/completions", "application/json", strings.NewReader(chatBody("hang", false)))
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	<-g.Fake.started
	<-g.Fake.started
	resp, b := post(t, g.URL+"/v1/chat/completions", chatBody("words 1", false))
	e := openAIError(t, b)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || e.Error.Code == nil || *e.Error.Code != "too_many_requests" {
		t.Fatalf("third request: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	close(g.Fake.release)
	wg.Wait()
	if resp, b := post(t, g.URL+"/v1/chat/completions", chatBody("words 1", false)); resp.StatusCode != 200 {
		t.Fatalf("after the others ended: %d %s", resp.StatusCode, b)
	}
}

// TestMaxConnections: a connection over the cap gets a 503 in OpenAI's format.
func TestMaxConnections(t *testing.T) {
	g := startGateway(t, gateway.Options{Limits: gateway.Limits{MaxConnections: 2}}, 1)
	for range 2 {
		c, br := dial(t, g.Addr)
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		if code, _, b := rawResponse(t, c, br); code != 200 {
			t.Fatalf("healthz: %d %s", code, b)
		}
	}
	c, br := dial(t, g.Addr)
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	code, h, b := rawResponse(t, c, br)
	if code != 503 || h.Get("Retry-After") == "" {
		t.Fatalf("third connection: %d %s", code, b)
	}
	if e := openAIError(t, b); *e.Error.Code != "too_many_connections" {
		t.Fatalf("code %v", *e.Error.Code)
	}
}

// sendBody writes a request with a body of n bytes (a chat request padded with spaces)
// from another goroutine, as a client that sends all before it reads does; it returns
// the write's error on the channel.
func sendBody(c net.Conn, prompt string, n int, stream bool) <-chan error {
	body := chatBody(prompt, stream)
	done := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(c, 64<<10)
		fmt.Fprintf(w, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", n, body)
		pad := []byte(strings.Repeat(" ", 64<<10))
		for left := n - len(body); left > 0; {
			k := min(left, len(pad))
			if _, err := w.Write(pad[:k]); err != nil {
				done <- err
				return
			}
			left -= k
		}
		done <- w.Flush()
	}()
	return done
}

// TestOversizedBodyAnsweredAfterUpload: a client that sends a body over the limit in
// full before it reads gets the 413, not a reset connection.
func TestOversizedBodyAnsweredAfterUpload(t *testing.T) {
	g := startGateway(t, gateway.Options{MaxBodyBytes: 1 << 20}, 1)
	c, br := dial(t, g.Addr)
	sent := sendBody(c, "words 1", 32<<20, false)
	if err := <-sent; err != nil {
		t.Fatalf("upload cut short: %v", err)
	}
	code, _, b := rawResponse(t, c, br)
	if code != 413 || *openAIError(t, b).Error.Code != "request_too_large" {
		t.Fatalf("oversized body: %d %s", code, b)
	}
}

// TestLargeBodiesBounded: at most MaxLargeBodies large bodies are read or in flight at
// once; the others get 429 (after their upload, as the SDKs expect), and the gate's
// tokens come back when requests end, whichever way they end.
func TestLargeBodiesBounded(t *testing.T) {
	g := startGateway(t, gateway.Options{MaxBodyBytes: 4 << 20, Limits: gateway.Limits{
		LargeBodyBytes: 64 << 10, MaxLargeBodies: 2, BodyTimeout: 2 * time.Second}}, 8)
	g.Fake.started = make(chan string, 16)
	type res struct {
		code int
		body []byte
	}
	results := make(chan res, 10)
	for i := range 10 {
		c, br := dial(t, g.Addr)
		go func() {
			if err := <-sendBody(c, "hang", 1<<20+i, false); err != nil {
				results <- res{0, []byte(err.Error())}
				return
			}
			code, _, b, err := readResponse(c, br)
			if err != nil {
				b = []byte(err.Error())
			}
			results <- res{code, b}
		}()
	}
	// Two hold the gate (their streams hang); the eight others are refused.
	<-g.Fake.started
	<-g.Fake.started
	for range 8 {
		r := <-results
		if r.code != 429 || *openAIError(t, r.body).Error.Code != "too_many_large_requests" {
			t.Fatalf("over the large-body cap: %d %s", r.code, r.body)
		}
	}
	if n := g.Fake.open.Load(); n != 2 {
		t.Fatalf("%d large requests reached the engine, want 2", n)
	}
	// A body over the size limit is a 413 even when the gate is full.
	c0, br0 := dial(t, g.Addr)
	if err := <-sendBody(c0, "hang", 5<<20, false); err != nil {
		t.Fatal(err)
	}
	if code, _, b := rawResponse(t, c0, br0); code != 413 {
		t.Fatalf("oversized body while the gate is full: %d %s", code, b)
	}
	close(g.Fake.release)
	for range 2 {
		<-results
	}
	// A client that stalls mid-body gets its 408 and gives its token back.
	c, br := dial(t, g.Addr)
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{", 1<<20)
	if code, _, b := rawResponse(t, c, br); code != 408 {
		t.Fatalf("stalled body: %d %s", code, b)
	}
	// Both tokens are free again: two large requests go through together.
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		c, br := dial(t, g.Addr)
		go func() {
			defer wg.Done()
			if err := <-sendBody(c, "words 2", 1<<20, false); err != nil {
				t.Error(err)
				return
			}
			if code, _, b, err := readResponse(c, br); code != 200 {
				t.Errorf("large request after the others ended: %d %s %v", code, b, err)
			}
		}()
	}
	wg.Wait()
}
