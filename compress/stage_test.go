package compress

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fastjson"
)

// recorder is the next stage: it keeps what it was given.
type recorder struct {
	r    *models.Request
	body []byte
}

func (n *recorder) Open(_ context.Context, _ models.Target, r *models.Request) (models.Stream, error) {
	n.r, n.body = r, append([]byte(nil), r.Body...)
	return emptyStream{}, nil
}

type emptyStream struct{}

func (emptyStream) Recv() (models.Chunk, error) { return models.Chunk{}, io.EOF }
func (emptyStream) Usage() models.Usage         { return models.Usage{} }
func (emptyStream) Close() error                { return nil }

const sysPrompt = "You are a helpful assistant. Answer from the context."

func chatRequest(t testing.TB, extra string) *models.Request {
	t.Helper()
	q := "When was the Thames Barrier completed?"
	user := "Context:\n" + ragContext + "\n\n" + q
	body := `{"model":"tiny","messages":[{"role":"system","content":` + string(jsonx.AppendString(nil, sysPrompt)) +
		`},{"role":"user","content":` + string(jsonx.AppendString(nil, user)) + `,"name":"ann"}],"temperature":0` + extra + `}`
	return &models.Request{Kind: models.KindChat, Model: "tiny", Body: []byte(body),
		Messages: []models.Message{{Role: "system", Content: sysPrompt}, {Role: "user", Content: user, Name: "ann"}}}
}

func newStage(t testing.TB, o StageOptions) (*Stage, *recorder, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Registry = reg
	n := &recorder{}
	return NewStage(n, newTestCompressor(t), o), n, reg
}

func TestStageOffByDefault(t *testing.T) {
	s, n, _ := newStage(t, StageOptions{Header: true, MinTokens: 10})
	r := chatRequest(t, "")
	orig := string(r.Body)
	if _, err := s.Open(context.Background(), models.Target{Model: "tiny"}, r); err != nil {
		t.Fatal(err)
	}
	if string(n.body) != orig || n.r.Trace.PromptTokensBefore != 0 {
		t.Fatalf("compressed without a rule or header")
	}
}

func TestStageHeaderCompressesMessagesAndBody(t *testing.T) {
	s, n, reg := newStage(t, StageOptions{Header: true, MinTokens: 10})
	r := chatRequest(t, "")
	r.Compress = "ratio=3"
	if _, err := s.Open(context.Background(), models.Target{Model: "tiny"}, r); err != nil {
		t.Fatal(err)
	}
	tr := n.r.Trace
	if tr.PromptTokensBefore == 0 || tr.PromptTokensAfter == 0 || float64(tr.PromptTokensBefore)/float64(tr.PromptTokensAfter) < 2 {
		t.Fatalf("trace %+v", tr)
	}
	user := n.r.Messages[1].Content
	if !strings.HasSuffix(user, "\n\nWhen was the Thames Barrier completed?") || !strings.Contains(user, "1982") {
		t.Errorf("user message: %q", user)
	}
	if n.r.Messages[0].Content != sysPrompt {
		t.Errorf("system prompt changed")
	}
	// The body says the same as the messages, and keeps the other fields.
	v, err := fastjson.ParseBytes(n.body)
	if err != nil {
		t.Fatalf("body: %v\n%s", err, n.body)
	}
	msgs := v.GetArray("messages")
	if len(msgs) != 2 || string(msgs[1].GetStringBytes("content")) != user || string(msgs[0].GetStringBytes("content")) != sysPrompt ||
		string(msgs[1].GetStringBytes("name")) != "ann" || v.GetInt("temperature") != 0 || string(v.GetStringBytes("model")) != "tiny" {
		t.Errorf("body: %s", n.body)
	}
	if got := testutil.ToFloat64(s.m.original); got != float64(tr.PromptTokensBefore) {
		t.Errorf("original tokens metric %v, trace %d", got, tr.PromptTokensBefore)
	}
	if n, err := testutil.GatherAndCount(reg, "sluice_compress_ratio"); err != nil || n != 1 {
		t.Errorf("ratio histogram: %d series, %v", n, err)
	}
}

