package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/valyala/fasthttp"
)

// SoakConfig sets up a soak: many long streams held at once through sluice to a fake
// engine that streams slowly. Zero values pick the defaults.
type SoakConfig struct {
	Streams    int           // concurrent streams (default 1,000)
	Duration   time.Duration // how long all of them are held, after a ramp of one stream's length (default 60s)
	ChunkDelay time.Duration // the engine's pause between events (default 100ms)
	Chunks     int           // content chunks per answer (default 100: 10 s a stream)
	Data       string        // prompts, as Config.Data ("": the small synthetic request)
	Traffic    *Traffic      // nil: LoadTraffic with Data and Chunks
	NoAuth     bool
	NoCache    bool
	MaxRSSMB   float64 // target for sluice's peak RSS (default 60)
	// Settle is how long to wait for goroutines to return to the baseline (default 30s:
	// fasthttp's server lets an idle worker go 10 to 20 s after its connection closed).
	Settle   time.Duration
	Progress io.Writer
	// HeapProfile: write a heap profile of sluice's process here halfway through.
	HeapProfile string
	// MidGoroutineProfile: write sluice's goroutines (text) here halfway through, with
	// the streams open (where each waits, how deep).
	MidGoroutineProfile string
	// GoroutineProfile: write sluice's goroutines (text) here after the streams ended
	// and the goroutine count settled, for finding a leak.
	GoroutineProfile string
	// Exec runs the engine and sluice in processes of their own (required: the soak
	// measures sluice's process alone), as Config.Exec.
	Exec []string

	// holdAfter (tests): goroutines sluice's process is asked to hold once the streams
	// ended, as a leak would, before they are counted.
	holdAfter int
}

func (c *SoakConfig) fill() error {
	if c.Streams <= 0 {
		c.Streams = 1000
	}
	if c.Duration <= 0 {
		c.Duration = 60 * time.Second
	}
	if c.ChunkDelay <= 0 {
		c.ChunkDelay = 100 * time.Millisecond
	}
	if c.Chunks <= 0 {
		c.Chunks = 100
	}
	if c.MaxRSSMB <= 0 {
		c.MaxRSSMB = 60
	}
	if c.Settle <= 0 {
		c.Settle = 30 * time.Second
	}
	if len(c.Exec) == 0 {
		return errors.New("bench: soak: Exec is required (the engine and sluice run in processes of their own)")
	}
	if c.Traffic == nil {
		t, err := LoadTraffic(TrafficOptions{Data: c.Data, Chunks: c.Chunks})
		if err != nil {
			return err
		}
		c.Traffic = t
	}
	return nil
}

