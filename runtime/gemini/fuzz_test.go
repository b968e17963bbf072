package gemini

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"

	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/upstream"
	"github.com/valyala/fastjson"
)

// FuzzStream feeds arbitrary event streams to the response parser: it must not panic,
// must end, and every tool-call delta it makes must be valid JSON.
func FuzzStream(f *testing.F) {
	f.Add([]byte("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}],\"role\":\"model\"}}]}\r\n\r\n" +
		"data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":{\"a\":1}},\"thoughtSignature\":\"c2ln\"}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":2}}\r\n\r\n"))
	f.Add([]byte("data: {\"error\":{\"code\":429,\"status\":\"RESOURCE_EXHAUSTED\",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"x\"}]}}\n\n"))
	f.Add([]byte("data: {\"promptFeedback\":{\"blockReason\":\"SAFETY\"}}\n\ndata: [\n\n"))
	b := &Backend{opts: Options{Name: "fuzz"}}
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &stream{b: b, r: &models.Request{Kind: models.KindChat, Stream: true}, p: &fastjson.Parser{},
			sse: upstream.NewSSE(bytes.NewReader(in), 0)}
		defer s.sse.Release()
		for i := 0; i <= len(in)+1; i++ {
			c, err := s.Recv()
			if err != nil {
				if err == io.EOF && !s.finished {
					t.Fatalf("clean end without a finish reason")
				}
				_ = s.Usage()
				return
			}
			if len(c.ToolCalls) > 0 && !json.Valid(c.ToolCalls) {
				t.Fatalf("invalid tool calls %q", c.ToolCalls)
			}
		}
		t.Fatalf("more chunks than bytes")
	})
}

// FuzzError feeds arbitrary error bodies to the error reader.
func FuzzError(f *testing.F) {
	f.Add(429, []byte(`{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}`))
	f.Add(400, []byte(`[{"error":{"code":400,"message":"The input token count (9) exceeds the maximum number of tokens allowed (5).","status":"INVALID_ARGUMENT"}}]`))
	b := &Backend{opts: Options{Name: "fuzz"}}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		err := b.statusError(status, body, 0)
		if _, ok := err.(*models.Error); !ok {
			t.Fatalf("error %T is not a *models.Error", err)
		}
	})
}

// FuzzEncode encodes requests with arbitrary tools, tool calls and text: the body is
// valid JSON or the request is refused as invalid.
func FuzzEncode(f *testing.F) {
	f.Add("hi", `[{"id":"c__thought__s","function":{"name":"f","arguments":"{\"a\":1}"}}]`, `[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]`, `"required"`, `{"type":"json_object"}`)
	f.Add("{\"a\":", `[{"id":"x","function":{"name":"f","arguments":{"x":[1]}}}]`, `[]`, `{"type":"function","function":{"name":"f"}}`, `{"type":"json_schema","json_schema":{"schema":{}}}`)
	f.Fuzz(func(t *testing.T, text, calls, tools, choice, format string) {
		r := &models.Request{Kind: models.KindChat, Stream: true, Messages: []models.Message{
			{Role: "system", Content: text}, {Role: "user", Content: text, Images: [][]byte{[]byte(text)}},
			{Role: "assistant", Content: text, ToolCalls: []byte(calls)}, {Role: "tool", ToolCallID: "x", Name: text, Content: text}},
			Tools: []byte(tools), ToolChoice: []byte(choice), ResponseFormat: []byte(format), Sampling: models.Sampling{Stop: []string{text}}}
		body, err := encodeRequest(nil, r)
		if err != nil {
			if me, ok := err.(*models.Error); !ok || me.Kind != models.ErrInvalid {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("invalid body %s", body)
		}
	})
}
