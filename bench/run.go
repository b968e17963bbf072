package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/pprof"
	"time"
)

// Config sets up a gateway benchmark. Zero values pick the defaults.
type Config struct {
	Rates    []int         // request rates, per second (default 500, 2000, 5000)
	Modes    []Mode        // default NonStream, Stream
	Duration time.Duration // measured time per target, rate and mode (default 6s), split over Rounds
	Rounds   int           // rounds per rate and mode; targets rotate between rounds (default 6)
	Warmup   time.Duration // unmeasured load per target before each rate and mode (default Duration/10, 200ms to 1s)
	Workers  int           // concurrent requests at most, per target (default 128)
	// TargetRatio is the goal for sluice's added p50 over the null proxy's (default 1.5).
	TargetRatio float64
	// Progress receives a line per rate and mode as the run goes; nil: silent.
	Progress io.Writer
	// Exec, when set, runs each hop (the fake engine, each null proxy, sluice) in a process
	// of its own, as deployed: the command and its first arguments, to which the hop's
	// name and the engine's address are appended; that process must call ServeHop
	// (`sluice bench gateway-hop` does). Empty: every hop runs in this process.
	Exec []string
	// Traffic is what is sent and answered (nil: LoadTraffic with Data, Chunks).
	Traffic *Traffic
	// Data is the shared data directory the default traffic's prompts come from
	// ("": the small synthetic request); Chunks the streamed answer's content chunks.
	Data   string
	Chunks int
	// NoAuth turns API keys off; by default sluice requires one (a key without limits,
	// or with limits high enough never to throttle under KeyLimits) and every request
	// carries it.
	NoAuth bool
	// NoCache leaves the answer cache out of sluice's pipeline (on by default, as in serve).
	NoCache bool
	// SluiceProfile writes a CPU profile of sluice's hop (its own process) to this file.
	SluiceProfile string
	// KeyLimits gives that key rate limits, too high ever to refuse, so the budget stage
	// checks them for every request (by default it has none and passes it through).
	KeyLimits bool
	// EngineAddr is the fake engine's listen address (default: a free loopback port);
	// fixed, so that gateways started beforehand (Peers) can be pointed at it.
	EngineAddr string
	// Peers are other gateways, already running in front of the fake engine at
	// EngineAddr, measured as more targets.
	Peers []Peer
	// PeerWait bounds how long Run waits for each peer to answer its first request
	// (default 30s).
	PeerWait time.Duration
}

// Peer is another gateway measured beside sluice.
type Peer struct {
	Name string
	// URL is its OpenAI base: URL + "/v1/chat/completions" is the endpoint.
	URL string
	// Headers go with every request to it, besides the API key's Authorization (e.g.
	// Portkey's x-portkey-provider and x-portkey-custom-host, which name the upstream).
	Headers []Header
}

// Header is one HTTP request header.
type Header struct{ Name, Value string }

// DefaultRates are the request rates a default run uses.
func DefaultRates() []int { return []int{500, 2000, 5000} }

// RefRate is the rate whose figures head the report (the 2,000 RPS).
const RefRate = 2000

