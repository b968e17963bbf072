package smoke

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options configure a smoke run. Zero values take the defaults in Defaults.
type Options struct {
	Sluice      string // sluice binary (default: this executable)
	LlamaServer string // llama-server binary
	Model       string // GGUF; empty: generate one with Vocab
	Vocab       string // tokenizer.json for generation
	GenDim      int    // generated model width (default 2048)
	GenLayers   int    // generated model depth (default 16)
	Slots       int    // llama-server --parallel (default 8)
	Concurrency int    // streams at once (default 8)
	Requests    int    // streamed requests in the load phase (default 32)
	MaxTokens   int    // per request (default 256)
	GPULayers   int    // -ngl (default -1: all)
	GPUPrice    float64
	EngineArgs  []string // extra llama-server arguments (e.g. -fa off)
	Port        int
	Dir         string    // work directory (logs, config, generated model)
	Log         io.Writer // progress
}

// Result is what a smoke run measured.
type Result struct {
	GPU                   string  `json:"gpu"`
	Model                 string  `json:"model"`
	Requests              int     `json:"requests"`
	RequestsOK            int     `json:"requests_ok"`
	Tokens                int     `json:"tokens"`
	WallS                 float64 `json:"wall_s"`
	TPSSingle             float64 `json:"tps_single"`
	TPS                   float64 `json:"tps"`
	TTFTp50MS             float64 `json:"ttft_p50_ms"`
	VRAMGiB               float64 `json:"vram_gib"`
	PowerW                float64 `json:"power_w"`
	USDPerHour            float64 `json:"usd_per_hour"`
	USDPerMTokens         float64 `json:"usd_per_m_tokens"`
	USDPerMTokensFullLoad float64 `json:"usd_per_m_tokens_full_load"`
	StartupS              float64 `json:"startup_s"`
}

func (o *Options) defaults() error {
	if o.Sluice == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.Sluice = exe
	}
	if o.LlamaServer == "" {
		o.LlamaServer = "llama-server"
	}
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	def(&o.GenDim, 2048)
	def(&o.GenLayers, 16)
	def(&o.Slots, 8)
	def(&o.Concurrency, 8)
	def(&o.Requests, 32)
	def(&o.MaxTokens, 256)
	def(&o.GPULayers, -1)
	def(&o.Port, 18080)
	if o.Log == nil {
		o.Log = io.Discard
	}
	o.Log = &lockedWriter{w: o.Log} // written from several goroutines
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "sluice-smoke-")
		if err != nil {
			return err
		}
		o.Dir = d
	}
	return os.MkdirAll(o.Dir, 0o755)
}

