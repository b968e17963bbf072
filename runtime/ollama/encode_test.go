package ollama

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/ollama/ollama/api"
	"github.com/sluice-llm/sluice/models"
)

func TestChatMessages(t *testing.T) {
	tests := []struct {
		name string
		in   []models.Message
		want string // JSON of the converted messages
	}{
		{
			name: "text and image",
			in:   []models.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "look", Images: [][]byte{[]byte("PNG")}}},
			want: `[{"role":"system","content":"be brief"},{"role":"user","content":"look","images":["UE5H"]}]`,
		},
		{
			name: "tool call with string arguments and a tool result found by id",
			in: []models.Message{
				{Role: "assistant", ToolCalls: []byte(`[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"days\":2}"}}]`)},
				{Role: "tool", Content: "sunny", ToolCallID: "call_1"},
			},
			want: `[{"role":"assistant","content":"","tool_calls":[{"id":"call_1","function":{"index":0,"name":"get_weather","arguments":{"city":"Paris","days":2}}}]},` +
				`{"role":"tool","content":"sunny","tool_name":"get_weather","tool_call_id":"call_1"}]`,
		},
		{
			name: "object and empty arguments, named tool result",
			in: []models.Message{
				{Role: "assistant", ToolCalls: []byte(`[{"id":"a","type":"function","function":{"name":"f","arguments":{"x":[1]}}},{"id":"b","type":"function","function":{"name":"g","arguments":""}}]`)},
				{Role: "tool", Name: "g", Content: "ok", ToolCallID: "b"},
			},
			want: `[{"role":"assistant","content":"","tool_calls":[{"id":"a","function":{"index":0,"name":"f","arguments":{"x":[1]}}},{"id":"b","function":{"index":1,"name":"g","arguments":{}}}]},` +
				`{"role":"tool","content":"ok","tool_name":"g","tool_call_id":"b"}]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chatMessages(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("got  %s\nwant %s", b, tt.want)
			}
		})
	}
}

func TestConversionErrors(t *testing.T) {
	tests := []struct {
		name  string
		conv  func() error
		param string
	}{
		{"tool_calls not an array", func() error {
			_, err := chatMessages([]models.Message{{Role: "assistant", ToolCalls: []byte(`{"id":1}`)}})
			return err
		}, "messages[0].tool_calls"},
		{"tool call arguments not an object", func() error {
			_, err := chatMessages([]models.Message{{Role: "user"}, {Role: "assistant", ToolCalls: []byte(`[{"function":{"name":"f","arguments":"[1,2]"}}]`)}})
			return err
		}, "messages[1].tool_calls"},
		{"tool call without name", func() error {
			_, err := chatMessages([]models.Message{{Role: "assistant", ToolCalls: []byte(`[{"function":{"arguments":"{}"}}]`)}})
			return err
		}, "messages[0].tool_calls"},
		{"tools not an array", func() error { _, err := chatTools([]byte(`{"type":"function"}`), nil); return err }, "tools"},
		{"tool of another type", func() error {
			_, err := chatTools([]byte(`[{"type":"retrieval","function":{"name":"f"}}]`), nil)
			return err
		}, "tools[0].type"},
		{"tool without name", func() error { _, err := chatTools([]byte(`[{"type":"function","function":{}}]`), nil); return err }, "tools[0].function.name"},
		{"response_format not an object", func() error { _, err := responseFormat([]byte(`"json"`)); return err }, "response_format"},
		{"response_format unknown type", func() error { _, err := responseFormat([]byte(`{"type":"xml"}`)); return err }, "response_format.type"},
		{"json_schema without schema", func() error {
			_, err := responseFormat([]byte(`{"type":"json_schema","json_schema":{"name":"x"}}`))
			return err
		}, "response_format.json_schema.schema"},
		{"embeddings without input", func() error {
			_, err := embedRequest("m", &models.Request{Kind: models.KindEmbedding}, nil)
			return err
		}, "input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.conv()
			var me *models.Error
			if !errors.As(err, &me) || !errors.Is(err, models.ErrInvalid) {
				t.Fatalf("err = %v, want a models.Error of kind ErrInvalid", err)
			}
			if me.Param != tt.param {
				t.Errorf("param = %q, want %q", me.Param, tt.param)
			}
		})
	}
}

func TestChatTools(t *testing.T) {
	raw := []byte(`[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
		{"function":{"name":"now"}}]`)
	tests := []struct {
		name   string
		choice string
		want   string
	}{
		{"no choice", "", `[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string"}}}}},` +
			`{"type":"function","function":{"name":"now","parameters":{"type":"object","properties":null}}}]`},
		{"auto", `"auto"`, `[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string"}}}}},` +
			`{"type":"function","function":{"name":"now","parameters":{"type":"object","properties":null}}}]`},
		{"none drops the tools", `"none"`, `null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chatTools(raw, []byte(tt.choice))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(got)
			if string(b) != tt.want {
				t.Errorf("got  %s\nwant %s", b, tt.want)
			}
		})
	}
}

func TestResponseFormat(t *testing.T) {
	tests := []struct{ in, want string }{
		{``, ``},
		{`null`, ``},
		{`{"type":"text"}`, ``},
		{`{"type":"json_object"}`, `"json"`},
		{`{"type":"json_schema","json_schema":{"name":"a","strict":true,"schema":{"type":"object","properties":{"a":{"type":"string"}}}}}`,
			`{"type":"object","properties":{"a":{"type":"string"}}}`},
	}
	for _, tt := range tests {
		got, err := responseFormat([]byte(tt.in))
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%s: got %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestSampling(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	seed := int64(7)
	tests := []struct {
		name string
		in   models.Sampling
		want map[string]any
	}{
		{"unset", models.Sampling{}, nil},
		{"all", models.Sampling{MaxTokens: 16, Temperature: f(0), TopP: f(0.5), Seed: &seed, Stop: []string{"\n"},
			PresencePenalty: f(0.1), FrequencyPenalty: f(-0.2)},
			map[string]any{"num_predict": 16, "temperature": 0.0, "top_p": 0.5, "seed": int64(7), "stop": []string{"\n"},
				"presence_penalty": 0.1, "frequency_penalty": -0.2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sampling(&tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
			// The server decodes the options into api.Options: check they fit.
			b, _ := json.Marshal(got)
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			var o api.Options
			if err := o.FromMap(m); err != nil {
				t.Errorf("server would reject the options: %v", err)
			}
		})
	}
}

func TestRequestsCarryModelStreamAndKeepAlive(t *testing.T) {
	ka := &api.Duration{Duration: -1}
	r := &models.Request{Kind: models.KindCompletion, Stream: true, Prompt: []string{"a", "b"}}
	g, err := generateRequest("m:latest", r, ka)
	if err != nil {
		t.Fatal(err)
	}
	if g.Model != "m:latest" || g.Prompt != "a\nb" || !g.Raw || g.Stream == nil || !*g.Stream || g.KeepAlive != ka {
		t.Errorf("generate request = %+v", g)
	}
	r.Stream = false
	c, err := chatRequest("m", &models.Request{Kind: models.KindChat}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Stream == nil || *c.Stream || c.KeepAlive != nil || c.Tools != nil || c.Format != nil {
		t.Errorf("chat request = %+v", c)
	}
	b, _ := json.Marshal(ka)
	if string(b) != "-1" {
		t.Errorf("negative keep-alive marshals as %s, want -1 (forever)", b)
	}
}

func TestAppendToolCalls(t *testing.T) {
	args := api.NewToolCallFunctionArguments()
	args.Set("city", "Paris")
	args.Set("days", 2)
	calls := []api.ToolCall{
		{ID: "call_x", Function: api.ToolCallFunction{Name: "get_weather", Arguments: args}},
		{Function: api.ToolCallFunction{Name: "now"}},
	}
	got := appendToolCalls(nil, calls, 3, func() string { return "call_new" })
	want := `[{"index":3,"id":"call_x","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"days\":2}"}},` +
		`{"index":4,"id":"call_new","type":"function","function":{"name":"now","arguments":"{}"}}]`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if id := newCallID(); len(id) != len("call_")+12 || id[:5] != "call_" {
		t.Errorf("newCallID() = %q", id)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		opts    Options
		wantErr bool
		slots   int
	}{
		{Options{Name: "a", URL: "http://127.0.0.1:11434"}, false, 1},
		{Options{Name: "a", URL: "http://127.0.0.1:11434", Slots: 4}, false, 4},
		{Options{Name: "a", URL: "127.0.0.1:11434"}, true, 0},
		{Options{Name: "a", URL: "ftp://host"}, true, 0},
		{Options{Name: "a", URL: "http://h", Slots: -1}, true, 0},
	}
	for _, tt := range tests {
		b, err := New(tt.opts)
		if (err != nil) != tt.wantErr {
			t.Errorf("New(%+v) err = %v, want error %v", tt.opts, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		c := b.Capacity()
		if c.Slots != tt.slots || c.Healthy || c.Reason == "" {
			t.Errorf("New(%+v).Capacity() = %+v, want %d slots, unhealthy until probed", tt.opts, c, tt.slots)
		}
		b.Close()
	}
}
