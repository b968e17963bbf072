package gateway

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fastjson"
)

func TestParseAnthropic(t *testing.T) {
	body := `{"model":"claude-x","max_tokens":64,"stream":true,"temperature":0.3,"top_k":5,
	"system":[{"type":"text","text":"Be brief."},{"type":"text","text":"Be kind."}],
	"stop_sequences":["END"],"metadata":{"user_id":"u-7"},
	"tools":[{"name":"get_weather","description":"Weather now","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
	"tool_choice":{"type":"any","disable_parallel_tool_use":true},
	"messages":[
	 {"role":"user","content":"What's the weather in Paris?"},
	 {"role":"assistant","content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},
	 {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"18C"}]},{"type":"text","text":"And tomorrow?"},
	   {"type":"image","source":{"type":"base64","media_type":"image/png","data":"aGk="}}]}]}`
	var p fastjson.Parser
	var r models.Request
	if err := parseAnthropic(&p, []byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if r.Model != "claude-x" || !r.Stream || r.Sampling.MaxTokens != 64 || *r.Sampling.Temperature != 0.3 ||
		r.Sampling.Stop[0] != "END" || r.User != "u-7" || r.Tenant != "u-7" || r.Kind != models.KindChat {
		t.Fatalf("fields: %+v", r)
	}
	roles := []string{}
	for _, m := range r.Messages {
		roles = append(roles, m.Role)
	}
	if !reflect.DeepEqual(roles, []string{"system", "user", "assistant", "tool", "user"}) {
		t.Fatalf("roles = %v", roles)
	}
	if r.Messages[0].Content != "Be brief.\nBe kind." || r.Messages[3].ToolCallID != "toolu_1" || r.Messages[3].Content != "18C" ||
		string(r.Messages[4].Images[0]) != "hi" || r.Messages[4].Content != "And tomorrow?" {
		t.Fatalf("messages = %+v", r.Messages)
	}
	// The OpenAI body backends forward.
	var got map[string]any
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, r.Body)
	}
	want := map[string]any{
		"model": "claude-x", "max_tokens": 64.0, "stream": true, "stop": []any{"END"}, "temperature": 0.3, "user": "u-7",
		"messages": []any{
			map[string]any{"role": "system", "content": "Be brief.\nBe kind."},
			map[string]any{"role": "user", "content": "What's the weather in Paris?"},
			map[string]any{"role": "assistant", "content": "Let me check.", "tool_calls": []any{map[string]any{"id": "toolu_1", "type": "function",
				"function": map[string]any{"name": "get_weather", "arguments": `{"city":"Paris"}`}}}},
			map[string]any{"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
			map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "And tomorrow?"},
				map[string]any{"type": "image_url", "image_url": map[string]any{"url": "data:image/png;base64,aGk="}}}},
		},
		"tools": []any{map[string]any{"type": "function", "function": map[string]any{"name": "get_weather", "description": "Weather now",
			"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}}}},
		"tool_choice": "required", "parallel_tool_calls": false,
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		t.Fatalf("body:\n%s", g)
	}
	if string(r.ToolChoice) != `"required"` || !json.Valid(r.Tools) {
		t.Fatalf("tools %s choice %s", r.Tools, r.ToolChoice)
	}
}

func TestParseAnthropicToolChoice(t *testing.T) {
	for in, want := range map[string]string{
		`{"type":"auto"}`:            `"auto"`,
		`{"type":"none"}`:            `"none"`,
		`{"type":"tool","name":"f"}`: `{"type":"function","function":{"name":"f"}}`,
	} {
		body := `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":` + in + `}`
		var p fastjson.Parser
		var r models.Request
		if err := parseAnthropic(&p, []byte(body), &r); err != nil || string(r.ToolChoice) != want {
			t.Errorf("%s: %s, %v", in, r.ToolChoice, err)
		}
	}
}

func TestParseAnthropicErrors(t *testing.T) {
	for _, tt := range []struct{ body, param string }{
		{`{"model":"m","messages":[{"role":"user","content":"x"}]}`, "max_tokens"},
		{`{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}`, "model"},
		{`{"model":"m","max_tokens":1,"messages":[]}`, "messages"},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]}`, "messages.0.role"},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"document"}]}]}`, "messages.0.content.0.type"},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text"}]}]}`, "messages.0.content.0.text"},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_use","id":"a","name":"b","input":{}}]}]}`, "messages.0.content.0"},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"temperature":1.5}`, "temperature"},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"tools":[{"type":"web_search_20250305","name":"s"}]}`, "tools.0.type"},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"maybe"}}`, "tool_choice.type"},
		{`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"!!"}}]}]}`, "messages.0.content.0.source"},
	} {
		var p fastjson.Parser
		var r models.Request
		err := parseAnthropic(&p, []byte(tt.body), &r)
		var me *models.Error
		if !errors.As(err, &me) || !errors.Is(err, models.ErrInvalid) || me.Param != tt.param {
			t.Errorf("%s: %v (param %q), want %q", tt.body, err, paramOf(me), tt.param)
		}
	}
}

