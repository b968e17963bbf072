package e2e

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/batch"
	"github.com/sluice-llm/sluice/compress"
	"github.com/sluice-llm/sluice/gateway"
	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/models/tinymodel"
	"github.com/sluice-llm/sluice/router"
	"github.com/sluice-llm/sluice/runtime/llamacpp"
	"github.com/sluice-llm/sluice/runtime/ollama"
	"github.com/sluice-llm/sluice/runtime/openai"
	"github.com/sluice-llm/sluice/scheduler"
)

// stack is a running gateway in front of real engines.
type stack struct {
	URL     string // http://127.0.0.1:port
	Chat    *enginetest.Proc
	Embed   *enginetest.Proc
	Ollama  *enginetest.Proc
	Sched   *scheduler.Scheduler
	Reg     *prometheus.Registry
	Backend *llamacpp.Backend
}

type stackOptions struct {
	slots        int
	maxBody      int
	ollama       bool // also serve the tiny model through an Ollama server as "tiny-ollama"
	upstream     bool // also serve llama-server's /v1 through the generic OpenAI backend as "tiny-upstream"
	apiKeys      [][32]byte
	maxQueue     int
	chatOverride *enginetest.Proc
	refreshEvery time.Duration // how often the scheduler probes the engines (default 200ms)
	batches      bool          // serve the Batch API from a store in a test directory
	batchMaxFile int64         // its upload limit (default batch's)
}

// startStack starts llama-server (chat and embedding) and a gateway in front of them.
func startStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	if o.slots == 0 {
		o.slots = 2
	}
	st := &stack{Reg: prometheus.NewRegistry()}
	st.Chat = o.chatOverride
	if st.Chat == nil {
		st.Chat = enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Slots: o.slots})
	}
	st.Embed = enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Embedding: true, Slots: 1, Ctx: 512})
	tk, err := compress.LoadTokenizer(enginetest.VocabPath(t))
	if err != nil {
		t.Fatal(err)
	}
	chat, err := llamacpp.New(llamacpp.Options{Name: "local", URL: st.Chat.URL, Slots: o.slots, Counter: tk})
	if err != nil {
		t.Fatal(err)
	}
	st.Backend = chat
	embed, err := llamacpp.New(llamacpp.Options{Name: "embed", URL: st.Embed.URL, Slots: 1, Counter: tk})
	if err != nil {
		t.Fatal(err)
	}
	backends := map[string]scheduler.Backend{"local": chat, "embed": embed}
	entries := []router.Entry{
		{Name: "tiny", Aliases: []string{"gpt-4o-mini"}, Backend: "local", UpstreamModel: "tiny"},
		{Name: "tiny-embed", Backend: "embed", UpstreamModel: "tiny-embed", Kind: "embedding"},
	}
	if o.upstream {
		up, err := openai.New(openai.Options{Name: "upstream", BaseURL: st.Chat.URL + "/v1", Slots: o.slots, Counter: tk})
		if err != nil {
			t.Fatal(err)
		}
		backends["upstream"] = up
		entries = append(entries, router.Entry{Name: "tiny-upstream", Backend: "upstream", UpstreamModel: "tiny"})
	}
	if o.ollama {
		st.Ollama = enginetest.StartOllama(t, 2)
		enginetest.OllamaCreate(t, st.Ollama, "tiny", enginetest.TinyModel(t, tinymodel.Options{}))
		ob, err := ollama.New(ollama.Options{Name: "ollama", URL: st.Ollama.URL, Slots: 2, Counter: tk})
		if err != nil {
			t.Fatal(err)
		}
		backends["ollama"] = ob
		entries = append(entries, router.Entry{Name: "tiny-ollama", Backend: "ollama", UpstreamModel: "tiny"})
	}
	if o.refreshEvery == 0 {
		o.refreshEvery = 200 * time.Millisecond
	}
	st.Sched = scheduler.New(backends, scheduler.Options{Registry: st.Reg, MaxQueue: o.maxQueue, RefreshEvery: o.refreshEvery})
	ctx, cancel := context.WithCancel(context.Background())
	st.Sched.RefreshAll(ctx)
	done := make(chan struct{})
	go func() { st.Sched.Run(ctx); close(done) }()
	rt, err := router.New(entries)
	if err != nil {
		t.Fatal(err)
	}
	var bm *batch.Manager
	var bapi gateway.Batches
	if o.batches {
		if bm, err = batch.Open(ctx, batch.Options{Dir: t.TempDir(), Concurrency: 2, Registerer: st.Reg, MaxFileBytes: o.batchMaxFile}); err != nil {
			t.Fatal(err)
		}
		bapi = bm
	}
	gw, err := gateway.New(gateway.Options{Router: rt, Scheduler: st.Sched, Models: rt.Models,
		Registry: st.Reg, MaxBodyBytes: o.maxBody, APIKeys: o.apiKeys, Ready: st.Sched.Ready, Batches: bapi})
	if err != nil {
		t.Fatal(err)
	}
	batchDone := make(chan struct{})
	if bm != nil {
		go func() { _ = bm.Run(ctx, gw); bm.Close(); close(batchDone) }()
	} else {
		close(batchDone)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { _ = gw.Serve(ln); close(served) }()
	st.URL = "http://" + ln.Addr().String()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = gw.Shutdown(sctx)
		<-served
		cancel()
		<-batchDone
		<-done
		for _, b := range backends {
			if c, ok := b.(interface{ Close() }); ok {
				c.Close()
			}
		}
	})
	return st
}
