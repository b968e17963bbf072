package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	sbench "github.com/sluice-llm/sluice/bench"
)

const benchUsage = `Usage: sluice bench gateway [flags]
       sluice bench smoke [flags]   (GPU smoke test; see "sluice bench smoke -h")
       sluice bench sched [flags]   (scheduling policies on real engines; see "sluice bench sched -h")
       sluice bench route [flags]   (the "auto" classifier on MT-Bench, cloud overflow under load; see "sluice bench route -h")
       sluice bench compress [flags] (prompt compression: what it keeps, how fast; see "sluice bench compress -h")
       sluice bench cache [flags]   (the answer cache: latency and hit quality; see "sluice bench cache -h")
       sluice bench soak [flags]    (1,000 slow streams held through sluice: errors, RSS, goroutine leaks; see "sluice bench soak -h")

Measures the latency sluice's gateway adds: a fast fake OpenAI engine called directly,
through a do-nothing fasthttp proxy (and an identical second one as a noise control), and
through sluice's full pipeline, at fixed request rates (open loop, latency from each
request's scheduled send time), streaming and not. Each hop runs in a process of its own,
as deployed (this binary re-run as "sluice bench gateway-hop"); --in-process runs them
all in this one.

Flags:
`

func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		benchFlags(stderr, &benchOpts{}).Usage()
		if len(args) == 0 {
			return errors.New("bench: name a benchmark (available: gateway, smoke, sched, route, compress, cache, soak)")
		}
		return nil
	}
	switch args[0] {
	case "gateway":
	case "gateway-hop": // internal: one hop of "bench gateway", started by it
		if len(args) != 3 && len(args) != 4 {
			return errors.New("bench gateway-hop: want HOP UPSTREAM [OPTIONS] (started by \"sluice bench gateway\")")
		}
		var o sbench.HopOptions
		if len(args) == 4 {
			var err error
			if o, err = sbench.ParseHopOptions(args[3]); err != nil {
				return err
			}
		}
		return sbench.ServeHop(ctx, args[1], args[2], o, os.Stdin, stdout)
	case "smoke":
		return benchSmoke(ctx, args[1:], stdout, stderr)
	case "sched":
		return benchSched(ctx, args[1:], stdout, stderr)
	case "route":
		return benchRoute(ctx, args[1:], stdout, stderr)
	case "compress":
		return benchCompress(ctx, args[1:], stdout, stderr)
	case "cache":
		return benchCache(ctx, args[1:], stdout, stderr)
	case "soak":
		return benchSoak(ctx, args[1:], stdout, stderr)
	default:
		return fmt.Errorf("bench: unknown benchmark %q (available: gateway, smoke, sched, route, compress, cache, soak)", args[0])
	}
	var o benchOpts
	fs := benchFlags(stderr, &o)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench gateway: unexpected arguments %q", fs.Args())
	}
	cfg, err := o.config(stderr)
	if err != nil {
		return err
	}
	if !o.inProcess {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench gateway: finding this binary to run the hops: %w (or use --in-process)", err)
		}
		cfg.Exec = []string{exe, "bench", "gateway-hop"}
	}
	fmt.Fprintf(stderr, "bench gateway: rates %v, modes %v, %v per target per rate and mode in %d rounds (about %v in all)\n"+
		"bench gateway: traffic: %s\n",
		cfg.Rates, cfg.Modes, cfg.Duration, cfg.Rounds, cfg.Estimate().Round(time.Second), cfg.Traffic)
	if o.cpuprofile != "" {
		stop, err := startCPUProfile(o.cpuprofile)
		if err != nil {
			return err
		}
		defer stop()
	}
	rep, err := sbench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if o.json {
		b, err := rep.JSON()
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
			return err
		}
	}
	if o.gate && !rep.Pass {
		return fmt.Errorf("bench gateway: target missed (p50 ratio at %d RPS above %.2f, a peer adding less at p50, or errors)", rep.RefRate, rep.TargetRatioP50)
	}
	return nil
}

type benchOpts struct {
	data         string
	chunks       int
	noAuth       bool
	keyLimits    bool
	noCache      bool
	engineAddr   string
	peers        peerFlags
	peerHeaders  []string // NAME=Header:Value
	rates, modes string
	duration     time.Duration
	warmup       time.Duration
	rounds       int
	workers      int
	json, gate   bool
	inProcess    bool
	cpuprofile   string
	hopProfile   string
}

