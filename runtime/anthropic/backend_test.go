package anthropic_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/anthropic"
	"github.com/sluice-llm/sluice/runtime/anthropic/anthropictest"
	"github.com/sluice-llm/sluice/runtime/cloudtest"
	"go.uber.org/goleak"
)

var target = models.Target{Model: "claude", Backend: "claude-eu", UpstreamModel: "claude-test", Region: "eu"}

func start(t *testing.T, o anthropictest.Options) (*anthropictest.Server, *anthropic.Backend) {
	t.Helper()
	s := anthropictest.New(o)
	b, err := anthropic.New(anthropic.Options{Name: "claude-eu", BaseURL: s.URL, APIKey: "test-key", MaxConcurrency: 3})
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
	return &models.Request{Kind: models.KindChat, Model: "claude", Stream: stream, Messages: msgs}
}

// answer is a whole answer read from a stream.
type answer struct {
	role, text, finish string
	calls              []call
	chunks             int
	usage              *models.Usage
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
		if len(c.Raw) != 0 || c.Format != models.FormatNone {
			t.Fatalf("chunk with Raw: the gateway must encode from the structured fields")
		}
		a.chunks++
		if c.Role != "" {
			a.role = c.Role
		}
		a.text += c.Text
		if c.FinishReason != "" {
			a.finish = c.FinishReason
		}
		if c.Usage != nil {
			a.usage = c.Usage
		}
		a.calls = mergeCalls(t, a.calls, c.ToolCalls)
	}
}

