package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/gateway"
	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/router"
	"github.com/sluice-llm/sluice/runtime/llamacpp"
	"github.com/sluice-llm/sluice/scheduler"
)

// pool starts n llama-servers (slots each, no host prompt cache) behind one gateway
// serving "tiny" from all of them, with the given policy.
func pool(t *testing.T, n, slots int, policy scheduler.Policy) (base string, reg *prometheus.Registry) {
	t.Helper()
	reg = prometheus.NewRegistry()
	backends := map[string]scheduler.Backend{}
	engines := map[string]scheduler.EngineOptions{}
	var entries []router.Entry
	for i := range n {
		p := enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Slots: slots, Extra: []string{"--cache-ram", "0"}})
		id := fmt.Sprintf("e%d", i)
		b, err := llamacpp.New(llamacpp.Options{Name: id, URL: p.URL, Slots: slots})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		backends[id] = b
		engines[id] = scheduler.EngineOptions{Addressable: true}
		entries = append(entries, router.Entry{Name: "tiny", Backend: id, UpstreamModel: "tiny"})
	}
	sched := scheduler.New(backends, scheduler.Options{Policy: policy, Engines: engines, Registry: reg})
	sched.RefreshAll(context.Background())
	rt, err := router.New(entries)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Options{Router: rt, Scheduler: sched, Models: rt.Models, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gw.Serve(ln) }()
	t.Cleanup(func() { _ = gw.Shutdown(context.Background()) })
	return "http://" + ln.Addr().String(), reg
}

func systemPrompt(tenant int) string {
	var b strings.Builder
	for i := 0; b.Len() < 1800; i++ {
		fmt.Fprintf(&b, "Tenant %d rule %d: answer politely about topic %d and cite source %d. ", tenant, i, i*7+tenant, i*13)
	}
	return b.String()
}

type usage struct {
	Prompt int `json:"prompt_tokens"`
	Cached int `json:"cached"`
}

func ask(t *testing.T, base string, tenant, q int, headers map[string]string) (int, usage, string) {
	t.Helper()
	body := fmt.Sprintf(`{"model":"tiny","max_tokens":4,"messages":[{"role":"system","content":%q},{"role":"user","content":"question %d"}]}`,
		systemPrompt(tenant), q)
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
			Details      struct {
				Cached int `json:"cached_tokens"`
			} `json:"prompt_tokens_details"`
		} `json:"usage"`
	}
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, usage{out.Usage.PromptTokens, out.Usage.Details.Cached}, string(b)
}

// TestPrefixAffinityAcrossEngines: with two engines and no host prompt cache, sluice's
// policy sends each tenant back to the engine slot that holds its system prompt
// (llama-server reports the reuse in cached_tokens); round-robin does not.
func TestPrefixAffinityAcrossEngines(t *testing.T) {
	hits := map[scheduler.Policy]int{}
	const tenants, rounds = 4, 3
	for _, pol := range []scheduler.Policy{scheduler.PolicySluice, scheduler.PolicyRoundRobin} {
		base, _ := pool(t, 2, 2, pol)
		// Tenants come back in another order each round, as traffic does.
		orders := [rounds][tenants]int{{0, 1, 2, 3}, {1, 0, 3, 2}, {3, 2, 1, 0}}
		for r := range rounds {
			for _, tn := range orders[r] {
				code, u, body := ask(t, base, tn, r*tenants+tn, nil)
				if code != 200 {
					t.Fatalf("%s: status %d: %s", pol, code, body)
				}
				if r > 0 && u.Cached >= u.Prompt/2 {
					hits[pol]++
				}
			}
		}
	}
	repeats := tenants * (rounds - 1)
	t.Logf("repeat requests served from the engine's prefix cache: sluice %d/%d, round-robin %d/%d",
		hits[scheduler.PolicySluice], repeats, hits[scheduler.PolicyRoundRobin], repeats)
	if hits[scheduler.PolicySluice] != repeats {
		t.Fatalf("sluice policy: %d of %d repeats reused the tenant's prefix", hits[scheduler.PolicySluice], repeats)
	}
	if hits[scheduler.PolicyRoundRobin] >= repeats {
		t.Fatalf("round-robin reused every prefix: the test does not tell the policies apart")
	}
}

// TestQueueDeadlineAndPriority: with the only slot busy, a request whose
// X-Sluice-Deadline-Ms passes while it waits gets 504; a bad priority header gets 400.
func TestQueueDeadlineAndPriority(t *testing.T) {
	base, _ := pool(t, 1, 1, scheduler.PolicySluice)
	done := make(chan struct{})
	go func() {
		defer close(done)
		body := `{"model":"tiny","max_tokens":1900,"messages":[{"role":"user","content":"a very long story"}]}`
		resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond) // let the long request take the slot
	start := time.Now()
	code, _, body := ask(t, base, 0, 0, map[string]string{"X-Sluice-Deadline-Ms": "150"})
	if code != 504 || !strings.Contains(body, "queue_timeout") {
		t.Fatalf("deadline: status %d %s", code, body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("deadline answered after %v", d)
	}
	code, _, body = ask(t, base, 0, 0, map[string]string{"X-Sluice-Priority": "urgent"})
	if code != 400 || !strings.Contains(body, "X-Sluice-Priority") {
		t.Fatalf("bad priority: %d %s", code, body)
	}
	<-done
}
