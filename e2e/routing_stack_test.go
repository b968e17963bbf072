package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/compress"
	"github.com/sluice-llm/sluice/gateway"
	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/internal/fakecloud"
	"github.com/sluice-llm/sluice/ledger"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/overflow"
	"github.com/sluice-llm/sluice/router"
	"github.com/sluice-llm/sluice/runtime/llamacpp"
	"github.com/sluice-llm/sluice/runtime/openai"
	"github.com/sluice-llm/sluice/scheduler"
)

// Keys of the routed stack and their residency policies.
const (
	keyAny   = "sk-any"
	keyEU    = "sk-eu"
	keyLocal = "sk-local"
)

// routedStack is the gateway wired as `sluice serve` wires it with tiers and overflow:
// gateway → router → overflow → scheduler → a real llama-server ("tiny", tier small),
// and two fake OpenAI-compatible clouds, one in the EU and one in the US, each serving
// "mini" (tier small) and "cloud-tools" (tier large, the model that calls tools).
type routedStack struct {
	URL          string
	Chat         *enginetest.Proc
	EU, US       *fakecloud.Server
	Sched        *scheduler.Scheduler
	Reg          *prometheus.Registry
	keyIDs       map[string]string // key -> tenant id the gateway gives it
	Overflow     *overflow.Stage
	Router       *router.Router
	tenantPolicy map[string]string
}

func tenantOf(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "key-" + fmt.Sprintf("%x", sum[:6])
}

func startRoutedStack(t *testing.T, slo time.Duration) *routedStack {
	t.Helper()
	st := &routedStack{Reg: prometheus.NewRegistry()}
	st.Chat = enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Slots: 1})
	var err error
	if st.EU, err = fakecloud.Start(fakecloud.Options{Name: "eu", MaxTokens: 8}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.EU.Close)
	if st.US, err = fakecloud.Start(fakecloud.Options{Name: "us", MaxTokens: 8}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.US.Close)
	tk, err := compress.LoadTokenizer(enginetest.VocabPath(t))
	if err != nil {
		t.Fatal(err)
	}
	chat, err := llamacpp.New(llamacpp.Options{Name: "local", URL: st.Chat.URL, Slots: 1, Counter: tk})
	if err != nil {
		t.Fatal(err)
	}
	eu, err := openai.New(openai.Options{Name: "cloud-eu", BaseURL: st.EU.URL, APIKey: "sk-provider-eu", Counter: tk})
	if err != nil {
		t.Fatal(err)
	}
	us, err := openai.New(openai.Options{Name: "cloud-us", BaseURL: st.US.URL, APIKey: "sk-provider-us", Counter: tk})
	if err != nil {
		t.Fatal(err)
	}
	entries := []router.Entry{
		{Name: "tiny", Backend: "local", UpstreamModel: "tiny", Tier: "small", ContextWindow: 2048},
		{Name: "mini", Backend: "cloud-eu", UpstreamModel: "gpt-4o-mini", Region: "eu", Tier: "small", InputPrice: 0.15, OutputPrice: 0.6},
		{Name: "mini", Backend: "cloud-us", UpstreamModel: "gpt-4o-mini", Region: "us", Tier: "small", InputPrice: 0.10, OutputPrice: 0.4},
		{Name: "cloud-tools", Backend: "cloud-eu", UpstreamModel: "gpt-4o", Region: "eu", Tier: "large", InputPrice: 2.5, OutputPrice: 10,
			Caps: router.CapTools},
	}
	rt, err := router.NewWithOptions(entries, router.Options{Tiers: []string{"small", "large"}, Remote: true})
	if err != nil {
		t.Fatal(err)
	}
	st.Router = rt
	st.Sched = scheduler.New(map[string]scheduler.Backend{"local": chat}, scheduler.Options{Registry: st.Reg,
		RefreshEvery: 200 * time.Millisecond, SLO: [2]time.Duration{slo, slo}})
	prices := map[string]overflow.Price{"mini": {Input: 0.15, Output: 0.6}, "cloud-tools": {Input: 2.5, Output: 10}}
	st.Overflow = overflow.New(st.Sched, overflow.Options{Registry: st.Reg, Remote: map[string]overflow.Remote{
		"cloud-eu": {Backend: eu, Region: "eu", MaxConcurrency: 8, Prices: prices},
		"cloud-us": {Backend: us, Region: "us", MaxConcurrency: 8, Prices: map[string]overflow.Price{"mini": {Input: 0.1, Output: 0.4}}},
	}})
	ctx, cancel := context.WithCancel(context.Background())
	st.Sched.RefreshAll(ctx)
	done := make(chan struct{})
	go func() { st.Sched.Run(ctx); close(done) }()
	// The keys and their residency policies, as server.api_keys entries give them: the
	// gateway attaches each request's key (ledger.KeyRing without a store).
	var keys []ledger.ConfigKey
	for k, pol := range map[string]string{keyAny: models.ResidencyAny, keyEU: models.ResidencyEU, keyLocal: models.ResidencyLocalOnly} {
		d := sha256.Sum256([]byte(k))
		keys = append(keys, ledger.ConfigKey{Digest: d, Key: &models.Key{ID: tenantOf(k), Tenant: tenantOf(k), Residency: pol}})
	}
	ring, err := ledger.NewKeyRing(ctx, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Options{Router: rt, Scheduler: st.Overflow,
		Models: rt.Models, Registry: st.Reg, Keys: ring, Ready: st.Sched.Ready})
	if err != nil {
		t.Fatal(err)
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
		<-done
		chat.Close()
		eu.Close()
		us.Close()
	})
	return st
}
