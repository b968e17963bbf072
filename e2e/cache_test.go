package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/internal/redistest"
)

// cacheConfig writes a config serving llama-server at url as "tiny" with the cache
// section given.
func cacheConfig(t *testing.T, url, cacheYAML string) string {
	t.Helper()
	cfg := fmt.Sprintf(`server:
  listen: 127.0.0.1:%d
  admin_keys: [admin-secret]
engines:
  - name: local
    kind: llamacpp
    url: %s
    slots: 2
    models:
      - name: tiny
pricing:
  cpu_per_hour: 0.05
cache:
  store_truncated: true   # the tiny test model rarely ends before max_tokens
%s`, enginetest.FreePort(t), url, cacheYAML)
	p := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func sdk(url string) oai.Client {
	return oai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey("x"), option.WithMaxRetries(0))
}

func faq(question string) oai.ChatCompletionNewParams {
	return oai.ChatCompletionNewParams{
		Model: "tiny",
		Messages: []oai.ChatCompletionMessageParamUnion{
			oai.SystemMessage("You are the support assistant of a parcel company."),
			oai.UserMessage(question),
		},
		MaxTokens:   oai.Int(64),
		Temperature: oai.Float(0),
	}
}

// askCache sends a non-streamed chat and returns the answer and the response headers.
func askCache(t *testing.T, c oai.Client, p oai.ChatCompletionNewParams, opts ...option.RequestOption) (*oai.ChatCompletion, http.Header) {
	t.Helper()
	var resp *http.Response
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.Chat.Completions.New(ctx, p, append(opts, option.WithResponseInto(&resp))...)
	if err != nil {
		t.Fatal(err)
	}
	return out, resp.Header
}

// askStream sends a streamed chat (usage asked for) and returns the accumulated answer,
// the usage chunks seen and the headers.
func askStream(t *testing.T, c oai.Client, p oai.ChatCompletionNewParams) (oai.ChatCompletionAccumulator, int, http.Header) {
	t.Helper()
	p.StreamOptions = oai.ChatCompletionStreamOptionsParam{IncludeUsage: oai.Bool(true)}
	var resp *http.Response
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := c.Chat.Completions.NewStreaming(ctx, p, option.WithResponseInto(&resp))
	var acc oai.ChatCompletionAccumulator
	usage := 0
	for s.Next() {
		ch := s.Current()
		acc.AddChunk(ch)
		if ch.Model != "tiny" {
			t.Errorf("chunk model %q", ch.Model)
		}
		if ch.Usage.TotalTokens > 0 {
			usage++
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return acc, usage, resp.Header
}

// waitStored polls a process's metrics until n answers are stored (the writer stores
// after the response is sent).
func waitMetric(t *testing.T, url, re string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rx.Match(b) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond) // polling another process; no event to wait on
	}
	t.Fatalf("metrics at %s never matched %s", url, re)
}

