package gateway_test

import (
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-llm/sluice/gateway"
)

type apiError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func post(t testing.TB, url, body string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func chatBody(content string, stream bool) string {
	c, _ := json.Marshal(content)
	s := ""
	if stream {
		s = `"stream":true,`
	}
	return `{"model":"m",` + s + `"messages":[{"role":"user","content":` + string(c) + `}]}`
}

// TestServerErrorsHideInternals: an engine's failure reaches the client as a generic
// message with the request id; the dial error naming an internal address stays in the
// logs.
func TestServerErrorsHideInternals(t *testing.T) {
	for _, tc := range []struct {
		prompt string
		status int
		code   string
	}{
		{"unavailable", 503, "engine_unavailable"},
		{"upstream", 502, "engine_error"},
	} {
		t.Run(tc.prompt, func(t *testing.T) {
			g := startGateway(t, gateway.Options{}, 0) // a failed engine is taken out of rotation
			resp, b := post(t, g.URL+"/v1/chat/completions", chatBody(tc.prompt, false))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			var e apiError
			if err := json.Unmarshal(b, &e); err != nil || e.Error.Message == "" {
				t.Fatalf("not an OpenAI error: %s", b)
			}
			if strings.Contains(string(b), "10.9.8.7") || strings.Contains(string(b), "dial tcp") {
				t.Fatalf("client sees internal detail: %s", b)
			}
			id := resp.Header.Get("X-Request-Id")
			if id == "" || !strings.Contains(e.Error.Message, id) {
				t.Fatalf("message %q does not carry the request id %q", e.Error.Message, id)
			}
			if e.Error.Code == nil || *e.Error.Code != tc.code {
				t.Fatalf("code = %v, want %s", e.Error.Code, tc.code)
			}
		})
	}
	t.Run("mid-stream", func(t *testing.T) {
		g := startGateway(t, gateway.Options{}, 0)
		resp, b := post(t, g.URL+"/v1/chat/completions", chatBody("midfail", true))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		if !strings.Contains(string(b), `"error"`) {
			t.Fatalf("no error event: %s", b)
		}
		if strings.Contains(string(b), "10.9.8.7") {
			t.Fatalf("stream's error event shows internal detail: %s", b)
		}
		if id := resp.Header.Get("X-Request-Id"); id == "" || !strings.Contains(string(b), id) {
			t.Fatalf("error event does not carry the request id %q: %s", id, b)
		}
	})
}

// TestReadyzHidesReasons: /readyz names unhealthy engines but not why (a dial error with
// an internal address) unless the caller holds an admin key.
func TestReadyzHidesReasons(t *testing.T) {
	admin := sha256.Sum256([]byte("sk-admin"))
	ready := func() (bool, []byte) {
		return false, []byte(`{"status":"not ready","engines":[{"name":"local","healthy":false,"reason":"unreachable: dial tcp ` + internalAddr + `: refused","slots":2}]}`)
	}
	g := startGateway(t, gateway.Options{Ready: ready, AdminKeys: [][32]byte{admin}}, 0)
	get := func(key string) (int, string) {
		req, _ := http.NewRequest("GET", g.URL+"/readyz", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, b := get("")
	if code != 503 || strings.Contains(b, "10.9.8.7") || !strings.Contains(b, `"name":"local","healthy":false`) {
		t.Fatalf("readyz without a key = %d %s: want 503 naming the engine without the reason", code, b)
	}
	if code, b = get("sk-admin"); code != 503 || !strings.Contains(b, "10.9.8.7") {
		t.Fatalf("readyz with the admin key = %d %s: want the reason", code, b)
	}
}

// TestAnthropicErrorsHideInternals: the same on /v1/messages, in Anthropic's shape.
func TestAnthropicErrorsHideInternals(t *testing.T) {
	g := startGateway(t, gateway.Options{}, 0)
	resp, b := post(t, g.URL+"/v1/messages", `{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"unavailable"}]}`)
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Type != "error" || e.Error.Message == "" {
		t.Fatalf("not an Anthropic error: %d %s", resp.StatusCode, b)
	}
	if resp.StatusCode != 529 || strings.Contains(string(b), "10.9.8.7") {
		t.Fatalf("status %d, body %s", resp.StatusCode, b)
	}
	if id := resp.Header.Get("X-Request-Id"); id == "" || !strings.Contains(e.Error.Message, id) {
		t.Fatalf("message %q lacks the request id %q", e.Error.Message, id)
	}
}