// SoakReport is a soak's outcome.
type SoakReport struct {
	Streams        int     `json:"streams"`
	RampS          float64 `json:"ramp_s"` // the streams open over this long, then all are held for DurationS
	DurationS      float64 `json:"duration_s"`
	ChunkDelayMS   float64 `json:"chunk_delay_ms"`
	Chunks         int     `json:"chunks_per_stream"`
	Completed      int64   `json:"completed"`
	Errors         int64   `json:"errors"`
	FirstError     string  `json:"first_error,omitempty"`
	PeakConcurrent int64   `json:"peak_concurrent"`
	ChunksPerSec   float64 `json:"chunks_per_s"`
	TTFTP50MS      float64 `json:"ttft_p50_ms"`
	TTFTP99MS      float64 `json:"ttft_p99_ms"`
	StreamP50S     float64 `json:"stream_p50_s"`
	StreamP99S     float64 `json:"stream_p99_s"`
	// Goroutines before the load and after it (once back to the baseline, or Settle
	// passed), fasthttp's idle workers counted apart (IdleWorkersAfter, and the baseline's
	// in the leak); the peak is every goroutine. Leaked: the goroutines above the
	// baseline, plus the idle workers above the baseline's that the server kept.
	GoroutinesBase   int `json:"goroutines_baseline"`
	GoroutinesPeak   int `json:"goroutines_peak"`
	GoroutinesAfter  int `json:"goroutines_after"`
	GoroutinesLeaked int `json:"goroutines_leaked"`
	// IdleWorkersAfter: fasthttp's idle workers when the goroutines were counted after the
	// load (not in GoroutinesAfter).
	IdleWorkersAfter int     `json:"idle_workers_after"`
	RSSBaseMB        float64 `json:"rss_baseline_mb"` // sluice's RSS before the load
	RSSFileBaseMB    float64 `json:"rss_file_baseline_mb"`
	RSSMB            float64 `json:"rss_mb"`       // sluice's peak (VmHWM) when the last stream ended
	RSSAfterMB       float64 `json:"rss_after_mb"` // sluice's RSS once its goroutines were counted after the load
	HeapPeakMB       float64 `json:"heap_peak_mb"` // Go heap in use, highest sample
	StackPeakMB      float64 `json:"stack_peak_mb"`
	RSSFilePeakMB    float64 `json:"rss_file_peak_mb"` // of it, mmapped files (the cache's bbolt file)
	CPUS             float64 `json:"sluice_cpu_s"`     // sluice's CPU time over the soak
	MaxRSSMB         float64 `json:"target_rss_mb"`
	Pass             bool    `json:"pass"`
	Traffic          string  `json:"traffic"`
}

