package ollama

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/models/tinymodel"
	"go.uber.org/goleak"
)

// Models the test server holds.
const (
	chatModel  = "tiny"
	toolModel  = "tiny-tools" // the tiny model with a chat template that takes tools
	embedModel = "tiny-embed"
)

// toolTemplate is ChatML with tools. Tool calls render as bare JSON objects, so Ollama
// parses a JSON object the model writes as a tool call.
const toolTemplate = `{{- if .Tools }}<|im_start|>system
Tools:{{ range .Tools }} {{ .Function.Name }}{{ end }}<|im_end|>
{{ end }}
{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}
{{- if .ToolCalls }}{"name": "{{ (index .ToolCalls 0).Function.Name }}", "arguments": {{ (index .ToolCalls 0).Function.Arguments }}}{{ end }}<|im_end|>
{{ end }}<|im_start|>assistant
`

const weatherTool = `[{"type":"function","function":{"name":"get_weather","description":"Weather in a city",
	"parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]`

// startEngine starts Ollama with the test models.
func startEngine(t *testing.T, parallel int) *enginetest.Proc {
	t.Helper()
	p := enginetest.StartOllama(t, parallel)
	enginetest.OllamaCreate(t, p, chatModel, enginetest.TinyModel(t, tinymodel.Options{}))
	enginetest.OllamaCreate(t, p, embedModel, enginetest.TinyModel(t, tinymodel.Options{Embedding: true}))
	u, err := url.Parse(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := api.NewClient(u, &http.Client{Transport: tr})
	err = c.Create(ctx, &api.CreateRequest{Model: toolModel, From: chatModel, Template: toolTemplate},
		func(api.ProgressResponse) error { return nil })
	if err != nil {
		t.Fatalf("create %s: %v", toolModel, err)
	}
	return p
}

func newBackend(t *testing.T, p *enginetest.Proc, slots int) *Backend {
	t.Helper()
	b, err := New(Options{Name: "ollama-test", URL: p.URL, Slots: slots, KeepAlive: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// readAll reads s to its end: the chunks, and the error that ended it (nil for io.EOF).
func readAll(t *testing.T, s models.Stream) ([]models.Chunk, error) {
	t.Helper()
	var out []models.Chunk
	for range 100000 {
		c, err := s.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, c)
	}
	t.Fatal("stream does not end")
	return nil, nil
}

func text(cs []models.Chunk) string {
	var sb strings.Builder
	for _, c := range cs {
		sb.WriteString(c.Text)
	}
	return sb.String()
}

func chat(stream bool, max int, msgs ...models.Message) models.Request {
	if len(msgs) == 0 {
		msgs = []models.Message{{Role: "system", Content: "You are terse."}, {Role: "user", Content: "Hello there, how are you?"}}
	}
	// A fixed seed makes the answers repeatable.
	return models.Request{Kind: models.KindChat, Stream: stream, Messages: msgs, Sampling: models.Sampling{MaxTokens: max, Seed: ptr(int64(1))}}
}

func ptr[T any](v T) *T { return &v }

// forcedToolCall is a JSON schema that makes the model write a get_weather call.
const forcedToolCall = `{"type":"json_schema","json_schema":{"name":"call","schema":{"type":"object",
	"properties":{"name":{"const":"get_weather"},"arguments":{"type":"object","properties":{"city":{"const":"Paris"}},
	"required":["city"],"additionalProperties":false}},"required":["name","arguments"],"additionalProperties":false}}}`

// repeatForever is a schema whose only value is a long run of spaces: Ollama sees the
// same (trimmed) token text more than 30 times and aborts without done:true.
var repeatForever = `{"type":"json_schema","json_schema":{"name":"spaces","schema":{"enum":["` + strings.Repeat(" ", 600) + `x"]}}}`

func TestEngine(t *testing.T) {
	p := startEngine(t, 2)

	t.Run("open", func(t *testing.T) { testOpen(t, p) })
	t.Run("errors", func(t *testing.T) { testErrors(t, p) })
	t.Run("refresh and models", func(t *testing.T) {
		b := newBackend(t, p, 2)
		if c := b.Capacity(); c.Healthy {
			t.Fatalf("healthy before the first probe: %+v", c)
		}
		if err := b.Refresh(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if c := b.Capacity(); !c.Healthy || c.Slots != 2 || c.Reason != "" || c.UpdatedAt.IsZero() {
			t.Fatalf("capacity after refresh = %+v", c)
		}
		names, err := b.Models(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{chatModel + ":latest", toolModel + ":latest", embedModel + ":latest"} {
			if !slices.Contains(names, want) {
				t.Errorf("Models() = %v, missing %s", names, want)
			}
		}
	})
	t.Run("cancel mid-stream", func(t *testing.T) { testCancel(t, p) })
	t.Run("close early", func(t *testing.T) { testCloseEarly(t, p) })
	t.Run("slow reader", func(t *testing.T) { testSlowReader(t, p) })
}

func testOpen(t *testing.T, p *enginetest.Proc) {
	b := newBackend(t, p, 2)
	withFormat := func(r models.Request, f string) models.Request { r.ResponseFormat = []byte(f); return r }
	withTools := func(r models.Request) models.Request { r.Tools = []byte(weatherTool); return r }
	history := []models.Message{
		{Role: "user", Content: "Weather in Paris?"},
		{Role: "assistant", ToolCalls: []byte(`[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]`)},
		{Role: "tool", ToolCallID: "call_1", Content: "sunny, 21C"},
		{Role: "user", Content: "And tomorrow?", Images: [][]byte{[]byte("\x89PNG\r\n\x1a\n")}},
	}
	allOptions := chat(true, 12)
	allOptions.Sampling = models.Sampling{MaxTokens: 12, Temperature: ptr(0.7), TopP: ptr(0.9), Seed: ptr(int64(42)),
		Stop: []string{"\n\n"}, PresencePenalty: ptr(0.1), FrequencyPenalty: ptr(0.1)}

	tests := []struct {
		name   string
		model  string
		req    models.Request
		finish string // want FinishReason of the last chunk
		// Estimated: usage counted by sluice (the engine ended without done:true)
		estimated bool
		check     func(t *testing.T, cs []models.Chunk)
	}{
		{name: "chat", model: chatModel, req: chat(false, 16), finish: "length", check: func(t *testing.T, cs []models.Chunk) {
			if len(cs) != 1 {
				t.Errorf("non-streamed answer came in %d chunks", len(cs))
			}
		}},
		{name: "chat stream", model: chatModel, req: chat(true, 16), finish: "length", check: func(t *testing.T, cs []models.Chunk) {
			if len(cs) < 2 {
				t.Errorf("streamed answer came in %d chunks", len(cs))
			}
		}},
		{name: "chat stream with every sampling option", model: chatModel, req: allOptions},
		{name: "completion", model: chatModel, req: models.Request{Kind: models.KindCompletion, Prompt: []string{"Once upon", "a time"},
			Sampling: models.Sampling{MaxTokens: 16}}, finish: "length"},
		{name: "completion stream", model: chatModel, req: models.Request{Kind: models.KindCompletion, Stream: true, Prompt: []string{"Once upon a time"},
			Sampling: models.Sampling{MaxTokens: 16}}, finish: "length"},
		{name: "json_object", model: chatModel, req: withFormat(chat(true, 64), `{"type":"json_object"}`), check: func(t *testing.T, cs []models.Chunk) {
			if s := text(cs); !json.Valid([]byte(s)) {
				t.Errorf("json_object answer is not JSON: %q", s)
			}
		}},
		{name: "json_schema", model: chatModel, req: withFormat(chat(false, 64),
			`{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"object","properties":{"answer":{"enum":["yes","no"]}},"required":["answer"],"additionalProperties":false}}}`),
			finish: "stop", check: func(t *testing.T, cs []models.Chunk) {
				var v struct{ Answer string }
				if err := json.Unmarshal([]byte(text(cs)), &v); err != nil || (v.Answer != "yes" && v.Answer != "no") {
					t.Errorf("json_schema answer %q does not fit the schema (%v)", text(cs), err)
				}
			}},
		{name: "tools passed through", model: toolModel, req: withTools(chat(true, 8)), finish: "length"},
		{name: "tool_choice none on a model without tools", model: chatModel,
			req: func() models.Request { r := withTools(chat(false, 8)); r.ToolChoice = []byte(`"none"`); return r }(), finish: "length"},
		{name: "tool call stream", model: toolModel, req: withFormat(withTools(chat(true, 64)), forcedToolCall), finish: "tool_calls", check: checkToolCall},
		{name: "tool call", model: toolModel, req: withFormat(withTools(chat(false, 64)), forcedToolCall), finish: "tool_calls", check: checkToolCall},
		{name: "history with tool call, tool result and image", model: toolModel, req: withTools(chat(false, 8, history...)), finish: "length"},
		{name: "no done:true (repeat abort) stream", model: chatModel, req: withFormat(chat(true, 200), repeatForever), finish: "stop", estimated: true},
		{name: "no done:true (repeat abort)", model: chatModel, req: withFormat(chat(false, 200), repeatForever), finish: "stop", estimated: true,
			check: func(t *testing.T, cs []models.Chunk) {
				if len(cs) != 1 || !strings.HasPrefix(cs[0].Text, `"   `) {
					t.Errorf("chunks = %+v, want one with the spaces", cs)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.req
			s, err := b.Open(testCtx(t), models.Target{Model: "m", UpstreamModel: tt.model}, &r)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			cs, err := readAll(t, s)
			if err != nil {
				t.Fatalf("after %d chunks: %v", len(cs), err)
			}
			if len(cs) == 0 {
				t.Fatal("no chunks")
			}
			if _, err := s.Recv(); err != io.EOF {
				t.Errorf("Recv after the end = %v, want io.EOF", err)
			}
			for i, c := range cs {
				if c.Raw != nil || c.Format != models.FormatNone || c.Embeddings != nil {
					t.Errorf("chunk %d = %+v: want structured fields only", i, c)
				}
				if wantRole := i == 0 && r.Kind == models.KindChat; (c.Role == "assistant") != wantRole || (!wantRole && c.Role != "") {
					t.Errorf("chunk %d has role %q", i, c.Role)
				}
				if i < len(cs)-1 && (c.FinishReason != "" || c.Usage != nil) {
					t.Errorf("chunk %d of %d has finish %q, usage %v", i, len(cs), c.FinishReason, c.Usage)
				}
			}
			last := cs[len(cs)-1]
			if tt.finish != "" && last.FinishReason != tt.finish {
				t.Errorf("finish reason = %q, want %q", last.FinishReason, tt.finish)
			}
			if last.FinishReason == "" {
				t.Error("no finish reason")
			}
			if last.Usage == nil {
				t.Fatal("no usage on the last chunk")
			}
			u := *last.Usage
			if u.PromptTokens <= 0 || u.CompletionTokens <= 0 || u.Estimated != tt.estimated {
				t.Errorf("usage = %+v, want non-zero counts, estimated %v", u, tt.estimated)
			}
			if tt.finish == "length" && u.CompletionTokens != r.Sampling.MaxTokens {
				t.Errorf("completion tokens = %d, want max_tokens %d", u.CompletionTokens, r.Sampling.MaxTokens)
			}
			if got := s.Usage(); got != u {
				t.Errorf("Usage() = %+v, last chunk says %+v", got, u)
			}
			if last.FinishReason != "tool_calls" && text(cs) == "" {
				t.Error("no text")
			}
			if tt.check != nil {
				tt.check(t, cs)
			}
		})
	}

	t.Run("embeddings", func(t *testing.T) {
		r := models.Request{Kind: models.KindEmbedding, Input: []string{"hello", "the quick brown fox", "x"}}
		s, err := b.Open(testCtx(t), models.Target{UpstreamModel: embedModel}, &r)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		cs, err := readAll(t, s)
		if err != nil || len(cs) != 1 {
			t.Fatalf("chunks %+v, err %v: want one chunk", cs, err)
		}
		c := cs[0]
		if len(c.Embeddings) != len(r.Input) {
			t.Fatalf("%d embeddings for %d inputs", len(c.Embeddings), len(r.Input))
		}
		for i, v := range c.Embeddings {
			if len(v) != tinymodel.DefaultDim {
				t.Errorf("embedding %d has %d dims, want %d", i, len(v), tinymodel.DefaultDim)
			}
		}
		if c.Usage == nil || c.Usage.PromptTokens <= 0 || c.Usage.Estimated || s.Usage() != *c.Usage {
			t.Errorf("usage = %v, Usage() = %+v", c.Usage, s.Usage())
		}
	})
}

func checkToolCall(t *testing.T, cs []models.Chunk) {
	t.Helper()
	var calls []openAIToolCall
	n := 0
	for _, c := range cs {
		if c.ToolCalls == nil {
			continue
		}
		n++
		if err := json.Unmarshal(c.ToolCalls, &calls); err != nil {
			t.Fatalf("tool calls %s: %v", c.ToolCalls, err)
		}
	}
	if n != 1 || len(calls) != 1 {
		t.Fatalf("%d chunks with tool calls, last has %d calls; want one call", n, len(calls))
	}
	c := calls[0]
	var args string
	_ = json.Unmarshal(c.Function.Arguments, &args)
	if c.Index == nil || *c.Index != 0 || !strings.HasPrefix(c.ID, "call_") || c.Type != "function" ||
		c.Function.Name != "get_weather" || args != `{"city":"Paris"}` {
		t.Errorf("tool call = %+v (arguments %s)", c, c.Function.Arguments)
	}
}

func testErrors(t *testing.T, p *enginetest.Proc) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b, err := New(Options{Name: "errors", URL: p.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tests := []struct {
		name  string
		model string
		req   models.Request
		kind  error
		code  string
	}{
		// The router matched the client's model to this engine: a model the engine lacks
		// is an engine (configuration) error, 502, the same from every runtime.
		{"unknown model chat", "no-such-model", chat(true, 4), models.ErrUpstream, "engine_model_not_found"},
		{"unknown model chat non-stream", "no-such-model", chat(false, 4), models.ErrUpstream, "engine_model_not_found"},
		{"unknown model completion", "no-such-model", models.Request{Kind: models.KindCompletion, Stream: true, Prompt: []string{"a"}}, models.ErrUpstream, "engine_model_not_found"},
		{"unknown model embeddings", "no-such-model", models.Request{Kind: models.KindEmbedding, Input: []string{"a"}}, models.ErrUpstream, "engine_model_not_found"},
		{"tools on a model without tool support", chatModel, func() models.Request { r := chat(true, 4); r.Tools = []byte(weatherTool); return r }(), models.ErrInvalid, ""},
		{"chat with an embedding model", embedModel, chat(true, 4), models.ErrInvalid, ""},
		{"bad tools", chatModel, func() models.Request { r := chat(true, 4); r.Tools = []byte(`{}`); return r }(), models.ErrInvalid, ""},
		{"bad response_format", chatModel, func() models.Request { r := chat(true, 4); r.ResponseFormat = []byte(`{"type":"yaml"}`); return r }(), models.ErrInvalid, ""},
		{"unknown kind", chatModel, models.Request{Kind: 99}, models.ErrInvalid, ""},
		{"no upstream model", "", chat(true, 4), models.ErrInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.req
			s, err := b.Open(testCtx(t), models.Target{UpstreamModel: tt.model}, &r)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			var me *models.Error
			if !errors.As(err, &me) || !errors.Is(err, tt.kind) {
				t.Fatalf("err = %v (%T), want %v", err, err, tt.kind)
			}
			if me.Code != tt.code || !strings.Contains(me.Msg, "errors") {
				t.Errorf("err = %+v, want code %q and a message naming the backend", me, tt.code)
			}
		})
	}
}

func testCancel(t *testing.T, p *enginetest.Proc) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b, err := New(Options{Name: "cancel", URL: p.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(testCtx(t))
	r := chat(true, 2000)
	s, err := b.Open(ctx, models.Target{UpstreamModel: chatModel}, &r)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if c, err := s.Recv(); err != nil || c.Text == "" {
		t.Fatalf("first chunk %+v, %v", c, err)
	}
	cancel()
	start := time.Now()
	n := 0
	for {
		_, err = s.Recv()
		if err != nil {
			break
		}
		n++
	}
	if !errors.Is(err, models.ErrCanceled) {
		t.Fatalf("Recv after cancel = %v, want ErrCanceled", err)
	}
	// Only what was buffered before the cancel may still come.
	if d := time.Since(start); n > b.chunkBuffer+1 || d > 5*time.Second {
		t.Errorf("Recv went on for %d chunks, %v after cancel", n, d)
	}
	if _, err := s.Recv(); err != io.EOF {
		t.Errorf("Recv after the error = %v, want io.EOF", err)
	}
	if u := s.Usage(); !u.Estimated || u.CompletionTokens == 0 {
		t.Errorf("usage of a cancelled stream = %+v, want an estimate of what came", u)
	}
	s.Close()
	if n := b.InFlight(); n != 0 {
		t.Errorf("%d requests in flight after Close", n)
	}
	b.Close()
}

func testCloseEarly(t *testing.T, p *enginetest.Proc) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b, err := New(Options{Name: "close", URL: p.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, stream := range []bool{true, false} {
		// A non-streamed Open returns once the whole answer is there: keep it short.
		r := chat(stream, 2000)
		if !stream {
			r.Sampling.MaxTokens = 8
		}
		s, err := b.Open(testCtx(t), models.Target{UpstreamModel: chatModel}, &r)
		if err != nil {
			t.Fatal(err)
		}
		if stream {
			if _, err := s.Recv(); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if n := b.InFlight(); n != 0 {
			t.Errorf("stream %v: %d requests in flight after Close", stream, n)
		}
		if _, err := s.Recv(); err != io.EOF {
			t.Errorf("stream %v: Recv after Close = %v, want io.EOF", stream, err)
		}
	}
	// The server is free again.
	r := chat(false, 4)
	s, err := b.Open(testCtx(t), models.Target{UpstreamModel: chatModel}, &r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, s); err != nil {
		t.Fatal(err)
	}
	s.Close()
	b.Close()
}

// testSlowReader reads a greedy answer through a one-chunk buffer more slowly than the
// engine writes it: nothing may be lost, so it must equal the non-streamed answer.
func testSlowReader(t *testing.T, p *enginetest.Proc) {
	b := newBackend(t, p, 2)
	b.chunkBuffer = 1
	greedy := func(stream bool) models.Request {
		r := chat(stream, 48)
		r.Sampling.Temperature, r.Sampling.Seed = ptr(0.0), ptr(int64(1))
		return r
	}
	r := greedy(false)
	s, err := b.Open(testCtx(t), models.Target{UpstreamModel: chatModel}, &r)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := readAll(t, s)
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	r = greedy(true)
	s, err = b.Open(testCtx(t), models.Target{UpstreamModel: chatModel}, &r)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var cs []models.Chunk
	for {
		c, err := s.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		time.Sleep(10 * time.Millisecond) // a slow client, not a wait for a condition
	}
	if got, want := text(cs), text(whole); got != want {
		t.Errorf("slowly read stream:\n%q\nnon-streamed answer:\n%q", got, want)
	}
	deltas := 0
	for _, c := range cs {
		if c.Text != "" {
			deltas++
		}
	}
	if u := s.Usage(); deltas != u.CompletionTokens {
		t.Errorf("%d text chunks for %d generated tokens", deltas, u.CompletionTokens)
	}
}

func TestServerGone(t *testing.T) {
	p := startEngine(t, 1)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b, err := New(Options{Name: "gone", URL: p.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := testCtx(t)
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}

	// Killed mid-answer: the stream must end in an error, not look finished.
	r := chat(true, 2000)
	s, err := b.Open(ctx, models.Target{UpstreamModel: chatModel}, &r)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	cs, err := readAll(t, s)
	if !errors.Is(err, models.ErrUnavailable) {
		t.Fatalf("stream of a killed server ended with %v after %d more chunks, want ErrUnavailable", err, len(cs))
	}
	s.Close()
	if c := b.Capacity(); c.Healthy {
		t.Errorf("capacity after the server died = %+v, want unhealthy", c)
	}

	for _, kind := range []models.Kind{models.KindChat, models.KindCompletion, models.KindEmbedding} {
		r := models.Request{Kind: kind, Stream: true, Messages: chat(true, 4).Messages, Prompt: []string{"a"}, Input: []string{"a"}}
		_, err := b.Open(ctx, models.Target{UpstreamModel: chatModel}, &r)
		var me *models.Error
		if !errors.As(err, &me) || !errors.Is(err, models.ErrUnavailable) || me.Code != "engine_unavailable" || me.RetryAfter != time.Second {
			t.Errorf("%v on a dead server: err = %#v, want ErrUnavailable, engine_unavailable, retry after 1s", kind, err)
		}
	}
	if c := b.Capacity(); c.Healthy || !strings.HasPrefix(c.Reason, "unreachable") {
		t.Errorf("capacity = %+v, want unhealthy, unreachable", c)
	}
	if err := b.Refresh(ctx); !errors.Is(err, models.ErrUnavailable) {
		t.Errorf("Refresh on a dead server = %v, want ErrUnavailable", err)
	}
	if _, err := b.Models(ctx); !errors.Is(err, models.ErrUnavailable) {
		t.Errorf("Models on a dead server = %v, want ErrUnavailable", err)
	}
	b.Close()
}