func benchFlags(stderr io.Writer, o *benchOpts) *flag.FlagSet {
	fs := flag.NewFlagSet("bench gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.data, "data", "../shared/data", "shared data directory: the requests' prompts (route/ and compress/); empty: one small synthetic request")
	fs.IntVar(&o.chunks, "chunks", 200, "content chunks per streamed answer (the fake engine's answer, in words)")
	fs.BoolVar(&o.noAuth, "no-auth", false, "turn API keys off (by default sluice requires one and every request carries it)")
	fs.BoolVar(&o.keyLimits, "key-limits", false, "give the key rate limits (too high ever to refuse): the budget stage then checks them in the ledger's store for every request")
	fs.BoolVar(&o.noCache, "no-cache", false, "leave the answer cache out of sluice's pipeline (on by default, as serve has it)")
	fs.StringVar(&o.engineAddr, "engine-addr", "", "listen address of the fake engine (default: a free loopback port); peers must point at it")
	fs.Var(&o.peers, "peer", "NAME=URL: another gateway, already running in front of the fake engine at --engine-addr, measured\n"+
		"as one more target (URL + /v1/chat/completions); repeatable. scripts/bench/peers.sh installs and starts peers")
	fs.Func("peer-header", "NAME=Header:Value: a header every request to peer NAME carries (e.g. the upstream for Portkey:\n"+
		"portkey=x-portkey-provider:openai); repeatable", func(v string) error {
		if _, _, err := sbench.ParsePeerHeader(v); err != nil {
			return err
		}
		o.peerHeaders = append(o.peerHeaders, v)
		return nil
	})
	fs.StringVar(&o.rates, "rates", "500,2000,5000", "request rates per second, comma-separated")
	fs.StringVar(&o.modes, "modes", "nonstream,stream", "modes to run, comma-separated: nonstream, stream")
	fs.DurationVar(&o.duration, "duration", 6*time.Second, "measured time per target, rate and mode (split over the rounds)")
	fs.DurationVar(&o.warmup, "warmup", 0, "unmeasured load per target before each rate and mode (default duration/10, 200ms to 1s)")
	fs.IntVar(&o.rounds, "rounds", 6, "rounds per rate and mode; the targets' order rotates between rounds")
	fs.IntVar(&o.workers, "workers", 128, "concurrent requests at most per target (load generator)")
	fs.BoolVar(&o.json, "json", false, "after the table, print the figures as one JSON object on the last line")
	fs.BoolVar(&o.gate, "gate", false, "exit 1 when the p50 target is missed, a peer adds less than sluice at p50, or a request to sluice or a baseline failed")
	fs.BoolVar(&o.inProcess, "in-process", false, "run every hop (fake engine, null proxies, sluice) in this process instead of one process each")
	fs.StringVar(&o.hopProfile, "sluice-cpuprofile", "", "write a CPU profile of sluice's own process (the sluice hop) to this file")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the run to this file (with --in-process: samples carry a hop\n"+
		"label (sluice, null, control, engine, loadgen): go tool pprof -tagfocus hop=sluice FILE)")
	return fs
}

func (o *benchOpts) config(progress io.Writer) (sbench.Config, error) {
	cfg := sbench.Config{Duration: o.duration, Warmup: o.warmup, Rounds: o.rounds, Workers: o.workers, Progress: progress,
		NoAuth: o.noAuth, KeyLimits: o.keyLimits, NoCache: o.noCache, SluiceProfile: o.hopProfile, EngineAddr: o.engineAddr, Peers: o.peers}
	if o.chunks < 1 {
		return cfg, errors.New("bench gateway: --chunks must be at least 1")
	}
	cfg.Peers = slices.Clone(o.peers)
	for _, v := range o.peerHeaders {
		name, h, _ := sbench.ParsePeerHeader(v)
		i := slices.IndexFunc(cfg.Peers, func(p sbench.Peer) bool { return p.Name == name })
		if i < 0 {
			return cfg, fmt.Errorf("bench gateway: --peer-header %q: no --peer named %s", v, name)
		}
		cfg.Peers[i].Headers = append(slices.Clone(cfg.Peers[i].Headers), h)
	}
	tr, err := sbench.LoadTraffic(sbench.TrafficOptions{Data: o.data, Chunks: o.chunks})
	if err != nil {
		return cfg, err
	}
	cfg.Traffic = tr
	if o.duration <= 0 {
		return cfg, fmt.Errorf("bench gateway: --duration must be positive, got %v", o.duration)
	}
	if o.rounds < 1 || o.workers < 1 {
		return cfg, errors.New("bench gateway: --rounds and --workers must be at least 1")
	}
	for _, s := range strings.Split(o.rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return cfg, fmt.Errorf("bench gateway: --rates: %q is not a positive integer", s)
		}
		cfg.Rates = append(cfg.Rates, n)
	}
	for _, s := range strings.Split(o.modes, ",") {
		switch m := sbench.Mode(strings.TrimSpace(s)); m {
		case sbench.NonStream, sbench.Stream:
			cfg.Modes = append(cfg.Modes, m)
		default:
			return cfg, fmt.Errorf("bench gateway: --modes: unknown mode %q (want nonstream or stream)", s)
		}
	}
	return cfg, nil
}

// peerFlags collects --peer NAME=URL.
type peerFlags []sbench.Peer

func (p *peerFlags) String() string {
	s := make([]string, len(*p))
	for i, x := range *p {
		s[i] = x.Name + "=" + x.URL
	}
	return strings.Join(s, ",")
}

func (p *peerFlags) Set(v string) error {
	x, err := sbench.ParsePeer(v)
	if err != nil {
		return err
	}
	*p = append(*p, x)
	return nil
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("bench gateway: --cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("bench gateway: --cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}
