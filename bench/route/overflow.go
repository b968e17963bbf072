package route

// The overflow half of `sluice bench route`: sluice in front of real llama-server
// engines and two fake clouds (EU and US) under Poisson load at fractions of the local
// capacity, with EU-restricted and unrestricted keys.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/internal/fakecloud"
)

// OverflowConfig sets up the overflow benchmark. Zero values take the defaults in
// brackets (Fill applies them).
type OverflowConfig struct {
	// Engines llama-server processes [2] with SlotsPerEngine slots [2] and Threads
	// threads [1] each, running Model [a generated tiny model].
	Engines, SlotsPerEngine, Threads int
	LlamaServer, Model, Vocab        string
	// OutputTokens per request [128]; the prompt is a short unique question.
	OutputTokens int
	// SLO is the interactive time-to-first-token target [1.5s]. The scheduler refuses
	// (and the request overflows) when the expected time to first token exceeds Admit
	// times the SLO [0.6]: below MaxWait, with headroom for the estimate's error, as
	// docs/routing.md advises.
	SLO   time.Duration
	Admit float64
	// MaxWait bounds a local request's wait for its first token before it moves to a
	// cloud [SLO - CloudTTFT - 100ms]; negative: no bound.
	MaxWait time.Duration
	// CloudTTFT [400ms] and CloudTokensPerSecond [60] shape the fake clouds;
	// CloudConcurrency caps requests in flight on each [256].
	CloudTTFT            time.Duration
	CloudTokensPerSecond float64
	CloudConcurrency     int
	// Loads are arrival rates as multiples of the measured local capacity [0.5, 1, 3],
	// each run for Duration [20s]; Calibration is the closed-loop run that measures the
	// capacity [10s].
	Loads       []float64
	Duration    time.Duration
	Calibration time.Duration
	// EUShare of requests come with the EU-restricted key [0.5]; the rest with an
	// unrestricted one.
	EUShare float64
	Seed    uint64 // [1]
	// Progress receives a line per phase (nil: silent); Logger the engines' output.
	Progress io.Writer
	Logger   *slog.Logger
}

// Flags registers the configuration's flags on fs (for `sluice bench route`).
func (c *OverflowConfig) Flags(fs *flag.FlagSet) {
	fs.IntVar(&c.Engines, "engines", 2, "llama-server processes")
	fs.IntVar(&c.SlotsPerEngine, "slots", 2, "slots per engine")
	fs.IntVar(&c.Threads, "threads", 1, "threads per engine")
	fs.StringVar(&c.LlamaServer, "llama-server", "", "llama-server binary (default: the build cache, else $PATH)")
	fs.StringVar(&c.Model, "model", "", "GGUF model (default: a tiny model generated into the cache)")
	fs.StringVar(&c.Vocab, "vocab", "", "Llama-2 tokenizer.json for the tiny model (default: the cache)")
	fs.IntVar(&c.OutputTokens, "output-tokens", 128, "completion tokens per request")
	fs.DurationVar(&c.SLO, "slo", 1500*time.Millisecond, "interactive time-to-first-token target")
	fs.Float64Var(&c.Admit, "admit", 0.6, "the scheduler's saturation threshold as a fraction of --slo (overflow beyond it)")
	fs.DurationVar(&c.MaxWait, "max-wait", 0, "longest wait for a first local token before moving to a cloud (default: slo - cloud-ttft - 100ms; negative: none)")
	fs.DurationVar(&c.CloudTTFT, "cloud-ttft", 400*time.Millisecond, "fake clouds' time to first token")
	fs.Float64Var(&c.CloudTokensPerSecond, "cloud-tps", 60, "fake clouds' tokens per second")
	fs.IntVar(&c.CloudConcurrency, "cloud-concurrency", 256, "requests in flight per cloud")
	fs.DurationVar(&c.Duration, "duration", 20*time.Second, "arrival window per load level")
	fs.DurationVar(&c.Calibration, "calibration", 10*time.Second, "closed-loop run that measures the local capacity")
	fs.Float64Var(&c.EUShare, "eu-share", 0.5, "share of requests with the EU-restricted key")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the arrivals and key choice")
}

