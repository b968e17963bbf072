// Command sluice is an OpenAI-compatible inference gateway over local engines
// (llama-server, Ollama, any OpenAI-compatible server). main only wires packages.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `sluice: an OpenAI-compatible LLM gateway for self-hosted engines.

Usage:
  sluice serve [--config FILE] [--model FILE.gguf | --ollama URL | --upstream URL] [--listen ADDR]
  sluice fetch-model --url URL [--sha256 HEX] [--out FILE]   download a GGUF with progress and checksum
  sluice gen-model [--out FILE] [--embedding] [--vocab tokenizer.json] [--dim N --layers N ...]
  sluice status [--url http://127.0.0.1:8080]   GPUs, engines, models and cost of a running sluice
  sluice keys create|list|revoke [--url URL | --ledger FILE]   API keys (a new key is shown once)
  sluice usage [--group-by key,feature,day] [--from DATE] [--to DATE] [--csv]   cost, savings and usage
  sluice gpus                                   this box's GPUs (NVML)
  sluice bench gateway [--json] [--duration 5s] [--rates 500,2000,5000]
  sluice router train|eval|data|score           the classifier behind model "auto"
  sluice bench cache [--json] [--sizes 10000,100000,1000000]   answer cache latency and hit quality
  sluice version

Run "sluice <command> -h" for a command's flags.
`

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdout, stderr)
	case "gen-model":
		err = genModel(args[1:], stdout, stderr)
	case "fetch-model":
		err = fetchModel(ctx, args[1:], stdout, stderr)
	case "gpus":
		err = gpus(ctx, args[1:], stdout)
	case "status":
		err = statusCmd(ctx, args[1:], stdout, stderr)
	case "keys":
		err = keysCmd(ctx, args[1:], stdout, stderr)
	case "usage":
		err = usageCmd(ctx, args[1:], stdout, stderr)
	case "bench":
		err = bench(ctx, args[1:], stdout, stderr)
	case "router":
		err = routerCmd(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "sluice", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "sluice:", err)
		return 1
	}
	return 0
}
