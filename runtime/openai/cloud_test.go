package openai_test

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
	"github.com/sluice-llm/sluice/runtime/openai"
	"github.com/sluice-llm/sluice/runtime/openai/openaitest"
	"go.uber.org/goleak"
)

// The OpenAI-compatible clouds, each against its fake.

var providers = map[string]struct {
	flavor   openaitest.Flavor
	provider openai.Provider
}{
	"openai":  {openaitest.OpenAI, openai.ProviderOpenAI},
	"azure":   {openaitest.Azure, openai.ProviderAzure},
	"mistral": {openaitest.Mistral, openai.ProviderMistral},
}

func ctxT(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func cloudBackend(t *testing.T, o openaitest.Options, p openai.Provider, key string) (*openaitest.Server, *openai.Backend) {
	t.Helper()
	s := openaitest.New(o)
	b, err := openai.New(openai.Options{Name: "cloud-" + p.String(), BaseURL: s.URL, APIKey: key, Provider: p, Slots: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); s.Close() })
	return s, b
}

var cloudTarget = models.Target{Model: "big", Backend: "cloud", UpstreamModel: "gpt-test", Region: "eu"}

// cloudChat is a chat request as the gateway parses it: typed fields and the client's body.
func cloudChat(stream bool, extra string) *models.Request {
	body := `{"model":"big","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Write about the sea."}]` + extra
	if stream {
		body += `,"stream":true`
	}
	return &models.Request{Kind: models.KindChat, Model: "big", Stream: stream, IncludeUsage: stream, Body: []byte(body + "}"),
		Messages: []models.Message{{Role: "system", Content: "You are terse."}, {Role: "user", Content: "Write about the sea."}}}
}

type reply struct {
	text, finish string
	tools        []byte
	raw          int
	usage        *models.Usage
}