// Soak starts the fake engine (streaming slowly) and sluice in processes of their own,
// holds cfg.Streams streams through sluice for cfg.Duration, lets them finish, and
// reports errors, sluice's peak RSS and whether its goroutines came back to the count
// they had before the load.
func Soak(ctx context.Context, cfg SoakConfig) (*SoakReport, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	apiKey := ""
	if !cfg.NoAuth {
		k, err := newAPIKey()
		if err != nil {
			return nil, err
		}
		apiKey = k
	}
	o := HopOptions{Engine: EngineOptions{Answer: cfg.Traffic.Answer, ChunkDelay: cfg.ChunkDelay}, APIKey: apiKey,
		NoCache: cfg.NoCache, Slots: cfg.Streams + cfg.Streams/4}
	engine, err := startHop(cfg.Exec, TargetDirect, HopEngine, "", o)
	if err != nil {
		return nil, err
	}
	defer engine.close()
	sl, err := startHop(cfg.Exec, TargetSluice, HopSluice, engine.addr, o)
	if err != nil {
		return nil, err
	}
	defer sl.close()

	gen, err := newGenerator(1, cfg.Traffic, apiKey)
	if err != nil {
		return nil, err
	}
	defer gen.close()
	lt := newLoadTarget(TargetSluice, "http://"+sl.addr, cfg.Streams+16)
	defer lt.close()
	for _, c := range lt.clients {
		c.ReadTimeout = time.Minute // an event every ChunkDelay; the whole answer takes longer
	}
	// One request first (the pipeline's lazy state: pools, the first connection), then
	// the baseline with every connection closed again.
	if err := gen.ready(ctx, lt, 10*time.Second); err != nil {
		return nil, err
	}
	lt.close()
	base, err := settle(ctx, sl, -1, -1, cfg.Settle)
	if err != nil {
		return nil, err
	}
	before := base

	rep := &SoakReport{Streams: cfg.Streams, DurationS: cfg.Duration.Seconds(), ChunkDelayMS: float64(cfg.ChunkDelay.Milliseconds()),
		Chunks: len(cfg.Traffic.Answer.Pieces), MaxRSSMB: cfg.MaxRSSMB, GoroutinesBase: base.Goroutines, Traffic: cfg.Traffic.String(),
		RSSBaseMB: round(float64(base.RSSNowBytes)/(1<<20), 1), RSSFileBaseMB: round(float64(base.RSSFileBytes)/(1<<20), 1)}
	var (
		inflight, peakIn atomic.Int64
		completed, errs  atomic.Int64
		chunks           atomic.Int64
		mu               sync.Mutex
		firstErr         error
		ttft, whole      []int64
	)
	// Clients arrive spread over one stream's length (the ramp); all of them then hold
	// their streams for cfg.Duration.
	streamLen := time.Duration(len(cfg.Traffic.Answer.Pieces)+3) * cfg.ChunkDelay
	start := time.Now()
	rampEnd := start.Add(streamLen)
	stopAt := rampEnd.Add(cfg.Duration)
	rep.RampS = round(streamLen.Seconds(), 1)
	// The chunk rate is counted over the hold (from the first sample after the ramp to
	// the first after it), by streams completed; the whole run's when a sample missed it.
	var (
		holdStart, holdEnd       time.Time
		holdChunks0, holdChunks1 int64
	)
	var wg sync.WaitGroup
	hc := lt.clients[Stream]
	for w := range cfg.Streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var req fasthttp.Request
			var resp fasthttp.Response
			buf := make([]byte, 0, 4096)
			// Clients arrive spread over one stream's length, so streams start and end
			// at a steady rate (all at once, they would start and end in waves).
			select {
			case <-time.After(time.Duration(w) * streamLen / time.Duration(cfg.Streams)):
			case <-ctx.Done():
				return
			}
			for time.Now().Before(stopAt) && ctx.Err() == nil {
				req.Reset()
				req.SetRequestURI(lt.url)
				req.Header.SetMethod(fasthttp.MethodPost)
				req.Header.SetContentType("application/json")
				if gen.auth != "" {
					req.Header.Set("Authorization", gen.auth)
				}
				n := gen.seq.Add(1)
				body, mark := gen.traffic.body(Stream, n)
				req.SetBody(body)
				stamp(req.Body(), mark, n)
				if c := inflight.Add(1); c > peakIn.Load() {
					peakIn.Store(c) // racy max, close enough for a report
				}
				start := time.Now()
				first, nch, err := soakOne(hc, &req, &resp, &buf, gen.check)
				inflight.Add(-1)
				chunks.Add(int64(nch))
				if err != nil {
					errs.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				completed.Add(1)
				mu.Lock()
				ttft = append(ttft, int64(first))
				whole = append(whole, int64(time.Since(start)))
				mu.Unlock()
			}
		}()
	}
	// Sample sluice while the streams run: its goroutines and heap.
	sampleDone := make(chan struct{})
	go func() {
		defer close(sampleDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		profiled := cfg.HeapProfile == "" && cfg.MidGoroutineProfile == ""
		for {
			if !profiled && time.Until(stopAt) < cfg.Duration/2 {
				profiled = true
				for _, p := range [][2]string{{"heap", cfg.HeapProfile}, {"goroutine", cfg.MidGoroutineProfile}} {
					if p[1] == "" {
						continue
					}
					if err := sl.profile(p[0], p[1]); err != nil && cfg.Progress != nil {
						fmt.Fprintf(cfg.Progress, "soak: %s profile: %v\n", p[0], err)
					}
				}
			}
			select {
			case <-t.C:
				st, err := sl.stats()
				if err != nil {
					return
				}
				now := time.Now()
				mu.Lock()
				if holdStart.IsZero() && now.After(rampEnd) {
					holdStart, holdChunks0 = now, chunks.Load()
				}
				if holdEnd.IsZero() && now.After(stopAt) {
					holdEnd, holdChunks1 = now, chunks.Load()
				}
				rep.GoroutinesPeak = max(rep.GoroutinesPeak, st.Goroutines)
				rep.HeapPeakMB = max(rep.HeapPeakMB, round(float64(st.HeapBytes)/(1<<20), 1))
				rep.StackPeakMB = max(rep.StackPeakMB, round(float64(st.StackBytes)/(1<<20), 1))
				rep.RSSFilePeakMB = max(rep.RSSFilePeakMB, round(float64(st.RSSFileBytes)/(1<<20), 1))
				mu.Unlock()
				if cfg.Progress != nil {
					fmt.Fprintf(cfg.Progress, "soak: %3.0fs  streams %4d  completed %6d  errors %d  goroutines %5d  RSS %.1f MiB\n",
						now.Sub(start).Seconds(), inflight.Load(), completed.Load(), errs.Load(),
						st.Goroutines, float64(st.RSSNowBytes)/(1<<20))
				}
			case <-ctx.Done():
				return
			}
			if time.Now().After(stopAt) && inflight.Load() == 0 {
				return
			}
		}
	}()
	wg.Wait()
	<-sampleDone
	// sluice's peak RSS and CPU over the soak, read before the wait for its goroutines
	// below (whose goroutine profiles of ~1,000 goroutines are the benchmark's own work).
	end, err := sl.stats()
	if err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	lt.close() // the client's connections go: what sluice holds for them must go too
	if cfg.holdAfter > 0 {
		if err := sl.hold(cfg.holdAfter); err != nil {
			return nil, err
		}
	}
	after, err := settle(ctx, sl, base.Goroutines, base.IdleWorkers, cfg.Settle)
	if err != nil {
		return nil, err
	}
	if cfg.GoroutineProfile != "" {
		if err := sl.profile("goroutine", cfg.GoroutineProfile); err != nil {
			return nil, err
		}
	}
	rep.Completed, rep.Errors, rep.PeakConcurrent = completed.Load(), errs.Load(), peakIn.Load()
	rep.FirstError = errString(firstErr)
	rep.ChunksPerSec = round(float64(chunks.Load())/elapsed.Seconds(), 0)
	if d := holdEnd.Sub(holdStart); !holdStart.IsZero() && !holdEnd.IsZero() && d > 0 {
		rep.ChunksPerSec = round(float64(holdChunks1-holdChunks0)/d.Seconds(), 0)
	}
	if len(ttft) > 0 {
		p := percentiles(ttft, 0.5, 0.99)
		rep.TTFTP50MS, rep.TTFTP99MS = round(float64(p[0])/1e6, 1), round(float64(p[1])/1e6, 1)
		p = percentiles(whole, 0.5, 0.99)
		rep.StreamP50S, rep.StreamP99S = round(float64(p[0])/1e9, 2), round(float64(p[1])/1e9, 2)
	}
	rep.GoroutinesAfter, rep.IdleWorkersAfter = after.Goroutines, after.IdleWorkers
	// Leaked: goroutines above the baseline, and idle workers the server did not let go.
	rep.GoroutinesLeaked = max(0, after.Goroutines-base.Goroutines) + max(0, after.IdleWorkers-base.IdleWorkers)
	rep.RSSMB = round(float64(end.RSSBytes)/(1<<20), 1)
	rep.RSSAfterMB = round(float64(after.RSSNowBytes)/(1<<20), 1)
	rep.CPUS = round(float64(end.CPUNS-before.CPUNS)/1e9, 1)
	rep.Pass = rep.Errors == 0 && rep.GoroutinesLeaked == 0 && rep.RSSMB <= cfg.MaxRSSMB && rep.Completed > 0
	return rep, nil
}

