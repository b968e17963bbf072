package anthropic

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"

	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/upstream"
	"github.com/valyala/fastjson"
)

// FuzzStream feeds arbitrary event streams to the event parser: it must not panic,
// must end, and every tool-call delta it makes must be valid JSON.
func FuzzStream(f *testing.F) {
	f.Add([]byte("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n" +
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{}}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\"\"}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":9}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"))
	f.Add([]byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"))
	f.Add([]byte("data: {\"type\":\"content_block_start\",\"index\":99999999,\"content_block\":{\"type\":\"tool_use\"}}\n\ndata: [\n\n"))
	b := &Backend{opts: Options{Name: "fuzz"}}
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &stream{b: b, r: &models.Request{Kind: models.KindChat, Stream: true}, p: &fastjson.Parser{},
			sse: upstream.NewSSE(bytes.NewReader(in), 0)}
		defer s.sse.Release()
		for i := 0; i <= len(in)+1; i++ {
			c, err := s.Recv()
			if err != nil {
				if err == io.EOF && !s.finished {
					t.Fatalf("clean end without a finished message")
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

// FuzzFull feeds arbitrary bodies to the whole-answer parser.
func FuzzFull(f *testing.F) {
	f.Add([]byte(`{"content":[{"type":"text","text":"hi"},{"type":"tool_use","id":"t","name":"f","input":{"a":1}}],"stop_reason":"tool_use","usage":{"input_tokens":3,"output_tokens":4}}`))
	f.Add([]byte(`{"content":[{"type":"tool_use"}]}`))
	b := &Backend{opts: Options{Name: "fuzz"}}
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &stream{b: b, r: &models.Request{Kind: models.KindChat}, p: &fastjson.Parser{}}
		c, err := s.full(in)
		if err == nil && len(c.ToolCalls) > 0 && !json.Valid(c.ToolCalls) {
			t.Fatalf("invalid tool calls %q", c.ToolCalls)
		}
	})
}

// FuzzEncode encodes requests with arbitrary tools, tool calls and text: the body is
// valid JSON or the request is refused as invalid.
func FuzzEncode(f *testing.F) {
	f.Add("hi", `[{"id":"c","function":{"name":"f","arguments":"{\"a\":1}"}}]`, `[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]`, `"auto"`)
	f.Add("\x00\"\\", `[{"function":{"name":"f","arguments":{"x":[1]}}}]`, `[]`, `{"type":"function","function":{"name":"f"}}`)
	f.Fuzz(func(t *testing.T, text, calls, tools, choice string) {
		r := &models.Request{Kind: models.KindChat, Stream: true, Messages: []models.Message{
			{Role: "system", Content: text}, {Role: "user", Content: text, Images: [][]byte{[]byte(text)}},
			{Role: "assistant", Content: text, ToolCalls: []byte(calls)}, {Role: "tool", ToolCallID: text, Content: text}},
			Tools: []byte(tools), ToolChoice: []byte(choice), Sampling: models.Sampling{Stop: []string{text}}}
		body, err := encodeRequest(nil, "m", r, 10)
		if err != nil {
			if !isInvalid(err) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("invalid body %s", body)
		}
	})
}

func isInvalid(err error) bool {
	me, ok := err.(*models.Error)
	return ok && me.Kind == models.ErrInvalid
}
