package gemini_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/cloudtest"
	"github.com/sluice-llm/sluice/runtime/gemini"
	"github.com/sluice-llm/sluice/runtime/gemini/geminitest"
	"go.uber.org/goleak"
)

var target = models.Target{Model: "gemini", Backend: "gemini-eu", UpstreamModel: "gemini-test", Region: "eu"}

func start(t *testing.T, o geminitest.Options) (*geminitest.Server, *gemini.Backend) {
	t.Helper()
	s := geminitest.New(o)
	b, err := gemini.New(gemini.Options{Name: "gemini-eu", BaseURL: s.URL, APIKey: "test-key", MaxConcurrency: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); s.Close() })
	return s, b
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func chat(stream bool, msgs ...models.Message) *models.Request {
	if len(msgs) == 0 {
		msgs = []models.Message{{Role: "system", Content: "You are terse."}, {Role: "user", Content: "Write about the sea."}}
	}
	return &models.Request{Kind: models.KindChat, Model: "gemini", Stream: stream, Messages: msgs}
}

type answer struct {
	role, text, finish string
	calls              []call
	chunks             int
}

type call struct{ id, name, args string }

func read(t *testing.T, st models.Stream) answer {
	t.Helper()
	var a answer
	for {
		c, err := st.Recv()
		if err == io.EOF {
			return a
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		if len(c.Raw) != 0 {
			t.Fatalf("chunk with Raw")
		}
		a.chunks++
		if c.Role != "" {
			a.role = c.Role
		}
		a.text += c.Text
		if c.FinishReason != "" {
			a.finish = c.FinishReason
		}
		if len(c.ToolCalls) > 0 {
			var calls []struct {
				Index    *int   `json:"index"`
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct{ Name, Arguments string }
			}
			if err := json.Unmarshal(c.ToolCalls, &calls); err != nil {
				t.Fatalf("tool calls %s: %v", c.ToolCalls, err)
			}
			for _, x := range calls {
				if x.Type != "function" || x.ID == "" {
					t.Fatalf("tool call %s", c.ToolCalls)
				}
				if x.Index != nil && *x.Index != len(a.calls) {
					t.Fatalf("tool call index %d, want %d", *x.Index, len(a.calls))
				}
				a.calls = append(a.calls, call{x.ID, x.Function.Name, x.Function.Arguments})
			}
		}
	}
}

func TestGenerate(t *testing.T) {
	s, b := start(t, geminitest.Options{ReplyTokens: 12})
	for _, stream := range []bool{false, true} {
		r := chat(stream)
		r.Sampling.MaxTokens = 50
		st, err := b.Open(ctx(t), target, r)
		if err != nil {
			t.Fatal(err)
		}
		a := read(t, st)
		u := st.Usage()
		st.Close()
		if a.role != "assistant" || a.text != strings.Join(cloudtest.Tokens(12), "") || a.finish != "stop" {
			t.Fatalf("stream=%v: %+v", stream, a)
		}
		if stream && a.chunks < 12 || !stream && a.chunks != 1 {
			t.Fatalf("stream=%v: %d chunks", stream, a.chunks)
		}
		if u.Estimated || u.CompletionTokens != 12 || u.PromptTokens <= 0 {
			t.Fatalf("stream=%v usage = %+v", stream, u)
		}
		got, _ := s.LastRequest()
		if got.Model != "gemini-test" || got.SystemInstruction == nil || got.SystemInstruction.Parts[0].Text != "You are terse." ||
			got.LastText() != "Write about the sea." || *got.GenerationConfig.MaxOutputTokens != 50 {
			t.Fatalf("the provider got %+v", got)
		}
	}
	if b.InFlight() != 0 {
		t.Fatalf("in flight = %d", b.InFlight())
	}
}

func TestMaxTokensAndSampling(t *testing.T) {
	s, b := start(t, geminitest.Options{ReplyTokens: 20})
	r := chat(true)
	temp, topP, seed := 1.5, 0.9, int64(42)
	r.Sampling = models.Sampling{MaxTokens: 4, Temperature: &temp, TopP: &topP, Seed: &seed, Stop: []string{"###"}}
	r.ResponseFormat = []byte(`{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}`)
	st, err := b.Open(ctx(t), target, r)
	if err != nil {
		t.Fatal(err)
	}
	if a := read(t, st); a.finish != "length" || a.text != strings.Join(cloudtest.Tokens(4), "") {
		t.Fatalf("answer = %+v", a)
	}
	st.Close()
	g := func() *geminitest.GenerationConfig { r, _ := s.LastRequest(); return r.GenerationConfig }()
	if *g.Temperature != 1.5 || *g.TopP != 0.9 || *g.Seed != 42 || g.StopSequences[0] != "###" ||
		g.ResponseMimeType != "application/json" || string(g.ResponseJSONSchema) != `{"type":"object"}` {
		t.Fatalf("generationConfig = %+v", g)
	}
}

const tools = `[{"type":"function","function":{"name":"get_weather","description":"Weather by city",
 "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}}},
 {"type":"function","function":{"name":"get_time"}}]`

// TestToolRoundTrip makes the model call two tools, then sends the calls and their
// results back as a client would, with Gemini 3's thought signatures required.
func TestToolRoundTrip(t *testing.T) {
	s, b := start(t, geminitest.Options{ThoughtSignatures: true, Reply: func(r *geminitest.Request) geminitest.Reply {
		if r.LastText() == "" {
			return geminitest.Reply{Text: "18 C at noon."}
		}
		return geminitest.Reply{Text: "Checking.", Calls: []geminitest.Call{{Name: "get_weather", Args: `{"city":"Paris"}`}, {Name: "get_time"}}}
	}})
	for _, stream := range []bool{true, false} {
		r := chat(stream, models.Message{Role: "user", Content: "Weather and time in Paris?"})
		r.Tools, r.ToolChoice = []byte(tools), []byte(`"required"`)
		st, err := b.Open(ctx(t), target, r)
		if err != nil {
			t.Fatal(err)
		}
		a := read(t, st)
		st.Close()
		if a.finish != "tool_calls" || a.text != "Checking." || len(a.calls) != 2 || a.calls[0].name != "get_weather" ||
			a.calls[0].args != `{"city":"Paris"}` || a.calls[1].args != `{}` || !strings.Contains(a.calls[0].id, "__thought__") {
			t.Fatalf("stream=%v: %+v", stream, a)
		}
		got, _ := s.LastRequest()
		fd := got.Tools[0].FunctionDeclarations
		if len(fd) != 2 || fd[0].Description != "Weather by city" || !strings.Contains(string(fd[0].ParametersJSONSchema), `"additionalProperties":false`) ||
			len(fd[1].ParametersJSONSchema) != 0 || got.ToolConfig.FunctionCallingConfig.Mode != "ANY" {
			t.Fatalf("tools sent = %+v / %+v", got.Tools, got.ToolConfig)
		}

		callsJSON, _ := json.Marshal([]map[string]any{
			{"id": a.calls[0].id, "type": "function", "function": map[string]any{"name": a.calls[0].name, "arguments": a.calls[0].args}},
			{"id": a.calls[1].id, "type": "function", "function": map[string]any{"name": a.calls[1].name, "arguments": a.calls[1].args}}})
		r2 := chat(stream,
			models.Message{Role: "user", Content: "Weather and time in Paris?"},
			models.Message{Role: "assistant", Content: a.text, ToolCalls: callsJSON},
			models.Message{Role: "tool", ToolCallID: a.calls[0].id, Content: `{"temp":"18 C"}`},
			models.Message{Role: "tool", ToolCallID: a.calls[1].id, Content: "noon"})
		r2.Tools = []byte(tools)
		st, err = b.Open(ctx(t), target, r2)
		if err != nil {
			t.Fatalf("stream=%v: sending the calls back: %v", stream, err)
		}
		if a2 := read(t, st); a2.text != "18 C at noon." || a2.finish != "stop" {
			t.Fatalf("stream=%v: %+v", stream, a2)
		}
		st.Close()
		got, _ = s.LastRequest()
		model, results := got.Contents[1], got.Contents[2]
		if model.Role != "model" || len(model.Parts) != 3 || model.Parts[1].FunctionCall.Name != "get_weather" || model.Parts[1].ThoughtSignature == "" {
			t.Fatalf("model turn = %+v", model)
		}
		if results.Role != "user" || len(results.Parts) != 2 || results.Parts[0].FunctionResponse.Name != "get_weather" ||
			string(results.Parts[0].FunctionResponse.Response) != `{"temp":"18 C"}` ||
			string(results.Parts[1].FunctionResponse.Response) != `{"output":"noon"}` {
			t.Fatalf("results turn = %+v", results)
		}
	}
}

func TestImages(t *testing.T) {
	s, b := start(t, geminitest.Options{})
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00")
	st, err := b.Open(ctx(t), target, chat(false, models.Message{Role: "user", Content: "What is this?", Images: [][]byte{png}}))
	if err != nil {
		t.Fatal(err)
	}
	read(t, st)
	st.Close()
	got, _ := s.LastRequest()
	p := got.Contents[0].Parts
	if len(p) != 2 || p[0].InlineData == nil || p[0].InlineData.MimeType != "image/png" || p[1].Text != "What is this?" {
		t.Fatalf("parts = %+v", p)
	}
}

func TestErrors(t *testing.T) {
	s, b := start(t, geminitest.Options{ContextTokens: 100})
	cases := []struct {
		name   string
		fail   *geminitest.Failure
		req    *models.Request
		kind   error
		code   string
		retry  time.Duration
		stream bool
	}{
		{name: "429", fail: &geminitest.Failure{Status: 429, RetryDelay: "37s"}, kind: models.ErrOverloaded, code: "provider_rate_limited", retry: 37 * time.Second},
		{name: "503", fail: &geminitest.Failure{Status: 503}, kind: models.ErrOverloaded, code: "provider_overloaded"},
		{name: "500", fail: &geminitest.Failure{Status: 500}, kind: models.ErrUpstream, code: "provider_error"},
		{name: "400", fail: &geminitest.Failure{Status: 400}, kind: models.ErrInvalid},
		{name: "404", fail: &geminitest.Failure{Status: 404}, kind: models.ErrUpstream, code: "provider_not_found"},
		{name: "context", req: chat(true, models.Message{Role: "user", Content: strings.Repeat("many words ", 100)}),
			kind: models.ErrInvalid, code: "context_length_exceeded"},
		{name: "error before any token", fail: &geminitest.Failure{Status: 503, InStream: true}, stream: true,
			kind: models.ErrOverloaded, code: "provider_overloaded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fail != nil {
				s.Fail(*tc.fail)
			}
			r := tc.req
			if r == nil {
				r = chat(tc.stream)
			}
			_, err := b.Open(ctx(t), target, r)
			var me *models.Error
			if !errors.Is(err, tc.kind) || !errors.As(err, &me) || me.Code != tc.code {
				t.Fatalf("err = %#v, want %v code %q", err, tc.kind, tc.code)
			}
			if tc.retry > 0 && me.RetryAfter != tc.retry {
				t.Fatalf("RetryAfter = %v, want %v", me.RetryAfter, tc.retry)
			}
			if b.InFlight() != 0 {
				t.Fatalf("in flight = %d", b.InFlight())
			}
		})
	}
}