func TestStageRules(t *testing.T) {
	s, n, _ := newStage(t, StageOptions{Header: true, MinTokens: 10,
		Models: map[string]Rule{"tiny": {Tokens: 80}, "other": {Off: true}}, Tiers: map[string]Rule{"small": {Ratio: 4}}})
	ctx := context.Background()
	r := chatRequest(t, "")
	if _, err := s.Open(ctx, models.Target{Model: "tiny"}, r); err != nil {
		t.Fatal(err)
	}
	if a := n.r.Trace.PromptTokensAfter; a == 0 || a > 90 {
		t.Errorf("model rule tokens=80: after %d", a)
	}
	r = chatRequest(t, "")
	r.Model = "big"
	if _, err := s.Open(ctx, models.Target{Model: "big", Tier: "small"}, r); err != nil {
		t.Fatal(err)
	}
	if tr := n.r.Trace; tr.PromptTokensAfter == 0 || tr.PromptTokensBefore < 3*tr.PromptTokensAfter {
		t.Errorf("tier rule ratio 4: %+v", tr)
	}
	// A header turns it off; an "off" rule is off unless the header asks.
	r = chatRequest(t, "")
	r.Compress = "off"
	if _, err := s.Open(ctx, models.Target{Model: "tiny"}, r); err != nil || n.r.Trace.PromptTokensAfter != 0 {
		t.Errorf("header off: %v %+v", err, n.r.Trace)
	}
	r = chatRequest(t, "")
	r.Model = "other"
	if _, err := s.Open(ctx, models.Target{Model: "other"}, r); err != nil || n.r.Trace.PromptTokensAfter != 0 {
		t.Errorf("rule off: %v %+v", err, n.r.Trace)
	}
}

func TestStageToolsAndResponseFormat(t *testing.T) {
	s, n, _ := newStage(t, StageOptions{Header: true, MinTokens: 10})
	ctx := context.Background()
	for _, force := range []bool{false, true} {
		r := chatRequest(t, `,"tools":[{"type":"function","function":{"name":"f"}}]`)
		r.Tools = []byte(`[{"type":"function","function":{"name":"f"}}]`)
		r.Compress = "ratio=2"
		if force {
			r.Compress += "; force"
		}
		if _, err := s.Open(ctx, models.Target{Model: "tiny"}, r); err != nil {
			t.Fatal(err)
		}
		if got := n.r.Trace.PromptTokensAfter != 0; got != force {
			t.Errorf("tools, force=%v: compressed=%v", force, got)
		}
	}
	r := chatRequest(t, `,"response_format":{"type":"json_object"}`)
	r.ResponseFormat = []byte(`{"type":"json_object"}`)
	r.Compress = "on"
	if _, err := s.Open(ctx, models.Target{Model: "tiny"}, r); err != nil || n.r.Trace.PromptTokensAfter != 0 {
		t.Errorf("response_format compressed: %v", err)
	}
}

func TestStageBadHeader(t *testing.T) {
	s, _, _ := newStage(t, StageOptions{Header: true})
	r := chatRequest(t, "")
	r.Compress = "ratio=banana"
	_, err := s.Open(context.Background(), models.Target{Model: "tiny"}, r)
	var me *models.Error
	if !errors.As(err, &me) || !errors.Is(err, models.ErrInvalid) || me.Param != "X-Sluice-Compress" {
		t.Fatalf("bad header: %v", err)
	}
	// Header ignored when not allowed.
	s, n, _ := newStage(t, StageOptions{Header: false})
	if _, err := s.Open(context.Background(), models.Target{Model: "tiny"}, r); err != nil || n.r.Trace.PromptTokensAfter != 0 {
		t.Fatalf("header not allowed: %v", err)
	}
}

func TestStageFailsOpen(t *testing.T) {
	s, n, _ := newStage(t, StageOptions{Header: true, MinTokens: 10})
	r := chatRequest(t, "")
	r.Body = []byte(`{"model":"tiny","messages":[{"role":"user","content":"only one"}]}`) // does not match r.Messages
	r.Compress = "ratio=2"
	orig := *r
	origMsgs := append([]models.Message(nil), r.Messages...)
	if _, err := s.Open(context.Background(), models.Target{Model: "tiny"}, r); err != nil {
		t.Fatal(err)
	}
	if string(n.body) != string(orig.Body) || n.r.Messages[1].Content != origMsgs[1].Content || n.r.Trace.PromptTokensAfter != 0 {
		t.Fatalf("a failed compression changed the request")
	}
	if got := testutil.ToFloat64(s.m.errors); got != 1 {
		t.Fatalf("errors metric %v", got)
	}
}

