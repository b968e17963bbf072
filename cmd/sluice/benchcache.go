package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	bcache "github.com/sluice-llm/sluice/bench/cache"
)

const benchCacheUsage = `Usage: sluice bench cache [flags]

Measures the answer cache: exact lookup latency (a whole hit through the cache stage,
memory and embedded stores); semantic lookup p50 and p99 with 10k, 100k and 1M entries
in one scope, and memory per entry; GPTCache's benchmark protocol on its mock_data.json
(cache the 999 origins, ask each similar question: correct hit, wrong hit or miss, at
several thresholds, with GPTCache's published figures beside); ROC-AUC, precision and
recall on labelled Quora question pairs. The built-in embedder and the guards throughout.

Flags:
`

func benchCache(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c bcache.Config
	var sizes, thresholds string
	var asJSON, gate bool
	var cpuprofile string
	fs := flag.NewFlagSet("bench cache", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchCacheUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.MockData, "mock-data", "../shared/data/cache/mock_data.json", "GPTCache's mock_data.json ([{origin, similar}]; empty: skip)")
	fs.StringVar(&c.QQP, "qqp", "../shared/data/cache/similiar_qqp_full.first5000.json", "labelled question pairs ([{text_a, text_b, label}]; empty: skip)")
	fs.StringVar(&sizes, "sizes", "10000,100000,1000000", "semantic index sizes to time")
	fs.IntVar(&c.Queries, "queries", 2000, "semantic lookups timed per size")
	fs.StringVar(&thresholds, "thresholds", "0.4,0.45,0.5,0.55,0.6,0.7,0.8,0.9", "similarity thresholds for the quality tables")
	fs.Float64Var(&c.Threshold, "threshold", 0, "headline threshold (default: the cache's default for the built-in embedder)")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the generated questions")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object as the last line")
	fs.BoolVar(&gate, "gate", false, "exit non-zero when a target is missed")
	fs.StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the run to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	var err error
	if c.Sizes, err = parseInts(sizes); err != nil {
		return fmt.Errorf("bench cache: --sizes: %w", err)
	}
	if c.Thresholds, err = parseFloats(thresholds); err != nil {
		return fmt.Errorf("bench cache: --thresholds: %w", err)
	}
	c.Log = stderr
	if cpuprofile != "" {
		stop, err := startCPUProfile(cpuprofile)
		if err != nil {
			return err
		}
		defer stop()
	}
	res, err := bcache.Run(ctx, c)
	if err != nil {
		return err
	}
	printCacheResult(stdout, res)
	if asJSON {
		b, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(b))
	}
	if gate && !res.Pass {
		return errors.New("bench cache: targets missed")
	}
	return nil
}

func printCacheResult(w io.Writer, r *bcache.Result) {
	fmt.Fprintf(w, "exact lookup (a whole hit through the stage): %.0f ns memory store (%.0f ns of CPU; %.0f ns hashing the request), %.0f ns embedded store; target < 2000 ns\n\n",
		r.ExactLookupNS, r.ExactCPUNS, r.ExactKeyNS, r.ExactBoltNS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "entries\tbuild\tp50 us\tp99 us\tcpu us\thits\tbytes/entry\t")
	for _, s := range r.Semantic {
		fmt.Fprintf(tw, "%d\t%.1f s\t%.1f\t%.1f\t%.1f\t%.1f%%\t%.0f\t\n", s.Entries, s.BuildSeconds, s.P50US, s.P99US, s.CPUUS, s.HitPct, s.BytesPerEntry)
	}
	tw.Flush()
	fmt.Fprintln(w, "semantic lookup (one scope holds all entries; reworded questions); target p99 < 1000 us at 1M")
	if len(r.GPTCache) > 0 {
		fmt.Fprintln(w, "\nGPTCache protocol on mock_data.json (999 queries): built-in embedder + guards")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "threshold\tcorrect\twrong\tmisses\twrong/hits\t")
		for _, g := range r.GPTCache {
			fmt.Fprintf(tw, "%.2f\t%d\t%d\t%d\t%.2f%%\t\n", g.Threshold, g.Correct, g.Wrong, g.Misses, 100*float64(g.Wrong)/float64(max(1, g.Correct+g.Wrong)))
		}
		fmt.Fprintf(tw, "GPTCache 0.90\t%d\t%d\t%d\t%.2f%%\t\n", bcache.GPTCacheCorrect, bcache.GPTCacheWrong, bcache.GPTCacheMisses,
			100*float64(bcache.GPTCacheWrong)/float64(bcache.GPTCacheCorrect+bcache.GPTCacheWrong))
		tw.Flush()
		fmt.Fprintf(w, "at %.2f: %.1f%% of queries hit correctly, %.2f%% of hits wrong (without the guards: %.2f%%); targets >= 50%%, < 1%%\n",
			r.GPTCacheThreshold, r.GPTCacheCorrectPct, r.GPTCacheWrongPct, r.GPTCacheNoGuardsWPct)
	}
	if r.QQPPairs > 0 {
		fmt.Fprintf(w, "\nQuora pairs (%d): ROC-AUC %.3f with the guards, %.3f similarity alone; target >= 0.85\n", r.QQPPairs, r.QQPAUC, r.QQPAUCNoGuards)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "threshold\tprecision\trecall\t")
		for _, p := range r.QQP {
			fmt.Fprintf(tw, "%.2f\t%.3f\t%.3f\t\n", p.Threshold, p.Precision, p.Recall)
		}
		tw.Flush()
	}
	if r.Pass {
		fmt.Fprintln(w, "\ntargets: all met")
	} else {
		fmt.Fprintln(w, "\ntargets MISSED: "+strings.Join(r.Targets, "; "))
	}
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseFloats(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", f)
		}
		out = append(out, v)
	}
	return out, nil
}