// mergeCalls applies OpenAI tool-call deltas (or a whole array) the way an OpenAI client
// accumulates them.
func mergeCalls(t *testing.T, acc []call, raw []byte) []call {
	if len(raw) == 0 {
		return acc
	}
	var deltas []struct {
		Index    *int   `json:"index"`
		ID       string `json:"id"`
		Type     string `json:"type"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &deltas); err != nil {
		t.Fatalf("tool calls %s: %v", raw, err)
	}
	for i, d := range deltas {
		idx := len(acc)
		if d.Index != nil {
			idx = *d.Index
		} else {
			idx = len(acc) + i - i // a whole array: append in order
		}
		for len(acc) <= idx {
			acc = append(acc, call{})
		}
		if d.ID != "" {
			if d.Type != "function" {
				t.Fatalf("tool call %s without type function", raw)
			}
			acc[idx].id = d.ID
		}
		acc[idx].name += d.Function.Name
		acc[idx].args += d.Function.Arguments
	}
	return acc
}

func TestChat(t *testing.T) {
	s, b := start(t, anthropictest.Options{ReplyTokens: 12})
	st, err := b.Open(ctx(t), target, chat(false))
	if err != nil {
		t.Fatal(err)
	}
	a := read(t, st)
	u := st.Usage()
	st.Close()
	if a.chunks != 1 || a.role != "assistant" || a.text != strings.Join(cloudtest.Tokens(12), "") || a.finish != "stop" {
		t.Fatalf("answer = %+v", a)
	}
	if u.Estimated || u.CompletionTokens != 12 || u.PromptTokens <= 0 || a.usage == nil || *a.usage != u {
		t.Fatalf("usage = %+v (chunk %+v)", u, a.usage)
	}
	got, _ := s.LastRequest()
	if got.Model != "claude-test" || *got.MaxTokens != anthropic.DefaultMaxTokens || got.SystemText != "You are terse." ||
		len(got.Messages) != 1 || got.LastText() != "Write about the sea." || got.Stream {
		t.Fatalf("the provider got %+v", got)
	}
	if b.InFlight() != 0 {
		t.Fatalf("in flight after close: %d", b.InFlight())
	}
}

func TestStream(t *testing.T) {
	_, b := start(t, anthropictest.Options{ReplyTokens: 15})
	r := chat(true)
	r.Sampling.MaxTokens = 100
	st, err := b.Open(ctx(t), target, r)
	if err != nil {
		t.Fatal(err)
	}
	a := read(t, st)
	u := st.Usage()
	st.Close()
	if a.role != "assistant" || a.text != strings.Join(cloudtest.Tokens(15), "") || a.finish != "stop" || a.chunks < 15 {
		t.Fatalf("answer = %+v", a)
	}
	if u.Estimated || u.CompletionTokens != 15 || u.PromptTokens <= 0 {
		t.Fatalf("usage = %+v", u)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("Recv after Close = %v", err)
	}
}

func TestFinishReasons(t *testing.T) {
	_, b := start(t, anthropictest.Options{ReplyTokens: 20})
	for _, stream := range []bool{false, true} {
		r := chat(stream)
		r.Sampling.MaxTokens = 5
		st, err := b.Open(ctx(t), target, r)
		if err != nil {
			t.Fatal(err)
		}
		if a := read(t, st); a.finish != "length" || a.text != strings.Join(cloudtest.Tokens(5), "") {
			t.Fatalf("stream=%v max_tokens: %+v", stream, a)
		}
		st.Close()

		r = chat(stream)
		r.Sampling.Stop = []string{" request"} // the default reply holds " request"
		st, err = b.Open(ctx(t), target, r)
		if err != nil {
			t.Fatal(err)
		}
		if a := read(t, st); a.finish != "stop" || strings.Contains(a.text, "request") || a.text == "" {
			t.Fatalf("stream=%v stop sequence: %+v", stream, a)
		}
		st.Close()
	}
}

func toolReply(*anthropictest.Request) anthropictest.Reply {
	return anthropictest.Reply{Text: "Checking.", ToolCalls: []anthropictest.ToolUse{
		{ID: "toolu_a", Name: "get_weather", Input: `{"city":"Paris","days":[1,2,3],"note":"a \"quoted\" word"}`},
		{ID: "toolu_b", Name: "get_time", Input: `{"zone":"CET"}`}}}
}

const tools = `[{"type":"function","function":{"name":"get_weather","description":"Weather by city",
 "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
 {"type":"function","function":{"name":"get_time"}}]`

func TestTools(t *testing.T) {
	s, b := start(t, anthropictest.Options{Reply: toolReply})
	for _, stream := range []bool{false, true} {
		r := chat(stream)
		r.Tools = []byte(tools)
		r.ToolChoice = []byte(`"required"`)
		st, err := b.Open(ctx(t), target, r)
		if err != nil {
			t.Fatal(err)
		}
		a := read(t, st)
		st.Close()
		want := []call{{"toolu_a", "get_weather", `{"city":"Paris","days":[1,2,3],"note":"a \"quoted\" word"}`},
			{"toolu_b", "get_time", `{"zone":"CET"}`}}
		if a.finish != "tool_calls" || a.text != "Checking." || len(a.calls) != 2 {
			t.Fatalf("stream=%v: %+v", stream, a)
		}
		for i, c := range a.calls {
			if c.id != want[i].id || c.name != want[i].name || !sameJSON(c.args, want[i].args) {
				t.Fatalf("stream=%v call %d = %+v, want %+v", stream, i, c, want[i])
			}
		}
		got, _ := s.LastRequest()
		if len(got.Tools) != 2 || got.Tools[0].Description != "Weather by city" || !sameJSON(string(got.Tools[0].InputSchema),
			`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`) ||
			!sameJSON(string(got.Tools[1].InputSchema), `{"type":"object","properties":{}}`) {
			t.Fatalf("tools sent = %+v", got.Tools)
		}
		if got.ToolChoice == nil || got.ToolChoice.Type != "any" {
			t.Fatalf("tool_choice sent = %+v", got.ToolChoice)
		}
	}
	// parallel_tool_calls:false becomes disable_parallel_tool_use.
	r := chat(false)
	r.Tools, r.Body = []byte(tools), []byte(`{"model":"claude","parallel_tool_calls":false}`)
	st, err := b.Open(ctx(t), target, r)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if got, _ := s.LastRequest(); got.ToolChoice == nil || got.ToolChoice.Type != "auto" || got.ToolChoice.DisableParallelToolUse == nil || !*got.ToolChoice.DisableParallelToolUse {
		t.Fatalf("tool_choice sent = %+v", got.ToolChoice)
	}
	// A forced function, and none.
	for choice, want := range map[string]string{`{"type":"function","function":{"name":"get_time"}}`: "tool", `"none"`: "none", `"auto"`: "auto"} {
		r := chat(false)
		r.Tools, r.ToolChoice = []byte(tools), []byte(choice)
		st, err := b.Open(ctx(t), target, r)
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		got, _ := s.LastRequest()
		if got.ToolChoice.Type != want || (want == "tool" && got.ToolChoice.Name != "get_time") {
			t.Fatalf("tool_choice %s sent as %+v", choice, got.ToolChoice)
		}
	}
}

func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

func TestConversationTranslation(t *testing.T) {
	s, b := start(t, anthropictest.Options{})
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00")
	msgs := []models.Message{
		{Role: "system", Content: "Be brief."},
		{Role: "developer", Content: "Use metric units."},
		{Role: "user", Content: "What is in this picture, and the weather?", Images: [][]byte{png}},
		{Role: "assistant", Content: "Let me look.", ToolCalls: []byte(`[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},` +
			`{"id":"call_2","type":"function","function":{"name":"get_time","arguments":""}}]`)},
		{Role: "tool", ToolCallID: "call_1", Content: "18 C"},
		{Role: "tool", ToolCallID: "call_2", Content: "noon"},
		{Role: "user", Content: "Thanks."},
	}
	r := chat(false, msgs...)
	r.Tools = []byte(tools)
	temp, topP := 1.7, 0.5
	r.Sampling.Temperature, r.Sampling.TopP = &temp, &topP
	st, err := b.Open(ctx(t), target, r)
	if err != nil {
		t.Fatal(err)
	}
	read(t, st)
	st.Close()
	got, _ := s.LastRequest()
	if got.SystemText != "Be brief.\n\nUse metric units." {
		t.Fatalf("system = %q", got.SystemText)
	}
	// user, assistant, user (both tool results and the text merged into one turn).
	if len(got.Messages) != 3 || got.Messages[0].Role != "user" || got.Messages[1].Role != "assistant" || got.Messages[2].Role != "user" {
		t.Fatalf("messages = %+v", got.Messages)
	}
	u0, a1, u2 := got.Turns[0], got.Turns[1], got.Turns[2]
	if len(u0) != 2 || u0[0].Type != "image" || u0[0].Source.MediaType != "image/png" || u0[1].Text != msgs[2].Content {
		t.Fatalf("user turn = %+v", u0)
	}
	if len(a1) != 3 || a1[0].Text != "Let me look." || a1[1].Type != "tool_use" || a1[1].ID != "call_1" ||
		!sameJSON(string(a1[1].Input), `{"city":"Paris"}`) || !sameJSON(string(a1[2].Input), `{}`) {
		t.Fatalf("assistant turn = %+v", a1)
	}
	if len(u2) != 3 || u2[0].Type != "tool_result" || u2[0].ToolUseID != "call_1" || string(u2[0].Content) != `"18 C"` ||
		u2[1].ToolUseID != "call_2" || u2[2].Text != "Thanks." {
		t.Fatalf("tool results turn = %+v", u2)
	}
	if got.Temperature == nil || *got.Temperature != 1 || got.TopP != nil {
		t.Fatalf("temperature %v top_p %v: want 1 (clamped) and none", got.Temperature, got.TopP)
	}
}

func TestErrors(t *testing.T) {
	s, b := start(t, anthropictest.Options{ContextTokens: 100})
	cases := []struct {
		name   string
		fail   *anthropictest.Failure
		req    *models.Request
		kind   error
		code   string
		retry  time.Duration
		stream bool
	}{
		{name: "429", fail: &anthropictest.Failure{Status: 429, RetryAfter: 7}, kind: models.ErrOverloaded, code: "provider_rate_limited", retry: 7 * time.Second},
		{name: "529", fail: &anthropictest.Failure{Status: 529}, kind: models.ErrOverloaded, code: "provider_overloaded", retry: time.Second},
		{name: "503", fail: &anthropictest.Failure{Status: 503, Type: "api_error"}, kind: models.ErrOverloaded, code: "provider_overloaded"},
		{name: "500", fail: &anthropictest.Failure{Status: 500}, kind: models.ErrUpstream, code: "provider_error"},
		{name: "400", fail: &anthropictest.Failure{Status: 400, Message: "messages: bad"}, kind: models.ErrInvalid},
		{name: "404", fail: &anthropictest.Failure{Status: 404}, kind: models.ErrUpstream, code: "provider_not_found"},
		{name: "context", req: chat(false, models.Message{Role: "user", Content: strings.Repeat("many words ", 100)}),
			kind: models.ErrInvalid, code: "context_length_exceeded"},
		{name: "overloaded event before any token", fail: &anthropictest.Failure{Status: 529, InStream: true}, stream: true,
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
				t.Fatalf("in flight after a failed Open: %d", b.InFlight())
			}
		})
	}
}

func TestBadKeyNotShown(t *testing.T) {
	s := anthropictest.New(anthropictest.Options{})
	defer s.Close()
	b, err := anthropic.New(anthropic.Options{Name: "claude-eu", BaseURL: s.URL, APIKey: "sk-ant-secret-123"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = b.Open(ctx(t), target, chat(false))
	var me *models.Error
	if !errors.Is(err, models.ErrUpstream) || !errors.As(err, &me) || me.Code != "provider_auth_failed" {
		t.Fatalf("bad key: %v", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("the error shows the key: %v", err)
	}
}

func TestErrorMidStream(t *testing.T) {
	s, b := start(t, anthropictest.Options{ReplyTokens: 10})
	s.Fail(anthropictest.Failure{Status: 529, InStream: true, AfterTokens: 3})
	st, err := b.Open(ctx(t), target, chat(true))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var text string
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
		t.Fatalf("text before the error = %q", text)
	}
	if u := st.Usage(); !u.Estimated || u.PromptTokens <= 0 || u.CompletionTokens <= 0 {
		t.Fatalf("usage of a cut answer = %+v", u)
	}
}

func TestUnreachable(t *testing.T) {
	s := anthropictest.New(anthropictest.Options{})
	url := s.URL
	s.Close()
	b, err := anthropic.New(anthropic.Options{Name: "claude-eu", BaseURL: url, APIKey: "test-key"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = b.Open(ctx(t), target, chat(true))
	var me *models.Error
	if !errors.Is(err, models.ErrUnavailable) || !errors.As(err, &me) || me.RetryAfter <= 0 || strings.Contains(me.Msg, "127.0.0.1") {
		t.Fatalf("unreachable provider: %#v", err)
	}
	if !b.Capacity().Healthy {
		t.Fatalf("a provider is never marked down by a request (the circuit breaker decides)")
	}
}

func TestCancelMidStream(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := anthropictest.New(anthropictest.Options{ReplyTokens: 2000, Latency: cloudtest.Latency{TokensPerSecond: 200}})
	b, err := anthropic.New(anthropic.Options{Name: "claude-eu", BaseURL: s.URL, APIKey: "test-key"})
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
		t.Fatalf("Recv after cancel = %v, want ErrCanceled", rerr)
	}
	st.Close()
	if b.InFlight() != 0 {
		t.Fatalf("in flight = %d", b.InFlight())
	}
	select {
	case <-s.Canceled():
	case <-time.After(10 * time.Second):
		t.Fatal("the provider never saw the request end")
	}
	b.Close()
	s.Close()
}

func TestCloseEarlyAndKeepAlive(t *testing.T) {
	s, b := start(t, anthropictest.Options{ReplyTokens: 2000, Latency: cloudtest.Latency{TokensPerSecond: 500}})
	st, err := b.Open(ctx(t), target, chat(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st.Close()
	<-s.Canceled()
	// Finished answers leave their connection to the next request.
	short := func(stream bool) {
		r := chat(stream)
		r.Sampling.MaxTokens = 3
		st, err := b.Open(ctx(t), target, r)
		if err != nil {
			t.Fatal(err)
		}
		read(t, st)
		st.Close()
	}
	short(true)
	before := b.Dials()
	for _, stream := range []bool{true, false, true} {
		short(stream)
	}
	if d := b.Dials() - before; d != 0 {
		t.Fatalf("%d new connections for 3 sequential requests", d)
	}
}

func TestCapacityAndCircuit(t *testing.T) {
	_, b := start(t, anthropictest.Options{})
	if c := b.Capacity(); !c.Healthy || c.Slots != 3 {
		t.Fatalf("capacity = %+v", c)
	}
	b.SetCircuit(true, "5 failures in 10s")
	if c := b.Capacity(); c.Healthy || c.Reason != "5 failures in 10s" || c.Slots != 3 {
		t.Fatalf("open circuit: %+v", c)
	}
	b.SetCircuit(false, "")
	if !b.Capacity().Healthy {
		t.Fatal("closed circuit still unhealthy")
	}
}

func TestEmbeddingsRefused(t *testing.T) {
	_, b := start(t, anthropictest.Options{})
	_, err := b.Open(ctx(t), target, &models.Request{Kind: models.KindEmbedding, Input: []string{"x"}})
	if !errors.Is(err, models.ErrInvalid) {
		t.Fatalf("embeddings: %v", err)
	}
}