func (c *Config) fill() error {
	if len(c.Rates) == 0 {
		c.Rates = DefaultRates()
	}
	if len(c.Modes) == 0 {
		c.Modes = []Mode{NonStream, Stream}
	}
	if c.Duration <= 0 {
		c.Duration = 6 * time.Second
	}
	if c.Rounds <= 0 {
		c.Rounds = 6
	}
	if c.Warmup <= 0 {
		c.Warmup = min(max(c.Duration/10, 200*time.Millisecond), time.Second)
	}
	if c.Workers <= 0 {
		c.Workers = 128
	}
	if c.TargetRatio <= 0 {
		c.TargetRatio = 1.5
	}
	if c.PeerWait <= 0 {
		c.PeerWait = 30 * time.Second
	}
	if c.Traffic == nil {
		t, err := LoadTraffic(TrafficOptions{Data: c.Data, Chunks: c.Chunks})
		if err != nil {
			return err
		}
		c.Traffic = t
	}
	seen := map[string]bool{TargetDirect: true, TargetNull: true, TargetControl: true, TargetSluice: true}
	for _, p := range c.Peers {
		if err := checkPeer(p); err != nil {
			return err
		}
		if seen[p.Name] {
			return fmt.Errorf("bench: peer name %q is taken", p.Name)
		}
		seen[p.Name] = true
	}
	if len(c.Peers) > 0 && c.EngineAddr == "" {
		return errors.New("bench: peers need the fake engine at a fixed address (EngineAddr, --engine-addr) to be pointed at")
	}
	for _, r := range c.Rates {
		if r <= 0 || r > 1_000_000 {
			return fmt.Errorf("bench: rate %d out of range (1 to 1000000)", r)
		}
	}
	for _, m := range c.Modes {
		if m != NonStream && m != Stream {
			return fmt.Errorf("bench: unknown mode %q (want %q or %q)", m, NonStream, Stream)
		}
	}
	return nil
}

// Estimate is roughly how long Run takes with c (warm-ups included).
func (c Config) Estimate() time.Duration {
	if c.fill() != nil {
		return 0
	}
	return time.Duration(len(c.Rates)*len(c.Modes)*(4+len(c.Peers))) * (c.Duration + c.Warmup)
}

// The targets, in their first round's order.
const (
	TargetDirect  = "direct"  // the fake engine itself
	TargetNull    = "null"    // a do-nothing fasthttp reverse proxy
	TargetControl = "control" // a second, identical do-nothing proxy: the noise control
	TargetSluice  = "sluice"  // sluice's full pipeline
)

