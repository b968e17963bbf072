package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	bcompress "github.com/sluice-llm/sluice/bench/compress"
	"github.com/sluice-llm/sluice/compress"
	"github.com/sluice-llm/sluice/config"
)

const benchCompressUsage = `Usage: sluice bench compress [flags]

Measures prompt compression (docs/compression.md) for what it keeps and how fast it
runs. At each target ratio it compresses every question's context and prints the ratio
achieved, the share of gold answers that survive verbatim (SQuAD sets) or of the
relevant turns' words kept (QMSum), and throughput in tokens per second per core; three
baselines run in the same table: random word dropping, the first N tokens, and the
sentences with the most words in common with the question.

Flags:
`

// benchCompress is `sluice bench compress`.
func benchCompress(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c bcompress.Config
	var ratios, tokenizer string
	var asJSON, quiet bool
	fs := flag.NewFlagSet("bench compress", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchCompressUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.SQuAD, "squad", "../shared/data/compress/xquad.en.json", "SQuAD v1.1 file: questions against their paragraph and their 5-paragraph article")
	fs.StringVar(&c.QMSum, "qmsum", "../shared/data/compress/qmsum_ALL/test.jsonl", "QMSum JSONL (long meeting transcripts); empty to skip")
	fs.IntVar(&c.Limit, "limit", 0, "SQuAD questions per set, evenly spread (0: all)")
	fs.IntVar(&c.QMSumMax, "qmsum-max", 60, "QMSum queries to use (0: all)")
	fs.StringVar(&ratios, "ratios", "2,3,5", "target ratios, comma-separated")
	fs.StringVar(&tokenizer, "tokenizer", "", "tokenizer.json to count tokens with (default: the Llama-2 vocabulary in the cache, else an estimate)")
	fs.IntVar(&c.CountSample, "count-sample", 200, "cases per row whose tokens the tokenizer counts for the ratio (0: all; the tokenizer is slow)")
	fs.IntVar(&c.Repeat, "repeat", 3, "passes over each set when timing sluice's compressor")
	fs.BoolVar(&asJSON, "json", false, "after the table, print the figures as one JSON object on the last line")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench compress: unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(ratios, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		r, err := strconv.ParseFloat(s, 64)
		if err != nil || r < 1 {
			return fmt.Errorf("bench compress: --ratios: %q is not a ratio of at least 1", s)
		}
		c.Ratios = append(c.Ratios, r)
	}
	if tokenizer == "" {
		p := filepath.Join(config.CacheDir(config.OSEnv), "vocab", "llama2", "tokenizer.json")
		if _, err := os.Stat(p); err == nil {
			tokenizer = p
		}
	}
	if tokenizer != "" {
		counter, err := compress.NewCounter(tokenizer)
		if err != nil {
			return fmt.Errorf("bench compress: --tokenizer: %w", err)
		}
		c.Counter, c.Tokenizer = counter, filepath.Base(filepath.Dir(tokenizer))+"/"+filepath.Base(tokenizer)
	}
	if !quiet {
		c.Progress = stderr
	}
	rep, err := bcompress.Run(ctx, c)
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
	return nil
}