// Run performs the smoke test.
func Run(ctx context.Context, o Options) (Result, error) {
	if err := o.defaults(); err != nil {
		return Result{}, err
	}
	var res Result
	if o.Model == "" {
		if o.Vocab == "" {
			return res, errors.New("smoke: give a model, or a vocabulary to generate one")
		}
		o.Model = filepath.Join(o.Dir, "smoke-model.gguf")
		fmt.Fprintf(o.Log, "generating a %d-dim, %d-layer model\n", o.GenDim, o.GenLayers)
		cmd := exec.CommandContext(ctx, o.Sluice, "gen-model", "--dim", strconv.Itoa(o.GenDim), "--layers",
			strconv.Itoa(o.GenLayers), "--vocab", o.Vocab, "--out", o.Model)
		if out, err := cmd.CombinedOutput(); err != nil {
			return res, fmt.Errorf("smoke: gen-model: %v: %s", err, out)
		}
	}
	res.Model = o.Model
	cfg := fmt.Sprintf(`server:
  listen: 127.0.0.1:%d
  admin_key_file: %s
engines:
  - name: gpu
    kind: llamacpp
    binary: %s
    model_path: %s
    slots: %d
    context: 2048
    gpu_layers: %d
    models: [{name: smoke}]
`, o.Port, filepath.Join(o.Dir, "admin-key"), o.LlamaServer, o.Model, o.Slots, o.GPULayers)
	if len(o.EngineArgs) > 0 {
		q := make([]string, len(o.EngineArgs))
		for i, a := range o.EngineArgs {
			q[i] = strconv.Quote(a)
		}
		cfg += "    args: [" + strings.Join(q, ", ") + "]\n"
	}
	if o.GPUPrice > 0 {
		cfg += fmt.Sprintf("pricing:\n  gpu_per_hour: {\"NVIDIA\": %g}\n", o.GPUPrice)
	}
	cfgPath := filepath.Join(o.Dir, "sluice.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return res, err
	}
	logf, err := os.Create(filepath.Join(o.Dir, "sluice.log"))
	if err != nil {
		return res, err
	}
	defer logf.Close()
	cmd := exec.Command(o.Sluice, "serve", "--config", cfgPath)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			fmt.Fprintln(o.Log, sc.Text())
			if !ok && strings.HasPrefix(sc.Text(), "sluice ready") {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			return res, fmt.Errorf("smoke: sluice exited before it was ready; see %s", logf.Name())
		}
	case <-time.After(5 * time.Minute):
		return res, fmt.Errorf("smoke: sluice not ready after 5 minutes; see %s", logf.Name())
	case <-ctx.Done():
		return res, ctx.Err()
	}
	res.StartupS = time.Since(start).Seconds()
	base := fmt.Sprintf("http://127.0.0.1:%d", o.Port)
	c := &http.Client{Timeout: 10 * time.Minute}

	if _, _, err := stream(ctx, c, base, 0, o.MaxTokens); err != nil {
		return res, fmt.Errorf("smoke: warm-up: %w", err)
	}
	t0 := time.Now()
	n, _, err := stream(ctx, c, base, 1, o.MaxTokens)
	if err != nil {
		return res, err
	}
	res.TPSSingle = float64(n) / time.Since(t0).Seconds()

	// Load, with a sampler reading power and memory from sluice's metrics.
	sctx, stop := context.WithCancel(ctx)
	var peak struct {
		sync.Mutex
		power, vram float64
	}
	var swg sync.WaitGroup
	swg.Add(1)
	go func() {
		defer swg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			m, err := scrape(sctx, c, base)
			if err == nil {
				peak.Lock()
				peak.power = max(peak.power, m.first("sluice_gpu_power_watts", ""))
				peak.vram = max(peak.vram, m.first("sluice_gpu_memory_used_bytes", ""))
				peak.Unlock()
			}
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	jobs := make(chan int)
	var mu sync.Mutex
	var ttfts []float64
	var wg sync.WaitGroup
	t0 = time.Now()
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				n, ttft, err := stream(ctx, c, base, i, o.MaxTokens)
				mu.Lock()
				if err == nil {
					res.RequestsOK++
					res.Tokens += n
					ttfts = append(ttfts, ttft.Seconds()*1000)
				} else {
					fmt.Fprintf(o.Log, "request %d: %v\n", i, err)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range o.Requests {
		jobs <- i + 2
	}
	close(jobs)
	wg.Wait()
	res.WallS = time.Since(t0).Seconds()
	stop()
	swg.Wait()
	res.Requests = o.Requests
	res.TPS = float64(res.Tokens) / res.WallS
	sort.Float64s(ttfts)
	if len(ttfts) > 0 {
		res.TTFTp50MS = ttfts[len(ttfts)/2]
	}
	m, err := scrape(ctx, c, base)
	if err != nil {
		return res, err
	}
	res.PowerW = peak.power
	res.VRAMGiB = max(peak.vram, m.first("sluice_gpu_memory_used_bytes", "")) / (1 << 30)
	res.GPU = m.label("sluice_gpu_info", "name")
	if res.GPU == "" {
		res.GPU = "none (CPU)"
	}
	res.USDPerHour = m.first("sluice_engine_price_usd_per_hour", `engine="gpu"`)
	res.USDPerMTokens = m.first("sluice_cost_per_million_tokens_usd", `type="total"`)
	if res.TPS > 0 {
		res.USDPerMTokensFullLoad = res.USDPerHour / (res.TPS * 3600) * 1e6
	}
	if status, err := exec.CommandContext(ctx, o.Sluice, "status", "--url", base, "--admin-key-file",
		filepath.Join(o.Dir, "admin-key")).CombinedOutput(); err == nil {
		_ = os.WriteFile(filepath.Join(o.Dir, "status.txt"), status, 0o644)
		fmt.Fprintf(o.Log, "%s\n", status)
	}
	if res.RequestsOK != res.Requests {
		return res, fmt.Errorf("smoke: %d of %d requests failed", res.Requests-res.RequestsOK, res.Requests)
	}
	return res, nil
}

// stream sends one streamed chat and returns its completion tokens and time to first token.
func stream(ctx context.Context, c *http.Client, base string, i, maxTokens int) (int, time.Duration, error) {
	body := fmt.Sprintf(`{"model":"smoke","stream":true,"max_tokens":%d,"stream_options":{"include_usage":true},`+
		`"messages":[{"role":"user","content":"Request %d: tell a long story about GPUs."}]}`, maxTokens, i)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return 0, 0, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var ttft time.Duration
	tokens := -1
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var ch struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
			Error *struct{ Message string } `json:"error"`
		}
		if err := json.Unmarshal([]byte(data), &ch); err != nil {
			return 0, 0, fmt.Errorf("bad chunk %q: %w", data, err)
		}
		if ch.Error != nil {
			return 0, 0, fmt.Errorf("stream error: %s", ch.Error.Message)
		}
		if ttft == 0 && len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
			ttft = time.Since(start)
		}
		if ch.Usage != nil {
			tokens = ch.Usage.CompletionTokens
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if tokens < 0 {
		return 0, 0, errors.New("stream ended without a usage chunk")
	}
	return tokens, ttft, nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type metrics []string

func scrape(ctx context.Context, c *http.Client, base string) (metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return strings.Split(string(b), "\n"), nil
}

// first returns the value of the first sample of name whose labels contain filter.
func (m metrics) first(name, filter string) float64 {
	for _, l := range m {
		if strings.HasPrefix(l, name+"{") || strings.HasPrefix(l, name+" ") {
			if filter != "" && !strings.Contains(l, filter) {
				continue
			}
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return v
		}
	}
	return 0
}

func (m metrics) label(name, label string) string {
	for _, l := range m {
		if strings.HasPrefix(l, name+"{") {
			i := strings.Index(l, label+`="`)
			if i < 0 {
				continue
			}
			rest := l[i+len(label)+2:]
			return rest[:strings.IndexByte(rest, '"')]
		}
	}
	return ""
}

// WriteTable prints the result.
func (r Result) WriteTable(w io.Writer) {
	rows := [][2]string{
		{"GPU", r.GPU},
		{"model", r.Model},
		{"sluice + engine start", fmt.Sprintf("%.1f s", r.StartupS)},
		{"requests", fmt.Sprintf("%d/%d ok, %d completion tokens in %.2f s", r.RequestsOK, r.Requests, r.Tokens, r.WallS)},
		{"tokens/s, one stream", fmt.Sprintf("%.0f", r.TPSSingle)},
		{"tokens/s, all streams", fmt.Sprintf("%.0f", r.TPS)},
		{"time to first token p50", fmt.Sprintf("%.1f ms", r.TTFTp50MS)},
		{"VRAM used (peak)", fmt.Sprintf("%.2f GiB", r.VRAMGiB)},
		{"power (peak during load)", fmt.Sprintf("%.0f W", r.PowerW)},
		{"engine price", fmt.Sprintf("$%.2f / hour", r.USDPerHour)},
		{"cost per 1M tokens (metered)", fmt.Sprintf("$%.4f", r.USDPerMTokens)},
		{"cost per 1M tokens (full load)", fmt.Sprintf("$%.4f", r.USDPerMTokensFullLoad)},
	}
	for _, row := range rows {
		fmt.Fprintf(w, "%-32s %s\n", row[0], row[1])
	}
}