// Fill applies the defaults.
func (c *OverflowConfig) Fill() {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&c.Engines, 2)
	def(&c.SlotsPerEngine, 2)
	def(&c.Threads, 1)
	def(&c.OutputTokens, 128)
	def(&c.CloudConcurrency, 256)
	if c.SLO <= 0 {
		c.SLO = 1500 * time.Millisecond
	}
	if c.Admit <= 0 || c.Admit > 1 {
		c.Admit = 0.6
	}
	if c.CloudTTFT <= 0 {
		c.CloudTTFT = 400 * time.Millisecond
	}
	if c.CloudTokensPerSecond <= 0 {
		c.CloudTokensPerSecond = 60
	}
	if c.MaxWait == 0 {
		c.MaxWait = max(c.SLO-c.CloudTTFT-100*time.Millisecond, c.SLO/4)
	}
	if len(c.Loads) == 0 {
		c.Loads = []float64{0.5, 1, 3}
	}
	if c.Duration <= 0 {
		c.Duration = 20 * time.Second
	}
	if c.Calibration <= 0 {
		c.Calibration = 10 * time.Second
	}
	if c.EUShare < 0 || c.EUShare > 1 || c.EUShare == 0 {
		c.EUShare = 0.5
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.LlamaServer == "" {
		c.LlamaServer = config.DefaultLlamaServer(config.OSEnv)
	}
	if c.Vocab == "" {
		c.Vocab = filepath.Join(config.CacheDir(config.OSEnv), "vocab", "llama2", "tokenizer.json")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// OverflowLevel is one load level's figures.
type OverflowLevel struct {
	Load     float64 `json:"load"`     // multiple of the local capacity
	Rate     float64 `json:"rate_rps"` // arrivals per second
	Requests int     `json:"requests"` // sent
	Errors   int     `json:"errors"`   // not answered in full
	Overflow int     `json:"overflow"` // served by a cloud
	Share    float64 `json:"overflow_share"`
	// Time to first token of every request, and of those served locally and remotely.
	P50TTFTms      float64 `json:"p50_ttft_ms"`
	P99TTFTms      float64 `json:"p99_ttft_ms"`
	P99LocalTTFTms float64 `json:"p99_local_ttft_ms"`
	P99CloudTTFTms float64 `json:"p99_cloud_ttft_ms"`
	// LocalBusy is the mean share of local slots in use during the arrival window.
	LocalBusy float64 `json:"local_busy"`
	// EU-key requests, those served in the EU cloud, and residency violations: EU-key
	// requests that reached the US cloud or answered from a region outside the policy.
	EURequests int `json:"eu_requests"`
	EUCloud    int `json:"eu_in_eu_cloud"`
	Violations int `json:"residency_violations"`
	// Requests the clouds received.
	CloudEU int `json:"cloud_eu"`
	CloudUS int `json:"cloud_us"`
	// Remote engines passed over (at their concurrency limit, or their circuit open) and
	// local attempts abandoned after MaxWait.
	SkippedBusy    int `json:"skipped_busy"`
	SkippedBreaker int `json:"skipped_breaker"`
	MaxWait        int `json:"max_wait_moves"`
	// ErrorSamples are the first few errors, for diagnosis.
	ErrorSamples []string `json:"error_samples,omitempty"`
}

// OverflowResult is the benchmark's outcome; the JSON keys the issue names are at the
// top level.
type OverflowResult struct {
	Engines      int             `json:"engines"`
	Slots        int             `json:"slots"`
	OutputTokens int             `json:"output_tokens"`
	CapacityRPS  float64         `json:"capacity_rps"`
	CloudTTFTms  float64         `json:"cloud_ttft_ms"`
	CloudTPS     float64         `json:"cloud_tokens_per_second"`
	Levels       []OverflowLevel `json:"levels"`

	SLOms               float64 `json:"slo_ms"`
	AdmitMs             float64 `json:"admit_ms"`    // the scheduler's saturation threshold
	MaxWaitMs           float64 `json:"max_wait_ms"` // the overflow stage's bound on a local wait
	P99TTFTms3x         float64 `json:"p99_ttft_ms_3x"`
	LocalBusy3x         float64 `json:"local_busy_3x"`
	OverflowShareHalf   float64 `json:"overflow_share_half"`
	ResidencyViolations int     `json:"residency_violations"`
	Errors              int     `json:"errors"`
}

// Pass reports whether the targets hold: at 3x the P99 TTFT within the SLO
// and local slots at least 90% busy; everywhere no overflow at 0.5x, no residency
// violation and no error.
func (r *OverflowResult) Pass() bool {
	return r.P99TTFTms3x <= r.SLOms && r.LocalBusy3x >= 0.9 && r.OverflowShareHalf == 0 &&
		r.ResidencyViolations == 0 && r.Errors == 0
}

// RunOverflow runs the benchmark.
func RunOverflow(ctx context.Context, c OverflowConfig) (*OverflowResult, error) {
	c.Fill()
	progress := func(format string, args ...any) {
		if c.Progress != nil {
			fmt.Fprintf(c.Progress, "bench route: "+format+"\n", args...)
		}
	}
	progress("starting %d llama-server engines (%d slots each) and two fake clouds (TTFT %v, %.0f tokens/s)",
		c.Engines, c.SlotsPerEngine, c.CloudTTFT, c.CloudTokensPerSecond)
	s, err := startStack(ctx, &c)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	cl := newClient(s.url, c.OutputTokens)
	defer cl.hc.CloseIdleConnections()
	res := &OverflowResult{Engines: c.Engines, Slots: s.slots, OutputTokens: c.OutputTokens, SLOms: ms(c.SLO),
		AdmitMs: ms(time.Duration(c.Admit * float64(c.SLO))), MaxWaitMs: ms(max(c.MaxWait, 0)),
		CloudTTFTms: ms(c.CloudTTFT), CloudTPS: c.CloudTokensPerSecond}

	progress("measuring the local capacity (closed loop, %d clients, %v)", 2*s.slots, c.Calibration)
	capRPS, err := calibrate(ctx, cl, 2*s.slots, c.Calibration)
	if err != nil {
		return nil, err
	}
	res.CapacityRPS = capRPS
	rng := rand.New(rand.NewPCG(c.Seed, 0x0ff))
	for _, load := range c.Loads {
		rate := load * capRPS
		progress("load %.1fx: %.1f requests/s for %v", load, rate, c.Duration)
		lv, err := runLevel(ctx, s, cl, rng, load, rate, &c)
		if err != nil {
			return nil, err
		}
		res.Levels = append(res.Levels, lv)
		res.ResidencyViolations += lv.Violations
		res.Errors += lv.Errors
		switch load {
		case 3:
			res.P99TTFTms3x, res.LocalBusy3x = lv.P99TTFTms, lv.LocalBusy
		case 0.5:
			res.OverflowShareHalf = lv.Share
		}
	}
	return res, nil
}

// calibrate runs n clients back to back on the local engines (the EU key, which has
// no cloud cheaper than local: under this load nothing is expected to overflow) and
// returns the completions per second after the first fifth of the run.
func calibrate(ctx context.Context, cl *client, n int, d time.Duration) (float64, error) {
	start := time.Now()
	warm := start.Add(d / 5)
	end := start.Add(d)
	var mu sync.Mutex
	done, overflowed := 0, 0
	var firstErr error
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; time.Now().Before(end); j++ {
				o := cl.chat(ctx, benchKeyEU, fmt.Sprintf("cal-%d-%d", i, j))
				mu.Lock()
				if o.err != nil && firstErr == nil {
					firstErr = o.err
				}
				if o.end.After(warm) && o.end.Before(end) && o.err == nil {
					done++
					if o.region != "local" {
						overflowed++
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, fmt.Errorf("bench route: calibration: %w", firstErr)
	}
	if done == 0 {
		return 0, errors.New("bench route: calibration completed no request")
	}
	// Calibration offers exactly the local slots' worth of concurrency, so nothing should
	// overflow; a stall of a loaded machine may push the odd request out. Those do not
	// count towards local capacity, and more than 2% means the SLO is too tight.
	if overflowed*50 > done {
		return 0, fmt.Errorf("bench route: calibration overflowed %d of %d requests: the SLO is too tight for the engines (raise --slo)", overflowed, done)
	}
	return float64(done-overflowed) / (end.Sub(warm)).Seconds(), nil
}

// runLevel sends Poisson arrivals at rate for c.Duration and waits for every answer.
func runLevel(ctx context.Context, s *stack, cl *client, rng *rand.Rand, load, rate float64, c *OverflowConfig) (OverflowLevel, error) {
	lv := OverflowLevel{Load: load, Rate: rate}
	eu0, us0 := s.eu.Count(), s.us.Count()
	busy0 := s.counter("sluice_overflow_provider_skipped_total", "reason", "provider_busy")
	brk0 := s.counter("sluice_overflow_provider_skipped_total", "reason", "breaker_open")
	wait0 := s.counter("sluice_overflow_attempt_errors_total", "reason", "max_wait")
	usEU0 := countEU(s.us)
	type sent struct {
		eu bool
		o  outcome
	}
	var mu sync.Mutex
	var outs []sent
	var wg sync.WaitGroup
	// Sample the local slots' occupancy through the arrival window.
	stopSampling := make(chan struct{})
	var busySum float64
	var busyN int
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				b := s.busy()
				mu.Lock()
				busySum += b
				busyN++
				mu.Unlock()
			}
		}
	}()
	start := time.Now()
	at := time.Duration(0)
	for i := 0; ; i++ {
		at += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		if at >= c.Duration {
			break
		}
		eu := rng.Float64() < c.EUShare
		key, user := benchKeyAny, fmt.Sprintf("any-%.1f-%d", load, i)
		if eu {
			key, user = benchKeyEU, fmt.Sprintf("eu-%.1f-%d", load, i)
		}
		if d := time.Until(start.Add(at)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				close(stopSampling)
				<-sampled
				wg.Wait()
				return lv, ctx.Err()
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := cl.chat(ctx, key, user)
			mu.Lock()
			outs = append(outs, sent{eu: eu, o: o})
			mu.Unlock()
		}()
	}
	time.Sleep(time.Until(start.Add(c.Duration)))
	close(stopSampling)
	<-sampled
	wg.Wait()
	if busyN > 0 {
		lv.LocalBusy = busySum / float64(busyN)
	}
	var all, local, cloud []float64
	for _, x := range outs {
		lv.Requests++
		if x.eu {
			lv.EURequests++
		}
		if x.o.err != nil {
			lv.Errors++
			if len(lv.ErrorSamples) < 3 {
				lv.ErrorSamples = append(lv.ErrorSamples, x.o.err.Error())
			}
			continue
		}
		ttft := ms(x.o.first.Sub(x.o.sent))
		all = append(all, ttft)
		if x.o.region == "local" {
			local = append(local, ttft)
		} else {
			cloud = append(cloud, ttft)
		}
		if x.o.overflow != "" {
			lv.Overflow++
		}
		if x.eu && x.o.region == "eu" {
			lv.EUCloud++
		}
		if x.eu && x.o.region != "local" && x.o.region != "eu" {
			lv.Violations++
		}
	}
	lv.Violations += countEU(s.us) - usEU0
	lv.CloudEU, lv.CloudUS = s.eu.Count()-eu0, s.us.Count()-us0
	lv.SkippedBusy = int(s.counter("sluice_overflow_provider_skipped_total", "reason", "provider_busy") - busy0)
	lv.SkippedBreaker = int(s.counter("sluice_overflow_provider_skipped_total", "reason", "breaker_open") - brk0)
	lv.MaxWait = int(s.counter("sluice_overflow_attempt_errors_total", "reason", "max_wait") - wait0)
	if lv.Requests > 0 {
		lv.Share = float64(lv.Overflow) / float64(lv.Requests)
	}
	lv.P50TTFTms, lv.P99TTFTms = quantile(all, 0.5), quantile(all, 0.99)
	lv.P99LocalTTFTms, lv.P99CloudTTFTms = quantile(local, 0.99), quantile(cloud, 0.99)
	return lv, nil
}

// countEU counts the requests of the EU key a cloud received (marked in the user field
// the backends forward).
func countEU(s *fakecloud.Server) int {
	n := 0
	for _, r := range s.Requests() {
		if strings.HasPrefix(r.User, "eu-") || strings.HasPrefix(r.User, "cal-") {
			n++
		}
	}
	return n
}

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// client sends streamed chat requests to the gateway.
type client struct {
	hc     *http.Client
	base   string
	tokens int
}

func newClient(base string, tokens int) *client {
	tr := &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute, DisableCompression: true}
	return &client{hc: &http.Client{Transport: tr}, base: base, tokens: tokens}
}

