package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/models/tinymodel"
)

func genModel(args []string, stdout, stderr io.Writer) error {
	cache := config.CacheDir(config.OSEnv)
	fs := flag.NewFlagSet("gen-model", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", filepath.Join(cache, "models", "tiny.gguf"), "output GGUF file")
	vocab := fs.String("vocab", filepath.Join(cache, "vocab", "llama2", "tokenizer.json"),
		"Llama-2 tokenizer.json (scripts/fetch-vocab.sh downloads it)")
	var o tinymodel.Options
	fs.BoolVar(&o.Embedding, "embedding", false, "generate an embedding model (mean pooling)")
	fs.IntVar(&o.Dim, "dim", 0, "embedding length (default 64)")
	fs.IntVar(&o.Layers, "layers", 0, "transformer blocks (default 2)")
	fs.IntVar(&o.Heads, "heads", 0, "attention heads (default 4)")
	fs.IntVar(&o.FF, "ff", 0, "feed-forward length (default 2*dim)")
	fs.IntVar(&o.Context, "context", 0, "training context length (default 2048)")
	fs.Uint64Var(&o.Seed, "seed", 0, "random seed for the weights")
	fs.StringVar(&o.Name, "name", "", "general.name")
	shape := fs.String("shape", "", "write a real model's architecture with random quantized weights: "+shapeNames())
	quant := fs.String("quant", tinymodel.QuantQ8_0, "quantization of a --shape model: q8_0 or q4_0")
	list := fs.Bool("list-shapes", false, "list the shapes --shape knows")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *list {
		fmt.Fprintf(stdout, "%-14s %-6s %6s %6s %6s %5s %7s %7s %8s\n", "shape", "arch", "params", "dim", "layers", "heads", "kv", "ff", "vocab")
		for _, s := range tinymodel.Shapes() {
			fmt.Fprintf(stdout, "%-14s %-6s %5.2fB %6d %6d %5d %7d %7d %8d\n", s.Name, s.Arch, float64(s.Params())/1e9,
				s.Dim, s.Layers, s.Heads, s.KVHeads, s.FF, s.Vocab)
		}
		return nil
	}
	var sh tinymodel.Shape
	if *shape != "" {
		var err error
		if sh, err = tinymodel.ShapeNamed(*shape); err != nil {
			return fmt.Errorf("gen-model: %w", err)
		}
		if !flagSet(fs, "out") {
			*out = filepath.Join(cache, "models", sh.Name+"-"+*quant+".gguf")
		}
	}
	v, err := tinymodel.LoadVocab(*vocab)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("gen-model: %w (run scripts/fetch-vocab.sh first)", err)
		}
		return fmt.Errorf("gen-model: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".gen-*.gguf")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	start := time.Now()
	bw := bufio.NewWriterSize(tmp, 4<<20)
	gen := func() error { return tinymodel.Generate(bw, v, o) }
	if *shape != "" {
		gen = func() error { return tinymodel.GenerateShape(bw, v, sh, *quant, o.Seed) }
	}
	if err := gen(); err != nil {
		tmp.Close()
		return fmt.Errorf("gen-model: %w", err)
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return err
	}
	st, _ := os.Stat(*out)
	el := time.Since(start)
	fmt.Fprintf(stdout, "wrote %s (%.1f MB in %.1fs, %.0f MB/s)\n", *out, float64(st.Size())/1e6, el.Seconds(),
		float64(st.Size())/1e6/max(el.Seconds(), 1e-3))
	return nil
}

func shapeNames() string {
	var n []string
	for _, s := range tinymodel.Shapes() {
		n = append(n, s.Name)
	}
	return strings.Join(n, ", ")
}

// flagSet reports whether the command line set flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
