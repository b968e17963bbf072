package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/internal/fakecloud"
	"github.com/sluice-llm/sluice/models/tinymodel"
)

// TestServeRouting runs `sluice serve --config` with a managed llama-server (tier small)
// and a remote engine in the EU (a fake OpenAI-compatible cloud, tier large): tiers,
// auto-<tier>, X-Sluice-Tier, the remote engine's per-token price and /v1/messages are
// wired from the config.
func TestServeRouting(t *testing.T) {
	cloud, err := fakecloud.Start(fakecloud.Options{Name: "eu", MaxTokens: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	model := enginetest.TinyModel(t, tinymodel.Options{})
	bin := enginetest.LlamaServerPath(t)
	port := enginetest.FreePort(t)
	t.Setenv("SLUICE_CACHE", t.TempDir())
	t.Setenv("CLOUD_KEY", "sk-provider")
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte(`
server: {listen: 127.0.0.1:`+itoa(port)+`}
log: {level: warn}
engines:
  - name: local
    model_path: `+model+`
    binary: `+bin+`
    slots: 1
    models: [{name: tiny, tier: small}]
  - name: cloud-eu
    kind: openai
    url: `+cloud.URL+`
    api_key: ${CLOUD_KEY}
    region: eu
    models:
      - {name: big, upstream: gpt-4o, tier: large, capabilities: [tools], price: {input: 2.5, output: 10}}
routing:
  tiers: [small, large]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"serve", "--config", cfg}, pw, io.Discard)
		pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	ready := false
	var out []string
	for !ready && lines.Scan() {
		out = append(out, lines.Text())
		ready = strings.HasPrefix(lines.Text(), "sluice ready")
	}
	if !ready {
		t.Fatalf("no ready line:\n%s", strings.Join(out, "\n"))
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if !strings.Contains(out[len(out)-1], "auto, auto-large, auto-small, big, tiny") {
		t.Errorf("models: %s", out[len(out)-1])
	}
	base := "http://127.0.0.1:" + itoa(port)
	call := func(path, body string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	chat := func(model string) string {
		return `{"model":"` + model + `","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
	}
	for _, tt := range []struct {
		name, body, tierHdr, region, model, backend string
	}{
		{"local model", chat("tiny"), "", "local", "tiny", "local"},
		{"auto-large", chat("auto-large"), "", "eu", "big", "cloud-eu"},
		{"tier header", chat("tiny"), "large", "eu", "big", "cloud-eu"},
	} {
		var hdr []string
		if tt.tierHdr != "" {
			hdr = []string{"X-Sluice-Tier", tt.tierHdr}
		}
		resp, body := call("/v1/chat/completions", tt.body, hdr...)
		route := resp.Header.Get("X-Sluice-Route")
		if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Region") != tt.region || !strings.Contains(body, `"model":"`+tt.model+`"`) ||
			!strings.Contains(route, "target="+tt.backend) {
			t.Errorf("%s: %d region %q route %q: %s", tt.name, resp.StatusCode, resp.Header.Get("X-Sluice-Region"), route, body)
		}
		if tt.backend == "cloud-eu" {
			// 5 completion tokens at $10/M and the prompt at $2.5/M.
			c, err := strconv.ParseFloat(resp.Header.Get("X-Sluice-Cost-USD"), 64)
			if err != nil || c < 5*10/1e6 || c > 1e-3 {
				t.Errorf("%s: cost %q", tt.name, resp.Header.Get("X-Sluice-Cost-USD"))
			}
		}
	}
	resp, body := call("/v1/messages", `{"model":"tiny","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"type":"message"`) || !strings.Contains(body, `"output_tokens":4`) {
		t.Errorf("/v1/messages: %d %s", resp.StatusCode, body)
	}
	if got := cloud.Requests(); len(got) != 2 || got[0].Model != "gpt-4o" {
		t.Errorf("cloud requests: %+v", got)
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit code %d", c)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}