// Run starts the fake engine, the two null proxies and sluice's pipeline (each in a
// process of its own when cfg.Exec is set, else in this one), adds cfg.Peers, and
// measures them all at every rate and mode of cfg.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	var (
		targets []*loadTarget
		read    []func() (resources, error) // per target: its counters
		settle  func(context.Context) error // waits until the hops are quiet (nil: in-process)
		rss     func() (int64, error)
		scope   = rssScopeInProcess
		apiKey  string
	)
	if !cfg.NoAuth {
		k, err := newAPIKey()
		if err != nil {
			return nil, err
		}
		apiKey = k
	}
	hopOpts := HopOptions{Engine: EngineOptions{Answer: cfg.Traffic.Answer}, APIKey: apiKey, Listen: cfg.EngineAddr,
		KeyLimits: cfg.KeyLimits, NoCache: cfg.NoCache}
	sluiceOpts := hopOpts
	sluiceOpts.CPUProfile = cfg.SluiceProfile
	defer func() {
		for _, t := range targets {
			t.close()
		}
	}()
	if len(cfg.Exec) > 0 {
		var hops []*hopProc
		defer func() {
			for i := len(hops) - 1; i >= 0; i-- {
				hops[i].close()
			}
		}()
		start := func(name, hop, upstream string, o HopOptions) (*hopProc, error) {
			h, err := startHop(cfg.Exec, name, hop, upstream, o)
			if err != nil {
				return nil, err
			}
			hops = append(hops, h)
			return h, nil
		}
		engine, err := start(TargetDirect, HopEngine, "", hopOpts)
		if err != nil {
			return nil, err
		}
		hopOpts.Listen = ""
		for _, tg := range []struct{ name, hop string }{{TargetDirect, ""}, {TargetNull, HopNull}, {TargetControl, HopNull},
			{TargetSluice, HopSluice}} {
			h := engine
			if tg.hop != "" {
				o := hopOpts
				if tg.hop == HopSluice {
					o = sluiceOpts
				}
				if h, err = start(tg.name, tg.hop, engine.addr, o); err != nil {
					return nil, err
				}
			}
			targets = append(targets, newLoadTarget(tg.name, "http://"+h.addr, cfg.Workers))
			read = append(read, func() (resources, error) { return hopResources(h, engine) })
			if tg.name == TargetSluice {
				rss = func() (int64, error) {
					st, err := h.stats()
					return st.RSSBytes, err
				}
			}
		}
		for _, p := range cfg.Peers {
			pid, err := pidListening(p.URL)
			if err != nil && cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "bench: peer %s: %v: its CPU and RSS are not reported\n", p.Name, err)
			}
			targets = append(targets, newPeerTarget(p, cfg.Workers))
			read = append(read, func() (resources, error) { return peerResources(pid, engine) })
		}
		scope = rssScopeSluice
		settle = func(ctx context.Context) error { return settleHops(ctx, hops) }
	} else {
		up, err := startUpstream(hopOpts.Engine, cfg.EngineAddr)
		if err != nil {
			return nil, fmt.Errorf("bench: fake engine: %w", err)
		}
		defer up.close()
		targets = append(targets, newLoadTarget(TargetDirect, "http://"+up.addr(), cfg.Workers))
		for _, name := range []string{TargetNull, TargetControl} {
			p, err := startNullProxy(name, up.addr())
			if err != nil {
				return nil, fmt.Errorf("bench: null proxy: %w", err)
			}
			defer p.close()
			targets = append(targets, newLoadTarget(name, "http://"+p.addr(), cfg.Workers))
		}
		pl, err := newPipeline(ctx, up.addr(), hopOpts)
		if err != nil {
			return nil, err
		}
		defer pl.close()
		if err := pl.serve(); err != nil {
			return nil, fmt.Errorf("bench: sluice listener: %w", err)
		}
		targets = append(targets, newLoadTarget(TargetSluice, "http://"+pl.addr(), cfg.Workers))
		for _, p := range cfg.Peers {
			targets = append(targets, newPeerTarget(p, cfg.Workers))
		}
		for range targets {
			read = append(read, func() (resources, error) {
				runtime.GC() // one heap for all: start each segment clean, nobody pays for another's garbage
				return selfResources(up), nil
			})
		}
		rss = peakRSS
	}

	gen, err := newGenerator(cfg.Workers, cfg.Traffic, apiKey)
	if err != nil {
		return nil, err
	}
	defer gen.close()
	for _, t := range targets[4:] {
		if err := gen.ready(ctx, t, cfg.PeerWait); err != nil {
			return nil, err
		}
	}

	rep := &Report{Config: reportConfig(&cfg)}
	for _, rate := range cfg.Rates {
		for _, mode := range cfg.Modes {
			rows, err := measure(ctx, gen, targets, read, settle, &cfg, rate, mode)
			if err != nil {
				return nil, err
			}
			rep.Runs = append(rep.Runs, rows...)
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "bench: %5d RPS %-9s %s\n", rate, mode, progressLine(rows))
			}
		}
	}
	if b, err := rss(); err == nil {
		rep.RSSMB = round(float64(b)/(1<<20), 1)
	}
	if len(cfg.Exec) > 0 {
		for i, p := range cfg.Peers {
			if r, err := read[4+i](); err == nil && r.rss > 0 {
				rep.PeerRSSMB = append(rep.PeerRSSMB, PeerRSS{Name: p.Name, RSSMB: round(float64(r.rss)/(1<<20), 1)})
			}
		}
	}
	rep.summarize(cfg.TargetRatio, scope)
	return rep, nil
}