func metrics(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestCacheSDK drives the cache through the official Go SDK against a real sluice
// process in front of a real llama-server: misses, exact and semantic hits, streamed
// and whole, replayed with the client's model name and usage at zero cost; request
// directives; the admin purge.
func TestCacheSDK(t *testing.T) {
	llama := enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Slots: 2})
	dir := t.TempDir()
	p := startSluice(t, buildSluice(t), cacheConfig(t, llama.URL, "  path: "+filepath.Join(dir, "cache.db")+"\n"), dir)
	c := sdk(p.URL)

	q := "How long does a parcel to Spain take?"
	first, h := askCache(t, c, faq(q))
	if h.Get("X-Sluice-Cache") != "miss" {
		t.Fatalf("first request: X-Sluice-Cache %q", h.Get("X-Sluice-Cache"))
	}
	if cost, _ := strconv.ParseFloat(h.Get("X-Sluice-Cost-USD"), 64); cost <= 0 {
		t.Fatalf("a miss costs engine time: %q", h.Get("X-Sluice-Cost-USD"))
	}
	waitMetric(t, p.URL, `sluice_cache_stores_total\{outcome="stored"\} 1\b`)

	again, h := askCache(t, c, faq(q))
	if h.Get("X-Sluice-Cache") != "hit-exact" {
		t.Fatalf("second request: X-Sluice-Cache %q", h.Get("X-Sluice-Cache"))
	}
	if again.Choices[0].Message.Content != first.Choices[0].Message.Content || again.Model != "tiny" ||
		again.Choices[0].FinishReason != first.Choices[0].FinishReason {
		t.Fatalf("hit %+v differs from the original %+v", again.Choices[0], first.Choices[0])
	}
	if again.Usage.CompletionTokens != first.Usage.CompletionTokens || again.Usage.PromptTokens != first.Usage.PromptTokens {
		t.Fatalf("hit usage %+v, original %+v", again.Usage, first.Usage)
	}
	if cost, err := strconv.ParseFloat(h.Get("X-Sluice-Cost-USD"), 64); err != nil || cost != 0 {
		t.Fatalf("a hit must cost 0, got %q", h.Get("X-Sluice-Cost-USD"))
	}
	if ref, _ := strconv.ParseFloat(h.Get("X-Sluice-Reference-Cost-USD"), 64); ref <= 0 {
		t.Errorf("a hit still counts what it would have cost on the reference model: %q", h.Get("X-Sluice-Reference-Cost-USD"))
	}

	// The same question streamed: a proper SSE stream with usage, from the cache.
	acc, usage, h := askStream(t, c, faq(q))
	if h.Get("X-Sluice-Cache") != "hit-exact" || h.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("streamed hit: cache %q, content type %q", h.Get("X-Sluice-Cache"), h.Get("Content-Type"))
	}
	if acc.Choices[0].Message.Content != first.Choices[0].Message.Content || usage != 1 ||
		acc.Usage.CompletionTokens != first.Usage.CompletionTokens || acc.Choices[0].FinishReason != first.Choices[0].FinishReason {
		t.Fatalf("streamed hit: %q (usage chunks %d, %+v), want %q", acc.Choices[0].Message.Content, usage, acc.Usage, first.Choices[0].Message.Content)
	}

	// A streamed miss is kept too, and answers a whole request later.
	q2 := "Do you deliver parcels on Sundays?"
	acc2, _, h := askStream(t, c, faq(q2))
	if h.Get("X-Sluice-Cache") != "miss" {
		t.Fatalf("streamed miss: %q", h.Get("X-Sluice-Cache"))
	}
	waitMetric(t, p.URL, `sluice_cache_stores_total\{outcome="stored"\} 2\b`)
	whole, h := askCache(t, c, faq(q2))
	if h.Get("X-Sluice-Cache") != "hit-exact" || whole.Choices[0].Message.Content != acc2.Choices[0].Message.Content {
		t.Fatalf("whole hit of a streamed answer: %q %q vs %q", h.Get("X-Sluice-Cache"), whole.Choices[0].Message.Content, acc2.Choices[0].Message.Content)
	}

	// A paraphrase: a semantic hit with its similarity.
	para, h := askCache(t, c, faq("How long does a parcel take to Spain?"))
	if v := h.Get("X-Sluice-Cache"); !strings.HasPrefix(v, "hit-semantic; similarity=") {
		t.Fatalf("paraphrase: X-Sluice-Cache %q", v)
	}
	if para.Choices[0].Message.Content != first.Choices[0].Message.Content {
		t.Fatal("semantic hit with another answer")
	}
	// Another country is another question (the entity guard).
	_, h = askCache(t, c, faq("How long does a parcel to Portugal take?"))
	if h.Get("X-Sluice-Cache") != "miss" {
		t.Fatalf("Portugal vs Spain: %q", h.Get("X-Sluice-Cache"))
	}

	// Directives: no-store bypasses; a high temperature is not cached.
	_, h = askCache(t, c, faq(q), option.WithHeader("Cache-Control", "no-store"))
	if h.Get("X-Sluice-Cache") != "bypass" {
		t.Fatalf("no-store: %q", h.Get("X-Sluice-Cache"))
	}
	hot := faq(q)
	hot.Temperature = oai.Float(0.9)
	if _, h = askCache(t, c, hot); h.Get("X-Sluice-Cache") != "bypass" {
		t.Fatalf("temperature 0.9: %q", h.Get("X-Sluice-Cache"))
	}

	m := metrics(t, p.URL)
	for _, re := range []string{
		`sluice_cache_requests_total\{reason="",result="hit-exact"\} [3-9]`,
		`sluice_cache_requests_total\{reason="",result="hit-semantic"\} 1`,
		`sluice_tokens_total\{engine="cache",model="tiny",type="completion"\} [1-9]`,
		`sluice_savings_usd\{model="tiny",reference="gpt-4o-mini"\} [0-9]`, // a small local model against a small cloud one
		`sluice_cache_saved_usd_total [0-9.e-]+[1-9]`,
	} {
		if !regexp.MustCompile(re).MatchString(m) {
			t.Errorf("metrics lack %s", re)
		}
	}

	// The admin purge empties the model's entries: the question is a miss again.
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/admin/cache/purge?model=tiny", nil)
	req.Header.Set("Authorization", "Bearer admin-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"purged":`) || strings.Contains(string(body), `"purged":0`) {
		t.Fatalf("purge: %d %s", resp.StatusCode, body)
	}
	if _, h = askCache(t, c, faq(q)); h.Get("X-Sluice-Cache") != "miss" {
		t.Fatalf("after purge: %q", h.Get("X-Sluice-Cache"))
	}
}

