package gateway_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/gateway"
)

// The fuzzers drive the whole request path: fasthttp's parsing of the bytes on the
// wire, the gateway's validation, the real router and scheduler, and a fake backend
// whose behaviour the prompt chooses (fakeBackend: failing engines, streams that fail
// midway, long answers). Every answer must be well-formed (a status and either an
// OpenAI error or a valid answer), nothing may panic, and once the answers are read no
// slot, queued request or engine stream may be left (goroutines: TestMain's goleak).

func fuzzGateway(f *testing.F) *testGateway {
	g := startGateway(f, gateway.Options{MaxBodyBytes: 64 << 10, Limits: gateway.Limits{
		HeaderTimeout: 2 * time.Second, BodyTimeout: 2 * time.Second, LargeBodyBytes: 16 << 10, MaxLargeBodies: 2,
	}}, 2)
	g.Fake.fuzz = true
	return g
}

// checkAnswer fails unless resp (to a request with method) is well-formed.
func checkAnswer(t *testing.T, method string, resp *http.Response, body []byte) {
	t.Helper()
	if resp.StatusCode < 200 || resp.StatusCode > 599 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if method == "HEAD" {
		return
	}
	if bytes.Contains(body, []byte(internalAddr)) {
		t.Fatalf("answer shows the engine's internal address: %q", body)
	}
	ct := resp.Header.Get("Content-Type")
	if resp.StatusCode >= 400 {
		if !isOpenAIError(body) && !isAnthropicError(body) {
			t.Fatalf("status %d without an OpenAI (or, for /v1/messages, Anthropic) error: %q", resp.StatusCode, body)
		}
		if (resp.StatusCode == 429 || resp.StatusCode == 503 || resp.StatusCode == 529) && resp.Header.Get("Retry-After") == "" {
			t.Fatalf("status %d without Retry-After", resp.StatusCode)
		}
		return
	}
	switch {
	case strings.HasPrefix(ct, "application/json"):
		if !json.Valid(body) {
			t.Fatalf("status %d: invalid JSON %q", resp.StatusCode, body)
		}
	case strings.HasPrefix(ct, "text/event-stream"):
		checkSSE(t, body)
	}
}

func isOpenAIError(b []byte) bool {
	var e apiError
	return json.Unmarshal(b, &e) == nil && e.Error.Message != "" && e.Error.Type != ""
}

func isAnthropicError(b []byte) bool {
	var e struct {
		Type  string `json:"type"`
		Error struct{ Type, Message string }
	}
	return json.Unmarshal(b, &e) == nil && e.Type == "error" && e.Error.Type != "" && e.Error.Message != ""
}

// checkSSE: every event is JSON, and the stream ends with [DONE] (OpenAI), message_stop
// (Anthropic) or an error event.
func checkSSE(t *testing.T, body []byte) {
	t.Helper()
	var last, lastEvent string
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" {
			continue
		}
		if ev, ok := strings.CutPrefix(line, "event: "); ok {
			lastEvent = ev
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("stream line %q is not an event", line)
		}
		if data != "[DONE]" && !json.Valid([]byte(data)) {
			t.Fatalf("stream event is not JSON: %q", data)
		}
		last = data
	}
	switch {
	case last == "[DONE]", strings.HasPrefix(last, `{"error":`) && isOpenAIError([]byte(last)):
	case lastEvent == "message_stop", lastEvent == "error" && isAnthropicError([]byte(last)):
	default:
		t.Fatalf("stream ends with %q (event %q), not [DONE], message_stop or an error", last, lastEvent)
	}
}

// settle checks that nothing is left in flight once every answer was read (a stream's
// end is written after its slot is given back; a connection cut short may finish a
// moment later).
func (g *testGateway) settle(t *testing.T) {
	t.Helper()
	eventually(t, "slots, queue and engine streams free", func() bool {
		return g.inflight() == 0 && g.queued() == 0 && g.Fake.open.Load() == 0
	})
}