// measure runs one rate and mode: a warm-up per target, then Rounds rounds with the
// targets in rotating order, and returns a row per target. With hops in processes of
// their own, every segment starts with the hops quiet and its CPU is read once they are
// quiet again: a hop's work that outlasts its load (sluice's answer-cache writer and
// ledger) is charged to it and does not slow the next target down, nor the next mode
// (which made the streaming ratio depend on what ran before it).
func measure(ctx context.Context, gen *generator, targets []*loadTarget, read []func() (resources, error),
	settle func(context.Context) error, cfg *Config, rate int, mode Mode) ([]Row, error) {
	quiet := func() error {
		if settle == nil {
			return nil
		}
		return settle(ctx)
	}
	acc := make([]accum, len(targets))
	for i, t := range targets {
		seg, err := gen.run(ctx, t, mode, rate, cfg.Warmup)
		if err != nil {
			return nil, err
		}
		acc[i].warmupErrs += seg.errs
		acc[i].noteErr(seg.firstErr)
	}
	per := cfg.Duration / time.Duration(cfg.Rounds)
	for r := range cfg.Rounds {
		for k := range targets {
			i := (k + r) % len(targets)
			if err := quiet(); err != nil {
				return nil, err
			}
			before, err := read[i]()
			if err != nil {
				return nil, err
			}
			seg, err := gen.run(ctx, targets[i], mode, rate, per)
			if err != nil {
				return nil, err
			}
			if err := quiet(); err != nil {
				return nil, err
			}
			after, err := read[i]()
			if err != nil {
				return nil, err
			}
			acc[i].add(seg, after.sub(before))
		}
	}
	rows := make([]Row, len(targets))
	for i, t := range targets {
		rows[i] = acc[i].row(t.name, rate, mode)
	}
	addRatios(rows)
	return rows, nil
}

// Settling: the hops count as quiet when together they use less than settleCPU of a CPU
// over settleWindow; a hop still busy after settleMax (a budgeted background task, another
// session's load) is left as it is.
const (
	settleCPU    = 0.2
	settleWindow = 50 * time.Millisecond
	settleMax    = 3 * time.Second
)

// settleHops waits until the hop processes are quiet (see settleCPU).
func settleHops(ctx context.Context, hops []*hopProc) error {
	cpu := func() (time.Duration, error) {
		var sum time.Duration
		for _, h := range hops {
			st, err := h.stats()
			if err != nil {
				return 0, err
			}
			sum += time.Duration(st.CPUNS)
		}
		return sum, nil
	}
	deadline := time.Now().Add(settleMax)
	prev, err := cpu()
	if err != nil {
		return err
	}
	t := time.NewTimer(settleWindow)
	defer t.Stop()
	for {
		start := time.Now()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		cur, err := cpu()
		if err != nil {
			return err
		}
		if float64(cur-prev) < settleCPU*float64(time.Since(start)) || time.Now().After(deadline) {
			return nil
		}
		prev = cur
		t.Reset(settleWindow)
	}
}

// resources are a process's counters, read around a segment.
type resources struct {
	rss          int64 // peak (peers only)
	cpu          time.Duration
	allocBytes   uint64
	allocObjects uint64
	engineConns  int64 // connections the fake engine accepted
}

// selfResources reads this process's counters (every hop in one process).
func selfResources(up *upstream) resources {
	r := resources{engineConns: up.accepted.Load(), cpu: processCPU()}
	r.allocBytes, r.allocObjects = heapAllocs()
	return r
}

// hopResources reads a hop process's counters, and the engine's connection count.
func hopResources(h, engine *hopProc) (resources, error) {
	st, err := h.stats()
	if err != nil {
		return resources{}, err
	}
	r := resources{cpu: time.Duration(st.CPUNS), allocBytes: st.AllocBytes, allocObjects: st.AllocObjects,
		engineConns: st.EngineConns}
	if h != engine {
		es, err := engine.stats()
		if err != nil {
			return resources{}, err
		}
		r.engineConns = es.EngineConns
	}
	return r, nil
}

func (r resources) sub(o resources) resources {
	return resources{cpu: r.cpu - o.cpu, allocBytes: r.allocBytes - o.allocBytes, allocObjects: r.allocObjects - o.allocObjects,
		engineConns: r.engineConns - o.engineConns}
}

// accum gathers one target's segments at one rate and mode.
type accum struct {
	lat, ttfb  []int64
	sent, errs int
	warmupErrs int
	firstErr   error
	elapsed    time.Duration
	res        resources
}

func (a *accum) noteErr(err error) {
	if a.firstErr == nil && err != nil {
		a.firstErr = err
	}
}

