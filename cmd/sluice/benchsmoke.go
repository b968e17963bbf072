package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/sluice-llm/sluice/bench/smoke"
)

// benchSmoke is `sluice bench smoke`: the GPU smoke test (scripts/runpod/gpu-smoke.sh).
func benchSmoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o smoke.Options
	var asJSON bool
	fs := flag.NewFlagSet("bench smoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.LlamaServer, "llama-server", "llama-server", "llama-server binary (a CUDA build on a GPU box)")
	fs.StringVar(&o.Model, "model", "", "GGUF model (default: generate one with --vocab)")
	fs.StringVar(&o.Vocab, "vocab", "", "Llama-2 tokenizer.json to generate a model with")
	fs.IntVar(&o.GenDim, "gen-dim", 2048, "width of the generated model")
	fs.IntVar(&o.GenLayers, "gen-layers", 16, "layers of the generated model")
	fs.IntVar(&o.Slots, "slots", 8, "llama-server slots (--parallel)")
	fs.IntVar(&o.Concurrency, "concurrency", 8, "streams at once")
	fs.IntVar(&o.Requests, "requests", 32, "streamed requests in the load phase")
	fs.IntVar(&o.MaxTokens, "max-tokens", 256, "completion tokens per request")
	fs.IntVar(&o.GPULayers, "gpu-layers", -1, "layers offloaded to the GPU (-1: all)")
	fs.Float64Var(&o.GPUPrice, "gpu-price", 0, "override the GPU-hour price")
	fs.IntVar(&o.Port, "port", 18080, "port for the sluice under test")
	fs.StringVar(&o.Dir, "dir", "", "work directory (config, logs, generated model)")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object (last line)")
	engineArgs := fs.String("engine-args", "", "extra llama-server arguments, space-separated (e.g. \"-fa off\")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Log = stderr
	o.EngineArgs = strings.Fields(*engineArgs)
	res, err := smoke.Run(ctx, o)
	res.WriteTable(stdout)
	if asJSON {
		b, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(b))
	}
	return err
}