// FuzzGatewayRequest sends well-framed HTTP requests whose method, path, sluice
// headers and body come from the fuzzer, so that it explores the request bodies.
func FuzzGatewayRequest(f *testing.F) {
	paths := []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/models/m",
		"/healthz", "/readyz", "/nope", "/admin/status", "/v1/messages"}
	seeds := []struct {
		path     uint8
		method   string
		priority string
		deadline string
		body     string
	}{
		{0, "POST", "", "", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
		{0, "POST", "batch", "", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"words 5"}]}`},
		{0, "POST", "", "50", `{"model":"m","stream":true,"messages":[{"role":"user","content":"midfail"}]}`},
		{0, "POST", "", "", `{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"unavailable"}]}`},
		{0, "POST", "", "", `{"model":"m","messages":[{"role":"user","content":"upstream"}],"max_tokens":3,"temperature":0.5}`},
		{1, "POST", "", "", `{"model":"m","prompt":["a","words 2"],"stream":true}`},
		{2, "POST", "", "", `{"model":"e","input":["x","y"],"encoding_format":"base64"}`},
		{2, "POST", "", "", `{"model":"m","input":"x"}`},
		{0, "POST", "urgent", "-1", `{"model":"nope","messages":[]}`},
		{3, "GET", "", "", ``},
		{4, "HEAD", "", "", ``},
		{0, "GET", "", "", `[1,2]`},
		{7, "DELETE", "", "", `{}`},
		{9, "POST", "", "", `{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"words 3"}]}`},
		{9, "POST", "", "", `{"model":"m","max_tokens":8,"stream":true,"system":"s","messages":[{"role":"user","content":[{"type":"text","text":"midfail"}]}]}`},
		{9, "POST", "", "", `{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"unavailable"}]}`},
	}
	for _, s := range seeds {
		f.Add(s.path, s.method, s.priority, s.deadline, []byte(s.body))
	}
	g := fuzzGateway(f)
	f.Fuzz(func(t *testing.T, path uint8, method, priority, deadline string, body []byte) {
		if !httpToken(method) || !headerValue(priority) || !headerValue(deadline) {
			return // not a request a client could frame; FuzzGatewayRaw covers broken framing
		}
		c, err := net.Dial("tcp", g.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var req bytes.Buffer
		fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", method, paths[int(path)%len(paths)], len(body))
		if priority != "" {
			fmt.Fprintf(&req, "X-Sluice-Priority: %s\r\n", priority)
		}
		if deadline != "" {
			fmt.Fprintf(&req, "X-Sluice-Deadline-Ms: %s\r\n", deadline)
		}
		req.WriteString("\r\n")
		req.Write(body)
		if _, err := c.Write(req.Bytes()); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
		if err != nil {
			t.Fatalf("no answer to a well-framed request: %v", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("answer cut short: %v", err)
		}
		checkAnswer(t, method, resp, b)
		g.settle(t)
	})
}

// FuzzGatewayRaw sends arbitrary bytes (one or more requests, broken framing, huge or
// chunked lengths) and then closes its sending side: whatever comes back must be
// well-formed HTTP answers, and nothing may be left in flight.
func FuzzGatewayRaw(f *testing.F) {
	for _, s := range []string{
		"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 57\r\n\r\n{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
		"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"mod\r\n0\r\n\r\n",
		"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n{",
		"POST /v1/embeddings HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
		"GARBAGE\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
	} {
		f.Add([]byte(s))
	}
	g := fuzzGateway(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := net.Dial("tcp", g.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(raw); err != nil {
			return // the server may close early on garbage
		}
		_ = c.(*net.TCPConn).CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		// The first answer is checked (its request's method is the first word sent: a
		// HEAD answer has no body); the rest are read to the end.
		if _, err := br.Peek(1); err == nil {
			method, _, _ := bytes.Cut(raw, []byte(" "))
			resp, err := http.ReadResponse(br, &http.Request{Method: string(method)})
			for err == nil && resp.StatusCode == http.StatusContinue {
				resp, err = http.ReadResponse(br, &http.Request{Method: string(method)})
			}
			if err != nil {
				t.Fatalf("malformed HTTP answer: %v", err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				checkAnswer(t, string(method), resp, b)
			} // else a stream cut short by the hang-up: the engine side is checked below
		}
		if _, err := io.Copy(io.Discard, br); err != nil {
			t.Fatalf("the server neither answered nor closed: %v", err)
		}
		g.settle(t)
	})
}

// httpToken reports whether s is a non-empty HTTP token (a method).
func httpToken(s string) bool {
	if s == "" || len(s) > 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// headerValue reports whether s can be sent as a header value.
func headerValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return false
		}
	}
	return len(s) < 256
}
