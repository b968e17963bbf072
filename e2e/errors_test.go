package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/internal/enginetest"
)

type apiError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func do(t *testing.T, method, url, body string) (*http.Response, apiError) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e apiError
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(b, &e); err != nil || e.Error.Message == "" {
			t.Fatalf("%s %s: status %d, body is not an OpenAI error: %s", method, url, resp.StatusCode, b)
		}
	}
	return resp, e
}

func TestHTTPErrors(t *testing.T) {
	st := startStack(t, stackOptions{maxBody: 4096})
	chat := st.URL + "/v1/chat/completions"
	tests := []struct {
		name, method, url, body string
		status                  int
		param, code             string
	}{
		{"malformed json", "POST", chat, `{"model":"tiny",`, 400, "", ""},
		{"not an object", "POST", chat, `[1,2]`, 400, "", ""},
		{"empty body", "POST", chat, ``, 400, "", ""},
		{"missing model", "POST", chat, `{"messages":[{"role":"user","content":"hi"}]}`, 400, "model", ""},
		{"model wrong type", "POST", chat, `{"model":7,"messages":[{"role":"user","content":"hi"}]}`, 400, "model", ""},
		{"missing messages", "POST", chat, `{"model":"tiny"}`, 400, "messages", ""},
		{"messages wrong type", "POST", chat, `{"model":"tiny","messages":"hi"}`, 400, "messages", ""},
		{"bad role", "POST", chat, `{"model":"tiny","messages":[{"role":"wizard","content":"hi"}]}`, 400, "messages[0].role", ""},
		{"content wrong type", "POST", chat, `{"model":"tiny","messages":[{"role":"user","content":5}]}`, 400, "messages[0].content", ""},
		{"stream wrong type", "POST", chat, `{"model":"tiny","stream":"yes","messages":[{"role":"user","content":"hi"}]}`, 400, "stream", ""},
		{"max_tokens wrong type", "POST", chat, `{"model":"tiny","max_tokens":"many","messages":[{"role":"user","content":"hi"}]}`, 400, "max_tokens", ""},
		{"temperature out of range", "POST", chat, `{"model":"tiny","temperature":9,"messages":[{"role":"user","content":"hi"}]}`, 400, "temperature", ""},
		{"unknown model", "POST", chat, `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, 404, "model", "model_not_found"},
		{"body too large", "POST", chat, `{"model":"tiny","messages":[{"role":"user","content":"` + strings.Repeat("x", 5000) + `"}]}`, 413, "", "request_too_large"},
		{"unknown route", "GET", st.URL + "/v1/nothing", ``, 404, "", "unknown_route"},
		{"wrong method", "GET", chat, ``, 405, "", "method_not_allowed"},
		{"wrong method models", "DELETE", st.URL + "/v1/models", ``, 405, "", "method_not_allowed"},
		{"embeddings missing input", "POST", st.URL + "/v1/embeddings", `{"model":"tiny-embed"}`, 400, "input", ""},
		{"completions prompt wrong type", "POST", st.URL + "/v1/completions", `{"model":"tiny","prompt":{"a":1}}`, 400, "prompt", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, e := do(t, tt.method, tt.url, tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tt.status, e.Error.Message)
			}
			if tt.param != "" && (e.Error.Param == nil || *e.Error.Param != tt.param) {
				t.Errorf("param = %v, want %q (%s)", e.Error.Param, tt.param, e.Error.Message)
			}
			if tt.code != "" && (e.Error.Code == nil || *e.Error.Code != tt.code) {
				t.Errorf("code = %v, want %q", e.Error.Code, tt.code)
			}
			if tt.status == 405 && resp.Header.Get("Allow") == "" {
				t.Errorf("405 without Allow header")
			}
		})
	}
}

// TestEngineDown: a dead engine answers 503 with Retry-After, both when the scheduler
// already knows and when it finds out on the request.
func TestEngineDown(t *testing.T) {
	st := startStack(t, stackOptions{})
	st.Chat.Kill()
	body := `{"model":"tiny","messages":[{"role":"user","content":"hi"}]}`
	for i := range 2 {
		resp, e := do(t, "POST", st.URL+"/v1/chat/completions", body)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("try %d: status %d Retry-After %q: %s", i, resp.StatusCode, resp.Header.Get("Retry-After"), e.Error.Message)
		}
		// The dial error (with the engine's address) is for the logs; the client gets
		// a generic message and the request id to find them.
		if id := resp.Header.Get("X-Request-Id"); strings.Contains(e.Error.Message, "127.0.0.1") ||
			strings.Contains(e.Error.Message, "dial") || id == "" || !strings.Contains(e.Error.Message, id) {
			t.Fatalf("try %d: message %q (request id %q)", i, e.Error.Message, id)
		}
	}
	resp, err := http.Get(st.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(b), `"name":"local","healthy":false`) {
		t.Fatalf("readyz with a dead engine = %d %s, want 503 naming the engine", resp.StatusCode, b)
	}
}

// streamReq opens a raw streaming chat request and returns the connection and reader
// positioned at the body.
func streamReq(t *testing.T, base string, maxTokens int) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"model":"tiny","stream":true,"max_tokens":%d,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Tell a very long story."}]}`, maxTokens)
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, "200") {
		t.Fatalf("status line %q: %v", status, err)
	}
	return conn, br
}

