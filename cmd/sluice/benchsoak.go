package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	sbench "github.com/sluice-llm/sluice/bench"
)

const benchSoakUsage = `Usage: sluice bench soak [flags]

Holds many long streams at once through sluice (its default pipeline, in a process of its
own) to a fake engine, in another process, that streams slowly, then lets them finish and
closes the connections. Reports errors, sluice's peak RSS (VmHWM) and whether its
goroutines came back to the count they had before the load (a leak otherwise).

Flags:
`

func benchSoak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c sbench.SoakConfig
	var asJSON, gate bool
	fs := flag.NewFlagSet("bench soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchSoakUsage)
		fs.PrintDefaults()
	}
	fs.IntVar(&c.Streams, "streams", 1000, "concurrent streams")
	fs.DurationVar(&c.Duration, "duration", 60*time.Second, "how long all the streams are held, after they opened over one stream's length (then they finish)")
	fs.DurationVar(&c.ChunkDelay, "chunk-delay", 100*time.Millisecond, "the fake engine's pause between streamed events")
	fs.IntVar(&c.Chunks, "chunks", 100, "content chunks per answer")
	fs.StringVar(&c.Data, "data", "../shared/data", "shared data directory for the prompts; empty: one small synthetic request")
	fs.BoolVar(&c.NoAuth, "no-auth", false, "turn API keys off")
	fs.BoolVar(&c.NoCache, "no-cache", false, "leave the answer cache out of sluice's pipeline")
	fs.Float64Var(&c.MaxRSSMB, "max-rss-mb", 60, "target for sluice's peak RSS, MiB")
	fs.StringVar(&c.HeapProfile, "sluice-memprofile", "", "write a heap profile of sluice's process to this file halfway through")
	fs.StringVar(&c.GoroutineProfile, "sluice-goroutines", "", "write sluice's goroutines (text) to this file after the streams ended")
	fs.StringVar(&c.MidGoroutineProfile, "sluice-goroutines-mid", "", "write sluice's goroutines (text) to this file halfway through, the streams open")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object as the last line")
	fs.BoolVar(&gate, "gate", false, "exit non-zero when a target is missed")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench soak: unexpected arguments %q", fs.Args())
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench soak: finding this binary to run the hops: %w", err)
	}
	c.Exec = []string{exe, "bench", "gateway-hop"}
	c.Progress = stderr
	fmt.Fprintf(stderr, "bench soak: %d streams held for %v after a ramp of one stream's length, an event every %v (%d chunks a stream)\n", c.Streams, c.Duration, c.ChunkDelay, c.Chunks)
	rep, err := sbench.Soak(ctx, c)
	if err != nil {
		return err
	}
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if asJSON {
		b, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(b))
	}
	if gate && !rep.Pass {
		return errors.New("bench soak: target missed (errors, leaked goroutines or RSS above the target)")
	}
	return nil
}