// TestCacheRestart: the embedded store keeps answers across a restart, and the
// semantic index is rebuilt from it.
func TestCacheRestart(t *testing.T) {
	llama := enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Slots: 2})
	dir := t.TempDir()
	cfg := cacheConfig(t, llama.URL, "  path: "+filepath.Join(dir, "cache.db")+"\n")
	p := startSluice(t, buildSluice(t), cfg, dir)
	q := "Can I change the delivery address of my parcel?"
	first, h := askCache(t, sdk(p.URL), faq(q))
	if h.Get("X-Sluice-Cache") != "miss" {
		t.Fatalf("first: %q", h.Get("X-Sluice-Cache"))
	}
	waitMetric(t, p.URL, `sluice_cache_stores_total\{outcome="stored"\} 1\b`)
	p.stop(t)

	p2 := startSluice(t, buildSluice(t), cfg, dir)
	again, h := askCache(t, sdk(p2.URL), faq(q))
	if h.Get("X-Sluice-Cache") != "hit-exact" || again.Choices[0].Message.Content != first.Choices[0].Message.Content {
		t.Fatalf("after restart: %q, %q vs %q", h.Get("X-Sluice-Cache"), again.Choices[0].Message.Content, first.Choices[0].Message.Content)
	}
	waitMetric(t, p2.URL, `sluice_cache_indexed_entries 1\b`)
	_, h = askCache(t, sdk(p2.URL), faq("Can I change the delivery address of a parcel?"))
	if !strings.HasPrefix(h.Get("X-Sluice-Cache"), "hit-semantic") {
		t.Fatalf("paraphrase after restart: %q", h.Get("X-Sluice-Cache"))
	}
}

// TestCacheRedisReplicas: two sluice processes share one Redis; an answer cached
// through one is a hit through the other, exact and (once the other's index has
// followed the events stream) semantic. A purge through one reaches both.
func TestCacheRedisReplicas(t *testing.T) {
	llama := enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Slots: 2})
	srv := redistest.Start(t)
	dir := t.TempDir()
	cfgYAML := "  store: redis\n  redis_url: ${TEST_REDIS_URL}\n"
	a := startSluice(t, buildSluice(t), cacheConfig(t, llama.URL, cfgYAML), dir, "TEST_REDIS_URL="+srv.URL)
	b := startSluice(t, buildSluice(t), cacheConfig(t, llama.URL, cfgYAML), dir, "TEST_REDIS_URL="+srv.URL)

	q := "What is the weight limit for a parcel?"
	first, h := askCache(t, sdk(a.URL), faq(q))
	if h.Get("X-Sluice-Cache") != "miss" {
		t.Fatalf("through A: %q", h.Get("X-Sluice-Cache"))
	}
	// B's index follows A's write through the events stream.
	waitMetric(t, b.URL, `sluice_cache_indexed_entries 1\b`)
	got, h := askCache(t, sdk(b.URL), faq(q))
	if h.Get("X-Sluice-Cache") != "hit-exact" || got.Choices[0].Message.Content != first.Choices[0].Message.Content {
		t.Fatalf("through B: %q, %q vs %q", h.Get("X-Sluice-Cache"), got.Choices[0].Message.Content, first.Choices[0].Message.Content)
	}
	para, h := askCache(t, sdk(b.URL), faq("What's the weight limit for a parcel?"))
	if !strings.HasPrefix(h.Get("X-Sluice-Cache"), "hit-semantic") || para.Choices[0].Message.Content != first.Choices[0].Message.Content {
		t.Fatalf("paraphrase through B: %q", h.Get("X-Sluice-Cache"))
	}
	// Another tenant (the OpenAI user field scopes the cache when auth is off) misses.
	other := faq(q)
	other.User = oai.String("another-tenant")
	if _, h = askCache(t, sdk(b.URL), other); h.Get("X-Sluice-Cache") != "miss" {
		t.Fatalf("another tenant: %q", h.Get("X-Sluice-Cache"))
	}
	// Purge through B; A's index drops the entries too.
	req, _ := http.NewRequest(http.MethodPost, b.URL+"/admin/cache/purge?all=true", nil)
	req.Header.Set("Authorization", "Bearer admin-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitMetric(t, a.URL, `sluice_cache_indexed_entries 0\b`)
	if _, h = askCache(t, sdk(a.URL), faq(q)); h.Get("X-Sluice-Cache") != "miss" {
		t.Fatalf("after purge through B, A: %q", h.Get("X-Sluice-Cache"))
	}
}