// TestEngineErrorMidStream: the engine dies while streaming; the client gets the
// chunks so far, a usage chunk, an SSE error event, and the stream closes.
func TestEngineErrorMidStream(t *testing.T) {
	st := startStack(t, stackOptions{})
	conn, br := streamReq(t, st.URL, 1900)
	defer conn.Close()
	var events []string
	killed := false
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			break
		}
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		events = append(events, strings.TrimSpace(line[6:]))
		if len(events) == 5 && !killed {
			st.Chat.Kill()
			killed = true
		}
		if strings.Contains(line, `"error"`) {
			break
		}
	}
	if len(events) < 6 {
		t.Fatalf("events: %v", events)
	}
	last := events[len(events)-1]
	var e apiError
	if err := json.Unmarshal([]byte(last), &e); err != nil || e.Error.Message == "" {
		t.Fatalf("last event is not an error: %s", last)
	}
	usage := events[len(events)-2]
	if !strings.Contains(usage, `"usage":{"prompt_tokens":`) || !strings.Contains(usage, `"choices":[]`) {
		t.Fatalf("no usage chunk before the error: %s", usage)
	}
	for _, ev := range events {
		if ev == "[DONE]" {
			t.Fatalf("[DONE] sent after an engine failure")
		}
	}
}

func slotsBusy(t *testing.T, engineURL string) int {
	resp, err := http.Get(engineURL + "/slots")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var slots []struct {
		IsProcessing bool `json:"is_processing"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&slots); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range slots {
		if s.IsProcessing {
			n++
		}
	}
	return n
}

// TestClientDisconnect: a client that goes away mid-stream cancels the engine request
// and frees its slot within 100 ms, and the gateway's slot too.
func TestClientDisconnect(t *testing.T) {
	eng := enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Slots: 1})
	st := startStack(t, stackOptions{slots: 1, chatOverride: eng})
	var worst time.Duration
	for round := range 3 {
		conn, br := streamReq(t, st.URL, 1900)
		for n := 0; n < 8; {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(line, "data: ") {
				n++
			}
		}
		if busy := slotsBusy(t, eng.URL); busy != 1 {
			t.Fatalf("round %d: engine slots busy while streaming = %d, want 1", round, busy)
		}
		conn.Close()
		closed := time.Now()
		for slotsBusy(t, eng.URL) != 0 {
			if time.Since(closed) > 5*time.Second {
				t.Fatalf("round %d: engine slot still busy 5s after the client left", round)
			}
			time.Sleep(2 * time.Millisecond) // polling another process's state
		}
		worst = max(worst, time.Since(closed))
		// The gateway's slot is free too: with one slot, a new request goes through.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c := client(st)
		_, err := c.Chat.Completions.New(ctx, chatParams("tiny", 4))
		cancel()
		if err != nil {
			t.Fatalf("round %d: request after disconnect: %v", round, err)
		}
	}
	t.Logf("engine slot freed %v after the client disconnected (worst of 3)", worst)
	if worst > 100*time.Millisecond {
		t.Fatalf("engine slot freed %v after disconnect, want within 100ms", worst)
	}
}
