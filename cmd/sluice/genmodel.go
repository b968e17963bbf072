package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

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
	if err := fs.Parse(args); err != nil {
		return err
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
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := tinymodel.Generate(bw, v, o); err != nil {
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
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return err
	}
	st, _ := os.Stat(*out)
	fmt.Fprintf(stdout, "wrote %s (%.1f MB)\n", *out, float64(st.Size())/1e6)
	return nil
}