func (a *accum) add(s *segment, res resources) {
	a.sent += len(s.lat)
	a.errs += s.errs
	a.noteErr(s.firstErr)
	a.elapsed += s.elapsed
	a.res.cpu += res.cpu
	a.res.allocBytes += res.allocBytes
	a.res.allocObjects += res.allocObjects
	a.res.engineConns += res.engineConns
	for i, l := range s.lat {
		if l < 0 {
			continue
		}
		a.lat = append(a.lat, l)
		if s.ttfb != nil {
			a.ttfb = append(a.ttfb, s.ttfb[i])
		}
	}
}

func (a *accum) row(target string, rate int, mode Mode) Row {
	r := Row{Rate: rate, Mode: mode, Target: target, Requests: a.sent, Errors: a.errs, WarmupErrors: a.warmupErrs,
		FirstError: errString(a.firstErr)}
	if a.elapsed > 0 {
		r.AchievedRPS = round(float64(a.sent)/a.elapsed.Seconds(), 1)
	}
	if a.sent > 0 {
		n := float64(a.sent)
		r.CPUPerReqUS = round(float64(a.res.cpu.Nanoseconds())/n/1e3, 1)
		r.AllocBytesPerReq = round(float64(a.res.allocBytes)/n, 0)
		r.AllocsPerReq = round(float64(a.res.allocObjects)/n, 1)
		r.EngineConns = a.res.engineConns
	}
	if len(a.lat) > 0 {
		p := percentiles(a.lat, 0.50, 0.90, 0.99)
		r.P50US, r.P90US, r.P99US = us(p[0]), us(p[1]), us(p[2])
	}
	if len(a.ttfb) > 0 {
		r.TTFBP50US = us(percentiles(a.ttfb, 0.50)[0])
	}
	return r
}

// addRatios fills the added latencies (target minus direct) and, for every target but
// direct and null, the ratios of its added latency to the null proxy's.
func addRatios(rows []Row) {
	byName := map[string]*Row{}
	for i := range rows {
		byName[rows[i].Target] = &rows[i]
	}
	direct, null := byName[TargetDirect], byName[TargetNull]
	if direct == nil || direct.P50US == 0 {
		return
	}
	for i := range rows {
		r := &rows[i]
		if r.Target == TargetDirect || r.P50US == 0 {
			continue
		}
		r.AddedP50US = round(r.P50US-direct.P50US, 1)
		r.AddedP99US = round(r.P99US-direct.P99US, 1)
	}
	if null == nil || null.P50US == 0 {
		return
	}
	for i := range rows {
		r := &rows[i]
		if r.Target == TargetDirect || r.Target == TargetNull || r.P50US == 0 {
			continue
		}
		r.RatioP50 = ratio(r.AddedP50US, null.AddedP50US)
		r.RatioP99 = ratio(r.AddedP99US, null.AddedP99US)
	}
}

// ratio is a/b, or nil when b is not positive (the null proxy measured no added latency:
// the ratio means nothing then).
func ratio(a, b float64) *float64 {
	if b <= 0 {
		return nil
	}
	v := round(a/b, 2)
	return &v
}

func findRow(rows []Row, rate int, mode Mode, target string) *Row {
	for i := range rows {
		if rows[i].Rate == rate && rows[i].Mode == mode && rows[i].Target == target {
			return &rows[i]
		}
	}
	return nil
}

func progressLine(rows []Row) string {
	s := ""
	for _, r := range rows {
		s += fmt.Sprintf(" %s p50 %s", r.Target, formatDuration(r.P50US*1e3))
		if r.Errors+r.WarmupErrors > 0 {
			s += fmt.Sprintf(" (%d errors)", r.Errors+r.WarmupErrors)
		}
	}
	return s
}

// goLabeled runs f in a new goroutine labelled hop=name, for CPU profiles of a run; the
// goroutines f starts (a server's connection workers) inherit the label, so
// "go tool pprof -tagfocus hop=sluice" shows the pipeline's own costs.
func goLabeled(name string, f func()) {
	go pprof.Do(context.Background(), pprof.Labels("hop", name), func(context.Context) { f() })
}
