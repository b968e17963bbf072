package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sluice-llm/sluice/compress"
	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/cost"
	"github.com/sluice-llm/sluice/dashboard"
	"github.com/sluice-llm/sluice/gateway"
	"github.com/sluice-llm/sluice/gpu"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/router"
	"github.com/sluice-llm/sluice/scheduler"
)

type serveFlags struct {
	config, listen, model, ollama, upstream, upstreamRegion, llamaServer, logLevel string
	upstreamKeyEnv, upstreamKeyFile                                                string
	slots                                                                          int
	readyTimeout                                                                   time.Duration
	insecurePublic                                                                 bool
}

// upstreamKey reads the key for --upstream from the environment variable or the file
// the flags name: never from the command line, where ps and shell history show it.
func (f serveFlags) upstreamKey(env config.Env) (string, error) {
	switch {
	case f.upstreamKeyEnv != "" && f.upstreamKeyFile != "":
		return "", errors.New("flags: give --upstream-key-env or --upstream-key-file, not both")
	case f.upstreamKeyEnv != "":
		k, ok := env(f.upstreamKeyEnv)
		if !ok || k == "" {
			return "", fmt.Errorf("flags: --upstream-key-env: environment variable %s is not set", f.upstreamKeyEnv)
		}
		return k, nil
	case f.upstreamKeyFile != "":
		b, err := os.ReadFile(f.upstreamKeyFile)
		if err != nil {
			return "", fmt.Errorf("flags: --upstream-key-file: %w", err)
		}
		k := strings.TrimSpace(string(b))
		if k == "" {
			return "", fmt.Errorf("flags: --upstream-key-file: %s is empty", f.upstreamKeyFile)
		}
		return k, nil
	}
	return "", nil
}

