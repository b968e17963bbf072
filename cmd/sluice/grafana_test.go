package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sluice-llm/sluice/gpu"
)

const grafanaBoard = "../../deploy/grafana/sluice.json"

// board is the part of a Grafana dashboard the test reads.
type board struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int             `json:"id"`
		Type       string          `json:"type"`
		Title      string          `json:"title"`
		Datasource json.RawMessage `json:"datasource"`
		GridPos    struct{ H, W, X, Y int }
		Targets    []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
	} `json:"panels"`
}

var metricName = regexp.MustCompile(`\bsluice_[a-zA-Z0-9_]+`)

// readBoard parses the Grafana board, checks its shape, and returns the metric names
// its queries use (by query).
func readBoard(t *testing.T) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(grafanaBoard)
	if err != nil {
		t.Fatal(err)
	}
	var b board
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatalf("%s: %v", grafanaBoard, err)
	}
	if b.UID == "" || b.Title == "" {
		t.Errorf("board uid %q title %q", b.UID, b.Title)
	}
	vars := map[string]bool{}
	uses := map[string][]string{}
	for _, v := range b.Templating.List {
		vars[v.Name] = true
		for _, m := range metricName.FindAllString(v.Definition, -1) {
			uses[m] = append(uses[m], "variable "+v.Name)
		}
	}
	if !vars["datasource"] || !vars["instance"] {
		t.Errorf("variables %v: want datasource and instance", vars)
	}
	ids := map[int]bool{}
	queries := 0
	for _, p := range b.Panels {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: grid %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if !bytes.Contains(p.Datasource, []byte(`"${datasource}"`)) || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %s, %d queries", p.Title, p.Datasource, len(p.Targets))
		}
		for _, q := range p.Targets {
			queries++
			if err := promqlShape(q.Expr); err != nil {
				t.Errorf("panel %q query %s: %v: %s", p.Title, q.RefID, err, q.Expr)
			}
			if !strings.Contains(q.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q query %s does not follow the instance variable: %s", p.Title, q.RefID, q.Expr)
			}
			names := metricName.FindAllString(q.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q query %s reads no sluice metric: %s", p.Title, q.RefID, q.Expr)
			}
			for _, m := range names {
				uses[m] = append(uses[m], fmt.Sprintf("%q %s", p.Title, q.RefID))
			}
		}
	}
	if queries < 40 {
		t.Errorf("only %d queries", queries)
	}
	return uses
}

// promqlShape checks what a typo breaks first: balanced brackets and quotes.
func promqlShape(expr string) error {
	var stack []rune
	pair := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inStr := false
	for _, c := range expr {
		switch {
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '(' || c == '[' || c == '{':
			stack = append(stack, c)
		case pair[c] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pair[c] {
				return fmt.Errorf("unbalanced %c", c)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if inStr || len(stack) > 0 {
		return fmt.Errorf("unclosed %q", string(stack))
	}
	return nil
}

// series lists the metric names (with _bucket, _sum, _count) in a /metrics page.
func series(text []byte) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		if i := strings.IndexAny(l, "{ "); i > 0 {
			out[l[:i]] = true
		}
	}
	return out
}

// TestGrafanaBoard: every metric that deploy/grafana/sluice.json queries is in the
// /metrics of a running sluice (serve in this process, with a managed llama-server, a
// fake cloud, the cache, compression, the ledger with a rate-limited key and the Batch
// API, under traffic that makes each labelled series appear). This box has no GPU, so
// the GPU metrics are checked against sluice's GPU collector reading go-nvml's DGX H100
// mock, exported the same way.
func TestGrafanaBoard(t *testing.T) {
	uses := readBoard(t)
	const key, limited = "sk-grafana", "sk-grafana-limited"
	base, stop := serveForDashboard(t, ", api_keys: ["+key+", {key: "+limited+", requests_per_minute: 1}]")
	defer stop()
	tctx, stopTraffic := context.WithCancel(context.Background())
	var twg sync.WaitGroup
	twg.Add(1)
	go func() { defer twg.Done(); traffic(tctx, t, base, key) }()
	defer func() { stopTraffic(); twg.Wait() }()
	events(t, base, key, limited)

	gpuSeries := series(scrape(t, gpuMetrics(t)))
	var missing []string
	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		have := series(scrape(t, base+"/metrics"))
		missing = missing[:0]
		for m := range uses {
			if strings.HasPrefix(m, "sluice_gpu") && !have["sluice_gpu_info"] {
				if !gpuSeries[m] {
					missing = append(missing, m+" (GPU collector)")
				}
				continue
			}
			if !have[m] {
				missing = append(missing, m)
			}
		}
		if len(missing) == 0 {
			break
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			sort.Strings(missing)
			for _, m := range missing {
				t.Errorf("%s is not in /metrics; the board queries it in %s", m, strings.Join(uses[m], ", "))
			}
			return
		}
	}
	t.Logf("%d metrics queried by the board, all in /metrics", len(uses))
}

// events makes the series that steady traffic does not: a rate-limit refusal, a stream
// the client leaves, a body over the limit.
func events(t *testing.T, base, key, limited string) {
	t.Helper()
	do := func(k, body string) int {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+k)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		if strings.Contains(body, `"stream":true`) {
			buf := make([]byte, 64)
			_, _ = resp.Body.Read(buf) // then leave
			return resp.StatusCode
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	small := `{"model":"tiny","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`
	if s := do(limited, small); s != 200 {
		t.Errorf("limited key, first request: %d", s)
	}
	if s := do(limited, small); s != 429 {
		t.Errorf("limited key, second request: %d, want 429", s)
	}
	do(key, `{"model":"tiny","stream":true,"max_tokens":400,"messages":[{"role":"user","content":"Tell a long story."}]}`)
	if s := do(key, `{"model":"tiny","messages":[{"role":"user","content":"`+strings.Repeat("x", 9<<20)+`"}]}`); s != 413 {
		t.Errorf("a 9 MiB body: %d, want 413", s)
	}
}

func scrape(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return b
}

// gpuMetrics serves sluice's GPU collector over go-nvml's DGX H100 mock (8 H100s with
// telemetry wired) and returns its /metrics URL.
func gpuMetrics(t *testing.T) string {
	t.Helper()
	s := dgxh100.New()
	for i, d := range s.Devices {
		dev := d.(*server.Device)
		dev.UUID = fmt.Sprintf("GPU-h100-%d", i)
		dev.MemoryInfo = nvml.Memory{Total: dev.MemoryInfo.Total, Used: uint64(i) << 30, Free: dev.MemoryInfo.Total - uint64(i)<<30}
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: uint32(10 * i), Memory: uint32(5 * i)}, nvml.SUCCESS
		}
		dev.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 100_000 + uint32(i)*50_000, nvml.SUCCESS }
		dev.GetEnforcedPowerLimitFunc = func() (uint32, nvml.Return) { return 700_000, nvml.SUCCESS }
		dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 30 + uint32(i), nvml.SUCCESS }
		dev.GetClockInfoFunc = func(nvml.ClockType) (uint32, nvml.Return) { return 1980, nvml.SUCCESS }
		dev.GetTotalEccErrorsFunc = func(nvml.MemoryErrorType, nvml.EccCounterType) (uint64, nvml.Return) { return 0, nvml.SUCCESS }
	}
	mon := gpu.NewMonitor(gpu.NewNVMLSource(s), gpu.MonitorOptions{})
	if snap := mon.Refresh(context.Background()); len(snap.Devices) != 8 {
		t.Fatalf("mock GPUs: %+v", snap)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(gpu.NewCollector(mon))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return srv.URL
}