func TestStageCompletion(t *testing.T) {
	s, n, _ := newStage(t, StageOptions{Header: true, MinTokens: 10})
	p := ragContext + "\n\nQ: When was the Thames Barrier completed?\nA:"
	r := &models.Request{Kind: models.KindCompletion, Model: "tiny", Prompt: []string{p}, Compress: "ratio=2",
		Body: []byte(`{"model":"tiny","prompt":` + string(jsonx.AppendString(nil, p)) + `,"max_tokens":5}`)}
	if _, err := s.Open(context.Background(), models.Target{Model: "tiny"}, r); err != nil {
		t.Fatal(err)
	}
	got := n.r.Prompt[0]
	if len(got) >= len(p) || !strings.HasSuffix(got, "Q: When was the Thames Barrier completed?\nA:") {
		t.Fatalf("prompt: %q", got)
	}
	v, err := fastjson.ParseBytes(n.body)
	if err != nil || string(v.GetStringBytes("prompt")) != got || v.GetInt("max_tokens") != 5 {
		t.Fatalf("body %s: %v", n.body, err)
	}
}

func TestParseDirective(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Directive
		bad  bool
	}{
		{"off", Directive{Set: true, Off: true}, false},
		{"on", Directive{Set: true}, false},
		{"ratio=3", Directive{Set: true, Budget: Budget{Ratio: 3}}, false},
		{" tokens = 800 ; force", Directive{Set: true, Budget: Budget{Tokens: 800}, Force: true}, false},
		{"RATIO=2.5,force", Directive{Set: true, Budget: Budget{Ratio: 2.5}, Force: true}, false},
		{"ratio=0.5", Directive{}, true},
		{"tokens=-1", Directive{}, true},
		{"zip", Directive{}, true},
	} {
		got, err := ParseDirective(tt.in)
		if (err != nil) != tt.bad || (!tt.bad && got != tt.want) {
			t.Errorf("ParseDirective(%q) = %+v, %v; want %+v (error %v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func FuzzParseDirective(f *testing.F) {
	for _, s := range []string{"off", "ratio=3", "tokens=800; force", "ratio=1e309", ",,;", "tokens=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDirective(s)
		if err != nil {
			return
		}
		if d.Budget.Ratio != 0 && (d.Budget.Ratio < 1 || d.Budget.Ratio > 100) || d.Budget.Tokens < 0 {
			t.Fatalf("%q: %+v", s, d)
		}
	})
}

func TestSplitQuestion(t *testing.T) {
	for _, tt := range []struct{ in, ctx, sep, q string }{
		{"just a question?", "", "", "just a question?"},
		{"ctx para\n\nmore ctx\n\nthe question?", "ctx para\n\nmore ctx", "\n\n", "the question?"},
		{"line one\nline two\nQuestion: why?", "line one\nline two", "\n", "Question: why?"},
		{"ctx\n\n\nq\n", "ctx", "\n\n\n", "q\n"},
	} {
		c, s, q := splitQuestion(tt.in)
		if c != tt.ctx || s != tt.sep || q != tt.q || c+s+q != tt.in {
			t.Errorf("splitQuestion(%q) = %q %q %q", tt.in, c, s, q)
		}
	}
}

// BenchmarkStageOff is the cost of the stage for a request it does not compress (no
// rule, no header): one comparison before the next stage.
func BenchmarkStageOff(b *testing.B) {
	s := NewStage(nopNext{}, newTestCompressor(b), StageOptions{Header: true})
	r := chatRequest(b, "")
	ctx := context.Background()
	t := models.Target{Model: "tiny"}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = s.Open(ctx, t, r)
	}
}

// BenchmarkStageCompress compresses a RAG prompt of about 500 tokens at 2x.
func BenchmarkStageCompress(b *testing.B) {
	s := NewStage(nopNext{}, newTestCompressor(b), StageOptions{Header: true, MinTokens: 10})
	ctx := context.Background()
	t := models.Target{Model: "tiny"}
	b.ReportAllocs()
	for b.Loop() {
		r := chatRequest(b, "")
		r.Compress = "ratio=2"
		_, _ = s.Open(ctx, t, r)
	}
}

type nopNext struct{}

func (nopNext) Open(context.Context, models.Target, *models.Request) (models.Stream, error) {
	return emptyStream{}, nil
}