func loadServeConfig(f serveFlags, env config.Env) (*config.Config, error) {
	var cfg *config.Config
	var err error
	switch {
	case f.config != "":
		cfg, err = config.Load(f.config, env)
	case f.model != "" || f.ollama != "" || f.upstream != "":
		cfg = &config.Config{}
		if f.model != "" {
			abs, _ := filepath.Abs(f.model)
			cfg.Engines = append(cfg.Engines, config.Engine{Name: "local", Kind: "llamacpp", ModelPath: abs,
				Binary: f.llamaServer, Slots: f.slots})
		}
		if f.ollama != "" {
			cfg.Engines = append(cfg.Engines, config.Engine{Name: "ollama", Kind: "ollama", URL: f.ollama, Slots: f.slots})
		}
		if f.upstream != "" {
			key, err := f.upstreamKey(env)
			if err != nil {
				return nil, err
			}
			up := config.Engine{Name: "upstream", Kind: "openai", URL: f.upstream, APIKey: key, Slots: f.slots}
			up.Region = f.upstreamRegion
			cfg.Engines = append(cfg.Engines, up)
		}
		err = cfg.Finish(env)
		if err != nil {
			err = fmt.Errorf("flags: %w", err)
		}
	default:
		cfg, err = config.Default(env)
	}
	if err != nil {
		return nil, err
	}
	if f.listen != "" {
		cfg.Server.Listen = f.listen
	}
	if f.logLevel != "" {
		cfg.Log.Level = f.logLevel
	}
	if f.insecurePublic {
		cfg.Server.AllowPublicWithoutKeys = true
	}
	if f.llamaServer != "" {
		for i := range cfg.Engines {
			if cfg.Engines[i].Kind == "llamacpp" {
				cfg.Engines[i].Binary = f.llamaServer
			}
		}
	}
	return cfg, cfg.Validate()
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	o := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "", "YAML config file (default: the embedded demo config)")
	fs.StringVar(&f.listen, "listen", "", "address to listen on (overrides server.listen)")
	fs.StringVar(&f.model, "model", "", "serve this GGUF file with a llama-server sluice runs")
	fs.StringVar(&f.ollama, "ollama", "", "serve the models of the Ollama server at this URL")
	fs.StringVar(&f.upstream, "upstream", "", "serve the models of this OpenAI-compatible base URL (e.g. http://vllm:8000/v1)")
	fs.StringVar(&f.upstreamKeyEnv, "upstream-key-env", "", "name of the environment variable holding the API key for --upstream")
	fs.StringVar(&f.upstreamKeyFile, "upstream-key-file", "", "file holding the API key for --upstream")
	var keyOnCmdline string
	fs.StringVar(&keyOnCmdline, "upstream-key", "", "refused: a key on the command line is visible to every user of the machine (ps); use --upstream-key-env or --upstream-key-file")
	fs.StringVar(&f.upstreamRegion, "upstream-region", "", "region of --upstream: local (default for loopback and private addresses), eu, us, ...")
	fs.BoolVar(&f.insecurePublic, "insecure-public", false, "serve a non-loopback --listen address without API keys (anyone who reaches it may use the engines)")
	fs.StringVar(&f.llamaServer, "llama-server", "", "llama-server binary (default: $SLUICE_LLAMA_SERVER, the build cache, $PATH)")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error")
	fs.IntVar(&f.slots, "slots", 0, "slots (parallel sequences) for engines given by flags (default 4)")
	fs.DurationVar(&f.readyTimeout, "ready-timeout", 3*time.Minute, "how long to wait for engines at start")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if keyOnCmdline != "" {
		return errors.New("--upstream-key puts the key on the command line, where ps and shell history show it: " +
			"use --upstream-key-env NAME (an environment variable) or --upstream-key-file PATH")
	}
	cfg, err := loadServeConfig(f, config.OSEnv)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)

	var counter models.TokenCounter
	if cfg.Tokenizer != "" {
		tk, err := compress.LoadTokenizer(cfg.Tokenizer)
		if err != nil {
			log.Warn("token counting falls back to ~4 bytes a token", "err", err)
		} else {
			counter = tk
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	engCtx, stopEngines := context.WithCancel(context.Background())
	defer stopEngines()

	// GPUs: telemetry, placement of managed engines, and what each engine costs.
	src := gpu.NewSource()
	defer src.Close()
	mon := gpu.NewMonitor(src, gpu.MonitorOptions{Interval: cfg.GPU.RefreshEvery})
	snap := mon.Refresh(ctx)
	if len(snap.Devices) == 0 {
		log.Info("no GPUs: engines run on the CPU", "reason", snap.Err)
	}
	for _, d := range snap.Devices {
		log.Info("gpu", "index", d.Index, "name", d.Name, "memory_gib", float64(d.MemoryTotal)/(1<<30))
	}
	reg.MustRegister(gpu.NewCollector(mon))
	go func() { _ = mon.Run(engCtx) }()
	placed, err := placeEngines(cfg, snap)
	if err != nil {
		return err
	}
	pool := boxPool()
	costs, err := engineCosts(cfg, snap, placed, pool)
	if err != nil {
		return err
	}
	acct := cost.NewAccountant(cloudPrices(cfg), cfg.Pricing.Reference, modelReferences(cfg))
	acct.SetClasses(modelClasses(cfg), cfg.Ledger.References, cost.ClassSmall)
	for _, c := range costs {
		acct.AddEngine(c)
		if c.Meter != nil {
			log.Info("engine price", "engine", c.Name, "hardware", c.GPU, "usd_per_hour", c.Meter.PerHour())
		} else {
			log.Info("engine price", "engine", c.Name, "hardware", c.GPU, "per_token", "pricing.cloud list prices; models without one are unpriced")
		}
	}
	boxPerHour, err := boxPrice(cfg, snap)
	if err != nil {
		return err
	}
	acct.SetBox(pool, boxPerHour, time.Now())
	log.Info("box price", "pool", pool, "usd_per_hour", boxPerHour)
	reg.MustRegister(acct)
	bk, err := openBooks(ctx, cfg, acct, reg, log)
	if err != nil {
		return err
	}
	defer bk.close()
	log.Info(bk.describeAuth())
	// Without API keys (in the config or the key store) sluice serves loopback only,
	// unless told otherwise; checked before any engine starts.
	exposure, err := cfg.Server.CheckExposure(bk.keys.Required())
	if err != nil {
		return err
	}
	if exposure != "" {
		fmt.Fprintln(stdout, "sluice: "+exposure)
		if cfg.Server.AllowPublicWithoutKeys {
			log.Warn(exposure)
		}
	}
	adminKeys, note, err := adminKey(cfg)
	if err != nil {
		return fmt.Errorf("admin key: %w", err)
	}
	if note != "" {
		log.Info(note)
	}
	cfg.Server.AdminKeys = adminKeys

	engines, err := buildEngines(cfg, counter, log)
	if err != nil {
		return err
	}
	defer engines.close()
	var engWG sync.WaitGroup
	for _, e := range engines.list {
		if e.run == nil {
			continue
		}
		engWG.Add(1)
		go func() {
			defer engWG.Done()
			if err := e.run(engCtx, cfg.Server.ShutdownTimeout); err != nil {
				log.Error("engine supervisor stopped", "engine", e.name, "err", err)
			}
		}()
	}
	defer engWG.Wait()
	defer stopEngines()

	sc := cfg.Scheduler
	sched := scheduler.New(engines.localBackends(), scheduler.Options{
		MaxQueue: sc.MaxQueue, RefreshEvery: sc.RefreshEvery, Registry: reg, Logger: log,
		Policy:  scheduler.Policy(sc.Policy),
		Weights: scheduler.Weights{Prefix: sc.Weights.Prefix, Load: sc.Weights.Load, KV: sc.Weights.KV, GPU: sc.Weights.GPU, Evict: sc.Weights.Evict, Home: sc.Weights.Home},
		SLO:     [2]time.Duration{sc.SLO.Interactive, sc.SLO.Batch}, TenantWeights: sc.TenantWeights,
		NoPrefixWait: !sc.PrefixWaitOn(),
		Engines:      engines.schedulerOptions(), GPUUtil: gpuUtil(mon, placed), Meters: acct.Meters(),
	})
	entries, err := engines.catalog(ctx, cfg, log)
	if err != nil {
		return err
	}
	ropts, err := routerOptions(cfg)
	if err != nil {
		return err
	}
	rt, err := router.NewWithOptions(entries, ropts)
	if err != nil {
		return err
	}
	// The request path runs one way: gateway → router → stages → scheduler → runtime.
	// Each stage has the scheduler's Open(ctx, Target, *Request) and wraps the next one;
	// they are added here innermost first (the scheduler is the last stop).
	var chain gateway.Scheduler = sched
	chain = overflowStage(cfg, chain, engines.remoteBackends(cfg, entries, log), reg, log)
	// Keys' rate limits and budgets, checked against every target the overflow stage
	// may choose, local and remote, before dispatch (and after compression).
	chain = bk.wrap(chain, costs, cfg, reg)
	if chain, err = compressStage(cfg, chain, counter, reg, log); err != nil {
		return err
	}
	// The answer cache wraps everything below it: a hit never reaches the scheduler, a
	// budget or the compressor (it is keyed on the request as the client sent it).
	cacheStage, cacheStore, err := buildCache(ctx, cfg, chain, reg, counter, log)
	if err != nil {
		return err
	}
	var purge func(context.Context, string, string) (int, error)
	if cacheStage != nil {
		chain, purge = cacheStage, cacheStage.Purge
		cacheCtx, stopCache := context.WithCancel(context.Background())
		cacheDone := make(chan struct{})
		go func() { _ = cacheStage.Run(cacheCtx); close(cacheDone) }()
		// On the way out (after the gateway drained): store what is queued, then close.
		defer func() { stopCache(); <-cacheDone; _ = cacheStore.Close() }()
	}
	bat, err := openBatches(ctx, cfg, reg, log)
	if err != nil {
		return err
	}
	defer bat.stop() // before the engines stop: lines in flight finish
	board := dashboard.New(dashboard.Options{Gatherer: reg})
	go board.Run(engCtx)
	gwOpts := gateway.Options{
		MaxBodyBytes: cfg.Server.MaxBodyBytes, RequestTimeout: cfg.Server.RequestTimeout,
		Limits: gatewayLimits(cfg.Server.Limits),
		Router: rt, Scheduler: chain, Models: rt.Models,
		Ready: sched.Ready, Registry: reg, Logger: log,
		AdminKeys: cfg.Server.AdminKeyDigests(), CachePurge: purge,
		Record:  bk.record(acct, log),
		Status:  func() []byte { return statusJSON(mon, sched, rt, acct) },
		Batches: bat.api(), Dashboard: board,
	}
	bk.options(&gwOpts)
	gw, err := gateway.New(gwOpts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Server.Listen, err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- gw.Serve(ln) }()
	go sched.Run(engCtx)

	fmt.Fprintf(stdout, "sluice %s listening on http://%s (engines starting: %s)\n", version, ln.Addr(), engines.names())
	readyCtx, cancelReady := context.WithTimeout(ctx, f.readyTimeout)
	err = engines.waitReady(readyCtx, stdout)
	cancelReady()
	if err != nil && ctx.Err() == nil {
		_ = gw.Shutdown(context.Background())
		return err
	}
	if ctx.Err() == nil {
		sched.RefreshAll(ctx)
		bat.start(gw, log)
		printReady(stdout, ln.Addr().String(), rt.Models())
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("server stopped: %w", err)
	}
	fmt.Fprintln(stdout, "sluice: shutting down (finishing requests in flight)")
	shCtx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer cancel()
	bat.beginStop()
	if err := gw.Shutdown(shCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown", "err", err)
	}
	return nil
}

func printReady(w io.Writer, addr string, ms []models.ModelInfo) {
	chat, names := "", make([]string, 0, len(ms))
	for _, m := range ms {
		names = append(names, m.ID)
		if chat == "" && m.Kind == "chat" && m.AliasOf == "" {
			chat = m.ID
		}
	}
	fmt.Fprintf(w, "sluice ready: http://%s serves %s\n", addr, strings.Join(names, ", "))
	if chat != "" {
		fmt.Fprintf(w, "try: curl -N http://%s/v1/chat/completions -H 'Content-Type: application/json' "+
			"-d '{\"model\":\"%s\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}]}'\n", addr, chat)
	}
}

// gatewayLimits passes server.limits to the gateway.
func gatewayLimits(l config.Limits) gateway.Limits {
	return gateway.Limits{HeaderTimeout: l.HeaderTimeout, BodyTimeout: l.BodyTimeout, WriteTimeout: l.WriteTimeout,
		IdleTimeout: l.IdleTimeout, MaxConnections: l.MaxConnections, MaxConcurrentRequests: l.MaxConcurrentRequests,
		LargeBodyBytes: l.LargeBodyBytes, MaxLargeBodies: l.MaxLargeBodies, OversizeDrain: l.OversizeDrain}
}
