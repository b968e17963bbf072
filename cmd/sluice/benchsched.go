package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/sluice-llm/sluice/bench/sched"
	"github.com/sluice-llm/sluice/scheduler"
)

const benchSchedUsage = `Usage: sluice bench sched [flags]

Compares the scheduler's placement policies (round-robin, least-loaded, sluice) on real
llama-server processes running a generated model, under a shared-prefix workload:
tenants with long system prompts, Poisson arrivals at a fraction of the measured
round-robin's capacity on the same workload. The default rig's model is sized so that a
cold prompt's time to first token is at least 8x a cached one's, as on a GPU (--quick: the
tiny model, ~2x). Every policy gets fresh engines and the same arrival sequence, sent
through sluice's gateway. Then the simulator (scheduler/sim) runs the same comparison on
the real run's setup and on fleets of H100-class GPUs.

Flags:
`

// benchSched is `sluice bench sched`.
func benchSched(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c sched.Config
	var policies, simGPUs, trace string
	var asJSON, gate, quiet bool
	fs := flag.NewFlagSet("bench sched", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchSchedUsage)
		fs.PrintDefaults()
	}
	fs.IntVar(&c.Engines, "engines", sched.DefaultEngines, "llama-server processes")
	fs.IntVar(&c.SlotsPerEngine, "slots", sched.DefaultSlots, "slots per engine (--parallel)")
	fs.IntVar(&c.Threads, "threads", 1, "threads per engine (-t)")
	fs.IntVar(&c.Context, "context", 0, "context per slot in tokens (default: prompt + output, rounded up to a power of two, at least 2048)")
	engineArgs := fs.String("engine-args", "", "extra llama-server arguments, space-separated (e.g. \"-fa off\")")
	fs.IntVar(&c.CacheRAM, "cache-ram", 0, "llama-server --cache-ram in MiB (0: off, only slots hold prefixes; -1: llama-server's default)")
	fs.IntVar(&c.Tenants, "tenants", sched.DefaultTenants, "tenants, each with its own system prompt")
	fs.IntVar(&c.SystemTokens, "system-tokens", sched.DefaultSystemTokens, "tokens of each tenant's system prompt")
	fs.IntVar(&c.OutputTokens, "output-tokens", sched.DefaultOutputTokens, "completion tokens per request (max_tokens)")
	fs.Float64Var(&c.Skew, "skew", 0, "Zipf exponent of tenant popularity (0: uniform)")
	fs.IntVar(&c.Requests, "requests", 0, fmt.Sprintf("measured requests per policy and round (default %d; %d with --quick)", sched.PrefillRigRequests, sched.DefaultRequests))
	fs.BoolVar(&c.Quick, "quick", false, "the quick rig: the 4M-parameter tiny model, on which a cached prefix saves only ~2x of the time to first token")
	fs.IntVar(&c.ModelDim, "model-dim", 0, fmt.Sprintf("embedding length of the generated model (default %d; a multiple of 64)", sched.PrefillRigDim))
	fs.IntVar(&c.ModelLayers, "model-layers", 0, fmt.Sprintf("transformer blocks of the generated model (default %d)", sched.PrefillRigLayers))
	fs.IntVar(&c.ModelFF, "model-ff", 0, "feed-forward length of the generated model (default 2 x dim)")
	fs.DurationVar(&c.Duration, "duration", 0, "arrival window per policy; replaces --requests (requests = duration x rate)")
	fs.IntVar(&c.Rounds, "rounds", sched.DefaultRounds, "runs per policy, the policies' order rotating each round; figures pool the rounds")
	fs.IntVar(&c.Warmup, "warmup", 0, "unmeasured requests before the measured ones (default: --tenants)")
	fs.Float64Var(&c.Load, "load", sched.DefaultLoad, "arrival rate as a fraction of round-robin's capacity measured on the workload")
	fs.Float64Var(&c.Rate, "rate", 0, "arrival rate in requests per second (replaces --load)")
	fs.DurationVar(&c.SLO, "slo", 0, "TTFT target for goodput (default: 5 x the unloaded cold TTFT)")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of prompts, tenants and arrivals")
	fs.StringVar(&policies, "policies", "round-robin,least-loaded,sluice", "policies to compare, in run order")
	fs.BoolVar(&c.NoPrefixWait, "no-prefix-wait", false, "run the sluice policy without cost-aware waiting (for an A/B)")
	fs.StringVar(&c.LlamaServer, "llama-server", "", "llama-server binary (default: the build cache, else $PATH)")
	fs.StringVar(&c.Model, "model", "", "GGUF model (default: a tiny model generated into the cache)")
	fs.StringVar(&c.Vocab, "vocab", "", "Llama-2 tokenizer.json to generate the tiny model with (default: the cache)")
	fs.StringVar(&simGPUs, "sim-gpus", "8,64", "fleet sizes to simulate, comma-separated (empty: no simulation)")
	fs.IntVar(&c.SimRequests, "sim-requests", 20000, "requests per simulated policy")
	fs.StringVar(&trace, "trace", "", "write one CSV line per request of every policy to this file")
	fs.BoolVar(&asJSON, "json", false, "after the tables, print the figures as one JSON object on the last line")
	fs.BoolVar(&gate, "gate", false, "exit 1 when sluice misses the targets against round-robin")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench sched: unexpected arguments %q", fs.Args())
	}
	c.EngineArgs = strings.Fields(*engineArgs)
	for _, p := range strings.Split(policies, ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.Policies = append(c.Policies, scheduler.Policy(p))
		}
	}
	if strings.TrimSpace(simGPUs) == "" {
		c.NoSim = true
	}
	for _, s := range strings.Split(simGPUs, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return fmt.Errorf("bench sched: --sim-gpus: %q is not a positive integer", s)
		}
		c.SimGPUs = append(c.SimGPUs, n)
	}
	if !quiet {
		c.Progress = stderr
	}
	if trace != "" {
		f, err := os.Create(trace)
		if err != nil {
			return fmt.Errorf("bench sched: --trace: %w", err)
		}
		defer f.Close()
		if _, err := io.WriteString(f, sched.TraceHeader); err != nil {
			return err
		}
		c.Trace = f
	}
	rep, err := sched.Run(ctx, c)
	if err != nil {
		return err
	}
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if asJSON {
		b, err := rep.JSON()
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
			return err
		}
	}
	if gate && !rep.MeetsTargets {
		return errors.New("bench sched: sluice missed the targets against round-robin")
	}
	return nil
}
