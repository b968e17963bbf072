package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/compress"
	"github.com/sluice-llm/sluice/gateway"
	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/router"
	"github.com/sluice-llm/sluice/runtime/llamacpp"
	"github.com/sluice-llm/sluice/scheduler"
)

// startCompressStack is the production chain with the compress stage: gateway →
// router → compress → scheduler → llama-server (real).
func startCompressStack(t *testing.T) string {
	t.Helper()
	eng := enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Slots: 1, Ctx: 4096})
	tk, err := compress.LoadTokenizer(enginetest.VocabPath(t))
	if err != nil {
		t.Fatal(err)
	}
	be, err := llamacpp.New(llamacpp.Options{Name: "local", URL: eng.URL, Slots: 1, Counter: tk})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	sched := scheduler.New(map[string]scheduler.Backend{"local": be}, scheduler.Options{Registry: reg, RefreshEvery: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	sched.RefreshAll(ctx)
	done := make(chan struct{})
	go func() { sched.Run(ctx); close(done) }()
	rt, err := router.New([]router.Entry{{Name: "tiny", Backend: "local", UpstreamModel: "tiny"}})
	if err != nil {
		t.Fatal(err)
	}
	lm, err := compress.NewLM(true)
	if err != nil {
		t.Fatal(err)
	}
	var chain gateway.Scheduler = sched
	chain = compress.NewStage(chain, compress.NewCompressor(lm), compress.StageOptions{
		Header: true, Ratio: 2, MinTokens: 64, Counter: tk, Registry: reg})
	gw, err := gateway.New(gateway.Options{Router: rt, Scheduler: chain, Models: rt.Models, Registry: reg, Ready: sched.Ready})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { _ = gw.Serve(ln); close(served) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = gw.Shutdown(sctx)
		<-served
		cancel()
		<-done
		be.Close()
	})
	return "http://" + ln.Addr().String()
}

// longContext is a retrieved context of a dozen passages (about 1,000 tokens).
func longContext() string {
	cities := []string{"Aldmere", "Brackenford", "Corvale", "Dunmarsh", "Eastwick", "Fallowby", "Greystone",
		"Harrowgate", "Ivybridge", "Jesmond", "Kingsreach", "Lowhaven"}
	var b strings.Builder
	for i, c := range cities {
		if i > 0 {
			b.WriteString("\n\n")
		}
		fmt.Fprintf(&b, "%s is a market town on the river %s. It was founded in %d by settlers who came from the coast, "+
			"and its population reached %d people at the last census. The town is known for its %s, and every summer it "+
			"holds a fair that draws visitors from the whole region. The old bridge over the river was rebuilt in %d "+
			"after a flood destroyed the previous one, and the town hall was designed by the architect %s.",
			c, []string{"Wend", "Ouse", "Tarn", "Mere"}[i%4], 1100+37*i, 4000+911*i,
			[]string{"cheese", "wool", "pottery", "cider"}[i%4], 1800+13*i, []string{"Ada Brown", "Ivo Grant", "Lena Hart"}[i%3])
	}
	return b.String()
}

// TestCompressionReachesEngine sends the same long prompt with compression off and at
// 3x through the official SDK: the engine's own prompt token count drops by what the
// X-Sluice-Compression header reports, so the compressed prompt is what it received.
func TestCompressionReachesEngine(t *testing.T) {
	base := startCompressStack(t)
	c := oai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	params := oai.ChatCompletionNewParams{
		Model: "tiny",
		Messages: []oai.ChatCompletionMessageParamUnion{
			oai.SystemMessage("Answer from the context only."),
			oai.UserMessage("Context:\n" + longContext() + "\n\nIn which year was the bridge of Greystone rebuilt?"),
		},
		MaxTokens: oai.Int(4),
		Seed:      oai.Int(1),
	}
	ask := func(header string) (int64, string) {
		t.Helper()
		var resp *http.Response
		out, err := c.Chat.Completions.New(ctx, params, option.WithHeader("X-Sluice-Compress", header), option.WithResponseInto(&resp))
		if err != nil {
			t.Fatalf("X-Sluice-Compress %s: %v", header, err)
		}
		return out.Usage.PromptTokens, resp.Header.Get("X-Sluice-Compression")
	}
	full, h := ask("off")
	if h != "" {
		t.Fatalf("compression off, but X-Sluice-Compression: %s", h)
	}
	small, h := ask("ratio=3")
	// "3.05; tokens=1040->341"
	ratioS, counts, ok := strings.Cut(h, "; tokens=")
	bs, as, ok2 := strings.Cut(counts, "->")
	ratio, err1 := strconv.ParseFloat(ratioS, 64)
	before, err2 := strconv.Atoi(bs)
	after, err3 := strconv.Atoi(as)
	if !ok || !ok2 || err1 != nil || err2 != nil || err3 != nil {
		t.Fatalf("X-Sluice-Compression: %q", h)
	}
	t.Logf("engine prompt tokens %d -> %d (%.2fx); sluice reports %d -> %d (%.2fx)", full, small,
		float64(full)/float64(small), before, after, ratio)
	if ratio < 2.5 {
		t.Errorf("asked for 3x, got %.2fx", ratio)
	}
	// The engine adds the chat template to both prompts; the tokens removed must match
	// what sluice says it removed (small differences: words rejoined across cuts).
	removed, engineRemoved := before-after, int(full-small)
	if d := removed - engineRemoved; d < -removed/20-8 || d > removed/20+8 {
		t.Errorf("sluice removed %d tokens, the engine saw %d fewer", removed, engineRemoved)
	}
	if got := float64(full) / float64(small); got < ratio*0.85 {
		t.Errorf("engine ratio %.2f, reported %.2f", got, ratio)
	}
	// A malformed or oversized header is the client's error, named.
	for _, bad := range []string{"ratio=banana", strings.Repeat("x", 65)} {
		_, err := c.Chat.Completions.New(ctx, params, option.WithHeader("X-Sluice-Compress", bad))
		var apiErr *oai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "X-Sluice-Compress" {
			t.Errorf("X-Sluice-Compress %.20q: %v", bad, err)
		}
	}
	// Streaming goes the same way.
	p := params
	p.StreamOptions = oai.ChatCompletionStreamOptionsParam{IncludeUsage: oai.Bool(true)}
	s := c.Chat.Completions.NewStreaming(ctx, p, option.WithHeader("X-Sluice-Compress", "ratio=3"))
	var acc oai.ChatCompletionAccumulator
	for s.Next() {
		acc.AddChunk(s.Current())
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Usage.PromptTokens != small {
		t.Errorf("streamed prompt tokens %d, non-streamed %d", acc.Usage.PromptTokens, small)
	}
}