func TestAnthropicErrorShape(t *testing.T) {
	for _, tt := range []struct {
		err    error
		status int
		typ    string
	}{
		{models.InvalidParam("x", "bad"), 400, "invalid_request_error"},
		{models.Errorf(models.ErrAuth, "no key"), 401, "authentication_error"},
		{models.Errorf(models.ErrForbidden, "residency"), 403, "permission_error"},
		{models.Errorf(models.ErrNotFound, "no model"), 404, "not_found_error"},
		{models.Errorf(models.ErrSaturated, "full"), 429, "rate_limit_error"},
		{models.Errorf(models.ErrOverloaded, "busy"), 529, "overloaded_error"},
		{models.Errorf(models.ErrUpstream, "boom"), 502, "api_error"},
		{models.Errorf(models.ErrTimeout, "slow"), 504, "timeout_error"},
	} {
		status, typ := anthropicStatusOf(tt.err)
		var body struct {
			Type  string `json:"type"`
			Error struct{ Type, Message string }
		}
		if err := json.Unmarshal(appendAnthropicError(nil, tt.err, ""), &body); err != nil {
			t.Fatal(err)
		}
		// The client's own mistakes keep their message; server-side failures get a
		// generic one (their detail is logged).
		msgOK := body.Error.Message == tt.err.Error()
		if tt.status >= 500 {
			msgOK = body.Error.Message != "" && body.Error.Message != tt.err.Error()
		}
		if status != tt.status || typ != tt.typ || body.Type != "error" || body.Error.Type != tt.typ || !msgOK {
			t.Errorf("%v: %d %s %+v", tt.err, status, typ, body)
		}
	}
}

func FuzzParseAnthropic(f *testing.F) {
	f.Add([]byte(`{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`))
	f.Add([]byte(`{"model":"m","max_tokens":8,"system":"s","stream":true,"stop_sequences":["x"],"metadata":{"user_id":"u"},"messages":[{"role":"user","content":[{"type":"text","text":"a\"b"}]},{"role":"assistant","content":[{"type":"tool_use","id":"1","name":"f","input":{"a":[1,{"b":null}]}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"1","content":"ok","is_error":true}]}],"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"f"}}`))
	f.Add([]byte(`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"http://x/y.png"}}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p fastjson.Parser
		var r models.Request
		if err := parseAnthropic(&p, b, &r); err != nil {
			var me *models.Error
			if !errors.As(err, &me) || !errors.Is(err, models.ErrInvalid) {
				t.Fatalf("error of the wrong kind: %v", err)
			}
			return
		}
		// Whatever it accepts becomes a valid OpenAI body with at least one message.
		var body struct {
			Model    string            `json:"model"`
			Messages []json.RawMessage `json:"messages"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatalf("body is not JSON: %v\n%s", err, r.Body)
		}
		if body.Model != r.Model || r.Sampling.MaxTokens < 1 {
			t.Fatalf("body %s for %+v", r.Body, r)
		}
		if len(r.Tools) > 0 && !json.Valid(r.Tools) {
			t.Fatalf("tools not JSON: %s", r.Tools)
		}
	})
}
