package gateway

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fastjson"
)

func TestParseChat(t *testing.T) {
	body := `{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":9,"temperature":0.5,
	"stop":"x","seed":4,"user":"alice","tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"auto",
	"response_format":{"type":"json_object"},
	"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"},
	{"type":"image_url","image_url":{"url":"data:image/png;base64,aGk="}}]},{"role":"assistant","content":null,"tool_calls":[{"id":"1"}]},
	{"role":"tool","tool_call_id":"1","content":"r"}]}`
	var p fastjson.Parser
	var r models.Request
	if err := parseRequest(&p, models.KindChat, []byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if r.Model != "m" || !r.Stream || !r.IncludeUsage || r.Sampling.MaxTokens != 9 || *r.Sampling.Temperature != 0.5 ||
		len(r.Sampling.Stop) != 1 || *r.Sampling.Seed != 4 || r.Tenant != "alice" {
		t.Fatalf("fields: %+v", r)
	}
	if len(r.Messages) != 4 || r.Messages[1].Content != "a\nb" || string(r.Messages[1].Images[0]) != "hi" ||
		string(r.Messages[2].ToolCalls) != `[{"id":"1"}]` || r.Messages[3].ToolCallID != "1" {
		t.Fatalf("messages: %+v", r.Messages)
	}
	if !json.Valid(r.Tools) || string(r.ToolChoice) != `"auto"` || string(r.ResponseFormat) != `{"type":"json_object"}` {
		t.Fatalf("passthrough: %s %s %s", r.Tools, r.ToolChoice, r.ResponseFormat)
	}
}

func TestParseErrorsNameParam(t *testing.T) {
	tests := []struct {
		kind  models.Kind
		body  string
		param string
	}{
		{models.KindChat, `{"model":"m","messages":[{"role":"user","content":[{"type":"text"}]}]}`, "messages[0].content[0].text"},
		{models.KindChat, `{"model":"m","messages":[{"role":"user"}]}`, "messages[0].content"},
		{models.KindChat, `{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}`, "n"},
		{models.KindChat, `{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[1]}`, "stop"},
		{models.KindChat, `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":{}}`, "tools"},
		{models.KindChat, `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}`, "max_tokens"},
		{models.KindEmbedding, `{"model":"m","input":[]}`, "input"},
		{models.KindEmbedding, `{"model":"m","input":"x","encoding_format":"hex"}`, "encoding_format"},
		{models.KindCompletion, `{"model":"m","prompt":[[1,2]]}`, "prompt"},
	}
	for _, tt := range tests {
		var p fastjson.Parser
		var r models.Request
		err := parseRequest(&p, tt.kind, []byte(tt.body), &r)
		var me *models.Error
		if !errors.As(err, &me) || !errors.Is(err, models.ErrInvalid) || me.Param != tt.param {
			t.Errorf("%s: err = %v (param %q), want param %q", tt.body, err, paramOf(me), tt.param)
		}
	}
}

func paramOf(e *models.Error) string {
	if e == nil {
		return ""
	}
	return e.Param
}

func TestEncodersProduceValidJSON(t *testing.T) {
	a := answer{id: "chatcmpl-1", model: "m\"odel", created: 1, kind: models.KindChat}
	u := models.Usage{PromptTokens: 3, CompletionTokens: 2, CachedTokens: 1}
	outs := [][]byte{
		a.appendFull(nil, "", "hi \"there\"\n", nil, "", u),
		a.appendFull(nil, "assistant", "", []byte(`[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]`), "tool_calls", u),
		a.appendChunk(nil, &models.Chunk{Role: "assistant"}),
		a.appendChunk(nil, &models.Chunk{Text: "x", FinishReason: "stop"}),
		a.appendUsageChunk(nil, u),
		a.appendEmbeddings(nil, [][]float32{{0.5, -1}}, "", u),
		a.appendEmbeddings(nil, [][]float32{{0.5, -1}}, "base64", u),
		appendErrorJSON(nil, models.InvalidParam("x", "bad \"x\""), ""),
	}
	a.kind = models.KindCompletion
	outs = append(outs, a.appendFull(nil, "", "t", nil, "length", u), a.appendChunk(nil, &models.Chunk{Text: "t"}))
	for i, o := range outs {
		if !json.Valid(o) {
			t.Errorf("output %d is not valid JSON: %s", i, o)
		}
	}
}

// FuzzParseRequest: any body either parses or fails with an ErrInvalid *models.Error
// (a 400 with a message), never a panic or another error kind.
func FuzzParseRequest(f *testing.F) {
	f.Add(uint8(1), []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	f.Add(uint8(1), []byte(`{"model":"m","stream":true,"messages":[{"role":"user","content":[{"type":"text","text":"a"}]}]}`))
	f.Add(uint8(2), []byte(`{"model":"m","prompt":["a","b"],"max_tokens":3}`))
	f.Add(uint8(3), []byte(`{"model":"m","input":"x"}`))
	f.Add(uint8(1), []byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:x;base64,!!"}}]}]}`))
	f.Fuzz(func(t *testing.T, k uint8, body []byte) {
		kind := models.Kind(k%3 + 1)
		var p fastjson.Parser
		var r models.Request
		err := parseRequest(&p, kind, body, &r)
		if err == nil {
			if r.Model == "" {
				t.Fatalf("accepted a request without a model: %s", body)
			}
			return
		}
		var me *models.Error
		if !errors.As(err, &me) || !errors.Is(err, models.ErrInvalid) || me.Msg == "" {
			t.Fatalf("error %v is not an ErrInvalid *models.Error", err)
		}
		if !json.Valid(appendErrorJSON(nil, err, "id1")) {
			t.Fatalf("error JSON invalid for %v", err)
		}
	})
}
