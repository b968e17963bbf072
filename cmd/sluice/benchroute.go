package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/sluice-llm/sluice/bench/route"
)

const benchRouteUsage = `Usage: sluice bench route [flags]

Benchmarks routing, in parts (--part, default all):
  classify   the classifier behind model "auto": latency per request, and its RouteLLM-style
             evaluation on MT-Bench (held out of training): quality against the share of
             requests sent to the strong model, APGR, the strong share needed for 95%% of the
             strong model's quality; next to a keyword-regex router, random routing and
             the oracle.
  overflow   cloud overflow under load: sluice (gateway, router, overflow stage,
             scheduler) in front of real llama-server engines and two fake
             OpenAI-compatible clouds (EU and US) with realistic latency; Poisson arrivals
             at 0.5x, 1x and 3x the measured local capacity, half with an EU-restricted
             key: time to first token, overflow, local slot occupancy, residency.
%s
With --json the last line is one JSON object with every part's figures.

Flags:
`

// routePart is one part of "sluice bench route". Each part registers its own flags and
// returns its results as a route.Section; adding a part is one entry in routeParts.
type routePart struct {
	name  string
	about string // one usage line, when the part is not described above
	flags func(fs *flag.FlagSet)
	run   func(ctx context.Context, progress io.Writer) (route.Section, error)
}

// routeParts lists the parts in run order.
func routeParts() []routePart {
	return []routePart{classifyPart(), overflowPart()}
}

func overflowPart() routePart {
	var c route.OverflowConfig
	return routePart{
		name:  "overflow",
		flags: c.Flags,
		run: func(ctx context.Context, progress io.Writer) (route.Section, error) {
			c.Progress = progress
			return route.RunOverflow(ctx, c)
		},
	}
}

func classifyPart() routePart {
	var c route.ClassifyConfig
	return routePart{
		name: "classify",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&c.DataDir, "data-dir", route.DefaultDataDir, "RouteLLM data (routellm_mt_bench, routellm_mmlu, routellm_gsm8k)")
			fs.StringVar(&c.Weights, "weights", "", "classifier weights file (default: the embedded one)")
			fs.BoolVar(&c.Train, "train", false, "train fresh weights on the data's MMLU and GSM8K instead of loading them")
			fs.DurationVar(&c.LatencyFor, "latency-for", 0, "how long to time classifications (default 300ms)")
		},
		run: func(ctx context.Context, progress io.Writer) (route.Section, error) {
			c.Progress = progress
			return route.RunClassify(ctx, c)
		},
	}
}

// benchRoute is "sluice bench route".
func benchRoute(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	parts := routeParts()
	var names []string
	var more strings.Builder
	for _, p := range parts {
		names = append(names, p.name)
		if p.about != "" {
			fmt.Fprintf(&more, "  %-10s %s\n", p.name, p.about)
		}
	}
	fs := flag.NewFlagSet("bench route", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, benchRouteUsage, more.String())
		fs.PrintDefaults()
	}
	part := fs.String("part", "all", "which part to run: "+strings.Join(names, ", ")+" or all")
	asJSON := fs.Bool("json", false, "after the tables, print the figures as one JSON object on the last line")
	gate := fs.Bool("gate", false, "exit 1 when a target is missed")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	for _, p := range parts {
		p.flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench route: unexpected arguments %q", fs.Args())
	}
	if *part != "all" && !slices.Contains(names, *part) {
		return fmt.Errorf("bench route: --part %q: this build has %s (or all)", *part, strings.Join(names, ", "))
	}
	var progress io.Writer
	if !*quiet {
		progress = stderr
	}
	var rep route.Report
	for _, p := range parts {
		if *part != "all" && *part != p.name {
			continue
		}
		s, err := p.run(ctx, progress)
		if err != nil {
			return fmt.Errorf("bench route: %s: %w", p.name, err)
		}
		rep.Add(s)
	}
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if *asJSON {
		b, err := rep.JSON()
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
			return err
		}
	}
	if *gate && len(rep.Misses()) > 0 {
		return errors.New("bench route: targets missed")
	}
	return nil
}
