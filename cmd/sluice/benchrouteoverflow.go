package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/sluice-llm/sluice/bench/route"
)

const benchRouteOverflowUsage = `Usage: sluice bench route-overflow [flags]

The overflow half of "sluice bench route": sluice (gateway, router, overflow stage,
scheduler) in front of real llama-server engines and two fake OpenAI-compatible clouds,
one in the EU and one in the US, with realistic latency. It measures the local capacity
in a closed loop, then sends Poisson arrivals at 0.5x, 1x and 3x of it, half with an
EU-restricted key and half with an unrestricted one, and reports time to first token,
overflow, local slot occupancy and residency.

Flags:
`

// benchRouteOverflow is `sluice bench route-overflow`.
func benchRouteOverflow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c route.OverflowConfig
	var asJSON, gate, quiet bool
	fs := flag.NewFlagSet("bench route-overflow", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchRouteOverflowUsage)
		fs.PrintDefaults()
	}
	c.Flags(fs)
	fs.BoolVar(&asJSON, "json", false, "after the table, print the figures as one JSON object on the last line")
	fs.BoolVar(&gate, "gate", false, "exit 1 when a target is missed")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench route-overflow: unexpected arguments %q", fs.Args())
	}
	if !quiet {
		c.Progress = stderr
	}
	res, err := route.RunOverflow(ctx, c)
	if err != nil {
		return err
	}
	if err := res.WriteTable(stdout); err != nil {
		return err
	}
	if asJSON {
		b, err := res.JSON()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", b)
	}
	if gate && !res.Pass() {
		return errors.New("bench route-overflow: targets missed")
	}
	return nil
}