func drainCloud(t *testing.T, st models.Stream) reply {
	t.Helper()
	var r reply
	for {
		c, err := st.Recv()
		if err == io.EOF {
			return r
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		if len(c.Raw) > 0 {
			r.raw++
		}
		if c.Format == models.FormatOpenAIChunk && strings.Contains(string(c.Raw), `"usage":{`) {
			// The gateway writes its own usage chunk: a content chunk must not carry one too.
			t.Fatalf("a content chunk carries usage: %s", c.Raw)
		}
		r.text += c.Text
		if c.FinishReason != "" {
			r.finish = c.FinishReason
		}
		if c.Usage != nil {
			r.usage = c.Usage
		}
		r.tools = append(r.tools, c.ToolCalls...)
	}
}

func TestCloudChat(t *testing.T) {
	for name, p := range providers {
		t.Run(name, func(t *testing.T) {
			s, b := cloudBackend(t, openaitest.Options{Flavor: p.flavor, ReplyTokens: 9, Deployments: []string{"gpt-test"}}, p.provider, "test-key")
			// A cloud is not probed: healthy at once, its max concurrency as slots.
			if err := b.Refresh(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			if c := b.Capacity(); !c.Healthy || c.Slots != 8 || s.Stats().Requests != 0 {
				t.Fatalf("capacity %+v after %d requests", c, s.Stats().Requests)
			}
			for _, stream := range []bool{false, true} {
				// A body with fields Mistral refuses (sluice rewrites them for Mistral).
				st, err := b.Open(ctxT(t), cloudTarget, cloudChat(stream, `,"max_completion_tokens":50,"seed":7,"user":"u1"`))
				if err != nil {
					t.Fatalf("stream=%v: %v", stream, err)
				}
				r := drainCloud(t, st)
				u := st.Usage()
				st.Close()
				if r.text != strings.Join(cloudtest.Tokens(9), "") || r.finish != "stop" || r.raw == 0 {
					t.Fatalf("stream=%v: %+v", stream, r)
				}
				if u.Estimated || u.CompletionTokens != 9 || u.PromptTokens <= 0 {
					t.Fatalf("stream=%v usage = %+v", stream, u)
				}
				got, _ := s.LastRequest()
				switch p.flavor {
				case openaitest.Mistral:
					if got.Has("stream_options") || got.Has("user") || got.Has("seed") || *got.MaxTokens != 50 || *got.RandomSeed != 7 {
						t.Fatalf("mistral body fields %v", got.Fields)
					}
				case openaitest.Azure:
					if got.Deployment != "gpt-test" {
						t.Fatalf("azure deployment = %q", got.Deployment)
					}
					fallthrough
				default:
					if stream != (got.StreamOptions != nil && got.StreamOptions.IncludeUsage) || *got.MaxCompletionTokens != 50 {
						t.Fatalf("stream=%v: stream_options %+v", stream, got.StreamOptions)
					}
				}
			}
		})
	}
}

func TestCloudTools(t *testing.T) {
	for name, p := range providers {
		t.Run(name, func(t *testing.T) {
			_, b := cloudBackend(t, openaitest.Options{Flavor: p.flavor, Reply: func(*openaitest.Request) openaitest.Reply {
				return openaitest.Reply{ToolCalls: []openaitest.Call{{ID: "call_1", Name: "get_weather", Args: `{"city":"Paris"}`}}}
			}}, p.provider, "test-key")
			st, err := b.Open(ctxT(t), cloudTarget, cloudChat(true,
				`,"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]`))
			if err != nil {
				t.Fatal(err)
			}
			r := drainCloud(t, st)
			st.Close()
			if r.finish != "tool_calls" || !strings.Contains(string(r.tools), `"call_1"`) || !strings.Contains(string(r.tools), `"get_weather"`) {
				t.Fatalf("%+v (tool deltas %s)", r, r.tools)
			}
		})
	}
}

func TestCloudAzureFixedDeployment(t *testing.T) {
	s := openaitest.New(openaitest.Options{Flavor: openaitest.Azure, Deployments: []string{"gpt4o-eu"}})
	defer s.Close()
	b, err := openai.New(openai.Options{Name: "azure-eu", BaseURL: s.URL + "/openai/", APIKey: "test-key", Provider: openai.ProviderAzure,
		Deployment: "gpt4o-eu", APIVersion: "2024-10-21"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st, err := b.Open(ctxT(t), cloudTarget, cloudChat(false, ""))
	if err != nil {
		t.Fatal(err)
	}
	drainCloud(t, st)
	st.Close()
	if got, _ := s.LastRequest(); got.Deployment != "gpt4o-eu" {
		t.Fatalf("deployment = %q", got.Deployment)
	}
	// An unknown deployment is a configuration error, not the client's.
	b2, _ := openai.New(openai.Options{Name: "azure-eu", BaseURL: s.URL, APIKey: "test-key", Provider: openai.ProviderAzure})
	defer b2.Close()
	_, err = b2.Open(ctxT(t), models.Target{UpstreamModel: "missing"}, cloudChat(false, ""))
	var me *models.Error
	if !errors.Is(err, models.ErrUpstream) || !errors.As(err, &me) || me.Code != "provider_not_found" {
		t.Fatalf("unknown deployment: %v", err)
	}
}

func TestCloudErrors(t *testing.T) {
	for name, p := range providers {
		t.Run(name, func(t *testing.T) {
			s, b := cloudBackend(t, openaitest.Options{Flavor: p.flavor, ContextTokens: 100}, p.provider, "test-key")
			cases := []struct {
				fail  openaitest.Failure
				kind  error
				code  string
				retry time.Duration
			}{
				{openaitest.Failure{Status: 429, RetryAfter: 6}, models.ErrOverloaded, "provider_rate_limited", 6 * time.Second},
				{openaitest.Failure{Status: 503}, models.ErrOverloaded, "provider_overloaded", time.Second},
				{openaitest.Failure{Status: 500}, models.ErrUpstream, "provider_error", 0},
				{openaitest.Failure{Status: 400, Message: "bad things"}, models.ErrInvalid, "", 0},
			}
			if p.flavor == openaitest.OpenAI {
				cases = append(cases, struct {
					fail  openaitest.Failure
					kind  error
					code  string
					retry time.Duration
				}{openaitest.Failure{Status: 429, Code: "insufficient_quota", Message: "You exceeded your current quota"}, models.ErrUpstream, "provider_billing", 0})
			}
			for _, tc := range cases {
				s.Fail(tc.fail)
				_, err := b.Open(ctxT(t), cloudTarget, cloudChat(true, ""))
				var me *models.Error
				if !errors.Is(err, tc.kind) || !errors.As(err, &me) || me.Code != tc.code || (tc.retry > 0 && me.RetryAfter != tc.retry) {
					t.Fatalf("%+v: got %#v", tc.fail, err)
				}
			}
			long := cloudChat(false, "")
			long.Body = []byte(`{"model":"x","messages":[{"role":"user","content":"` + strings.Repeat("many words ", 100) + `"}]}`)
			_, err := b.Open(ctxT(t), cloudTarget, long)
			var me *models.Error
			if !errors.Is(err, models.ErrInvalid) || !errors.As(err, &me) || me.Code != "context_length_exceeded" {
				t.Fatalf("context: %#v", err)
			}
			if b.InFlight() != 0 {
				t.Fatalf("in flight = %d", b.InFlight())
			}
		})
	}
}

func TestCloudBadKey(t *testing.T) {
	for name, p := range providers {
		t.Run(name, func(t *testing.T) {
			_, b := cloudBackend(t, openaitest.Options{Flavor: p.flavor}, p.provider, "sk-fake-secret-key")
			_, err := b.Open(ctxT(t), cloudTarget, cloudChat(false, ""))
			var me *models.Error
			if !errors.Is(err, models.ErrUpstream) || !errors.As(err, &me) || me.Code != "provider_auth_failed" {
				t.Fatalf("bad key: %#v", err)
			}
			// OpenAI's message echoes part of the key: sluice shows none of it.
			if strings.Contains(me.Msg, "sk-") || strings.Contains(me.Msg, "secret") {
				t.Fatalf("the error shows key material: %q", me.Msg)
			}
		})
	}
}

func TestCloudMidStreamError(t *testing.T) {
	s, b := cloudBackend(t, openaitest.Options{ReplyTokens: 10}, openai.ProviderOpenAI, "test-key")
	s.Fail(openaitest.Failure{Status: 500, InStream: true, AfterTokens: 3})
	st, err := b.Open(ctxT(t), cloudTarget, cloudChat(true, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	text := ""
	for {
		c, err := st.Recv()
		if err != nil {
			if !errors.Is(err, models.ErrUpstream) {
				t.Fatalf("mid-stream error = %v", err)
			}
			break
		}
		text += c.Text
	}
	if text != strings.Join(cloudtest.Tokens(3), "") {
		t.Fatalf("text before the error = %q", text)
	}
}

func TestCloudUnreachableAndCircuit(t *testing.T) {
	s := openaitest.New(openaitest.Options{})
	url := s.URL
	s.Close()
	b, err := openai.New(openai.Options{Name: "openai", BaseURL: url, APIKey: "k", Provider: openai.ProviderOpenAI, Slots: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = b.Open(ctxT(t), cloudTarget, cloudChat(true, ""))
	var me *models.Error
	if !errors.Is(err, models.ErrUnavailable) || !errors.As(err, &me) || strings.Contains(me.Msg, "127.0.0.1") {
		t.Fatalf("unreachable: %#v", err)
	}
	if !b.Capacity().Healthy {
		t.Fatal("a cloud backend is not marked down by a request")
	}
	b.SetCircuit(true, "breaker open")
	if c := b.Capacity(); c.Healthy || c.Reason != "breaker open" {
		t.Fatalf("open circuit: %+v", c)
	}
	if err := b.Refresh(ctxT(t)); err != nil || b.Capacity().Healthy {
		t.Fatalf("a refresh must not close the circuit: %v %+v", err, b.Capacity())
	}
	b.SetCircuit(false, "")
	if !b.Capacity().Healthy {
		t.Fatal("closed circuit")
	}
}

func TestCloudCancelMidStream(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := openaitest.New(openaitest.Options{Flavor: openaitest.Azure, ReplyTokens: 2000, Latency: cloudtest.Latency{TokensPerSecond: 200}})
	b, err := openai.New(openai.Options{Name: "azure", BaseURL: s.URL, APIKey: "test-key", Provider: openai.ProviderAzure})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	st, err := b.Open(cctx, cloudTarget, cloudChat(true, ""))
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

func TestCloudEncodedBody(t *testing.T) {
	// A request that did not arrive as OpenAI JSON (the Anthropic ingress, a batch job)
	// is encoded from its typed fields.
	s, b := cloudBackend(t, openaitest.Options{Flavor: openaitest.Mistral}, openai.ProviderMistral, "test-key")
	seed := int64(3)
	r := &models.Request{Kind: models.KindChat, Stream: true, Messages: []models.Message{{Role: "user", Content: "Hi"}},
		Sampling: models.Sampling{MaxTokens: 5, Seed: &seed}}
	st, err := b.Open(ctxT(t), cloudTarget, r)
	if err != nil {
		t.Fatal(err)
	}
	drainCloud(t, st)
	st.Close()
	got, _ := s.LastRequest()
	if *got.MaxTokens != 5 || *got.RandomSeed != 3 || got.Model != "gpt-test" {
		b, _ := json.Marshal(got)
		t.Fatalf("sent %s", b)
	}
}