func TestBadKey(t *testing.T) {
	s := geminitest.New(geminitest.Options{})
	defer s.Close()
	b, err := gemini.New(gemini.Options{Name: "gemini-eu", BaseURL: s.URL, APIKey: "AIza-secret-key"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = b.Open(ctx(t), target, chat(false))
	var me *models.Error
	if !errors.Is(err, models.ErrUpstream) || !errors.As(err, &me) || me.Code != "provider_auth_failed" || strings.Contains(err.Error(), "secret") {
		t.Fatalf("bad key (a 400 from Gemini): %v", err)
	}
}

func TestErrorMidStream(t *testing.T) {
	s, b := start(t, geminitest.Options{ReplyTokens: 10})
	s.Fail(geminitest.Failure{Status: 429, InStream: true, AfterTokens: 3})
	st, err := b.Open(ctx(t), target, chat(true))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	text := ""
	for {
		c, err := st.Recv()
		if err != nil {
			if !errors.Is(err, models.ErrOverloaded) {
				t.Fatalf("mid-stream error = %v", err)
			}
			break
		}
		text += c.Text
	}
	if text != strings.Join(cloudtest.Tokens(3), "") {
		t.Fatalf("text = %q", text)
	}
	if u := st.Usage(); !u.Estimated || u.PromptTokens <= 0 || u.CompletionTokens <= 0 {
		t.Fatalf("usage = %+v", u)
	}
}

func TestStreamCut(t *testing.T) {
	s, b := start(t, geminitest.Options{ReplyTokens: 1000, Latency: cloudtest.Latency{TokensPerSecond: 1000}})
	st, err := b.Open(ctx(t), target, chat(true))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	s.Close() // the provider goes away mid-answer
	var rerr error
	for rerr == nil {
		_, rerr = st.Recv()
	}
	if rerr == io.EOF || !(errors.Is(rerr, models.ErrUpstream) || errors.Is(rerr, models.ErrUnavailable)) {
		t.Fatalf("a cut stream ended with %v", rerr)
	}
}

func TestCancelMidStream(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := geminitest.New(geminitest.Options{ReplyTokens: 2000, Latency: cloudtest.Latency{TokensPerSecond: 200}})
	b, err := gemini.New(gemini.Options{Name: "gemini-eu", BaseURL: s.URL, APIKey: "test-key"})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	st, err := b.Open(cctx, target, chat(true))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	var rerr error
	for rerr == nil {
		_, rerr = st.Recv()
	}
	if !errors.Is(rerr, models.ErrCanceled) {
		t.Fatalf("Recv after cancel = %v", rerr)
	}
	st.Close()
	select {
	case <-s.Canceled():
	case <-time.After(10 * time.Second):
		t.Fatal("the provider never saw the request end")
	}
	if b.InFlight() != 0 {
		t.Fatalf("in flight = %d", b.InFlight())
	}
	b.Close()
	s.Close()
}

func TestKeepAlive(t *testing.T) {
	_, b := start(t, geminitest.Options{ReplyTokens: 3})
	once := func(stream bool) {
		st, err := b.Open(ctx(t), target, chat(stream))
		if err != nil {
			t.Fatal(err)
		}
		read(t, st)
		st.Close()
	}
	once(true)
	before := b.Dials()
	for _, stream := range []bool{true, false, true} {
		once(stream)
	}
	if d := b.Dials() - before; d != 0 {
		t.Fatalf("%d new connections for 3 sequential requests", d)
	}
}

func TestCapacity(t *testing.T) {
	_, b := start(t, geminitest.Options{})
	if c := b.Capacity(); !c.Healthy || c.Slots != 5 {
		t.Fatalf("capacity = %+v", c)
	}
	b.SetCircuit(true, "")
	if b.Capacity().Healthy {
		t.Fatal("open circuit reported healthy")
	}
}