// soakOne sends one streamed request and reads it to the end: the time to the first
// body bytes and the number of reads that brought data.
func soakOne(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response, buf *[]byte, c checker) (time.Duration, int, error) {
	start := time.Now()
	if err := hc.Do(req, resp); err != nil {
		return 0, 0, err
	}
	var first time.Duration
	reads := 0
	b := (*buf)[:0]
	bs := resp.BodyStream()
	if bs == nil {
		b = append(b, resp.Body()...)
	} else {
		for {
			if len(b) == cap(b) {
				b = append(b, 0)[:len(b)]
			}
			n, err := bs.Read(b[len(b):cap(b)])
			if n > 0 {
				if reads == 0 {
					first = time.Since(start)
				}
				reads++
				b = b[:len(b)+n]
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				_ = resp.CloseBodyStream()
				return first, reads, err
			}
		}
		if err := resp.CloseBodyStream(); err != nil {
			return first, reads, err
		}
	}
	*buf = b
	return first, reads, c.validate(Stream, resp.StatusCode(), b)
}

// settle waits until sluice's goroutines other than fasthttp's idle workers are down to
// want (-1: until that count stops changing) and, when wantIdle >= 0, its idle workers
// down to wantIdle (a server lets each go 10 to 20 s after its connection closed), for
// up to d, and returns its stats then, Goroutines not counting the idle workers.
func settle(ctx context.Context, h *hopProc, want, wantIdle int, d time.Duration) (hopStats, error) {
	deadline := time.Now().Add(d)
	prev := -1
	var profiled time.Time
	for {
		// The idle workers are counted from a goroutine profile, which costs the hop work
		// (and garbage) with ~1,000 goroutines: while the plain count shows that the
		// target is not reached, it is taken at most every 5 s.
		st, err := h.stats()
		if err != nil {
			return st, err
		}
		late := time.Now().After(deadline)
		if want < 0 || late || st.Goroutines <= want+max(wantIdle, 0) || time.Since(profiled) >= 5*time.Second {
			if st, err = h.statsIdle(); err != nil {
				return st, err
			}
			profiled = time.Now()
			st.Goroutines -= st.IdleWorkers
			busyDone := (want >= 0 && st.Goroutines <= want) || (want < 0 && st.Goroutines == prev)
			if (busyDone && (wantIdle < 0 || st.IdleWorkers <= wantIdle)) || late {
				return st, nil
			}
			prev = st.Goroutines
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// WriteTable prints the soak's figures.
func (r *SoakReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("traffic", r.Traffic)
	row("streams held", fmt.Sprintf("%d for %.0f s after a %.1f s ramp (engine: an event every %.0f ms, %d content chunks a stream)", r.Streams, r.DurationS, r.RampS, r.ChunkDelayMS, r.Chunks))
	row("streams completed", strconv.FormatInt(r.Completed, 10))
	row("peak concurrent", strconv.FormatInt(r.PeakConcurrent, 10))
	row("errors", fmt.Sprintf("%d %s", r.Errors, r.FirstError))
	row("chunk reads/s (client)", strconv.FormatFloat(r.ChunksPerSec, 'f', 0, 64))
	row("TTFB p50 / p99", fmt.Sprintf("%.1f / %.1f ms", r.TTFTP50MS, r.TTFTP99MS))
	row("stream p50 / p99", fmt.Sprintf("%.2f / %.2f s", r.StreamP50S, r.StreamP99S))
	row("sluice goroutines", fmt.Sprintf("baseline %d, peak %d, after %d and %d idle fasthttp workers: leaked %d",
		r.GoroutinesBase, r.GoroutinesPeak, r.GoroutinesAfter, r.IdleWorkersAfter, r.GoroutinesLeaked))
	row("sluice RSS", fmt.Sprintf("peak %.1f MiB (target <= %.0f); before the load %.1f MiB (of it mapped files %.1f), after %.1f MiB",
		r.RSSMB, r.MaxRSSMB, r.RSSBaseMB, r.RSSFileBaseMB, r.RSSAfterMB))
	row("sluice memory peaks", fmt.Sprintf("Go heap %.1f MiB, goroutine stacks %.1f MiB, mapped files (binary, cache file) %.1f MiB",
		r.HeapPeakMB, r.StackPeakMB, r.RSSFilePeakMB))
	row("sluice CPU", fmt.Sprintf("%.1f s", r.CPUS))
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	row("verdict", verdict)
	return tw.Flush()
}