// outcome is one request as the client saw it.
type outcome struct {
	sent, first, end time.Time
	region, overflow string
	err              error
}

func (c *client) chat(ctx context.Context, key, user string) outcome {
	var o outcome
	body := fmt.Sprintf(`{"model":%q,"user":%q,"stream":true,"max_tokens":%d,"messages":[{"role":"user","content":"Question %s: what is a sluice gate for?"}]}`,
		localModel, user, c.tokens, user)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		o.err = err
		return o
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	o.sent = time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		o.err, o.end = err, time.Now()
		return o
	}
	defer resp.Body.Close()
	o.region, o.overflow = resp.Header.Get("X-Sluice-Region"), resp.Header.Get("X-Sluice-Overflow")
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		o.err, o.end = fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b)), time.Now()
		return o
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	done := false
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: "))
		if !ok {
			continue
		}
		switch {
		case bytes.Equal(data, []byte("[DONE]")):
			done = true
		case bytes.HasPrefix(data, []byte(`{"error"`)):
			o.err = fmt.Errorf("stream error: %.200s", data)
		case o.first.IsZero() && bytes.Contains(data, []byte(`"content":"`)) && !bytes.Contains(data, []byte(`"content":""`)):
			o.first = time.Now()
		}
	}
	o.end = time.Now()
	if err := sc.Err(); err != nil && o.err == nil {
		o.err = err
	}
	if o.err == nil && (!done || o.first.IsZero()) {
		o.err = errors.New("stream ended without content or [DONE]")
	}
	return o
}
