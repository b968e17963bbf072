package main

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/compress"
	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/models"
)

type nopSched struct{}

func (nopSched) Open(context.Context, models.Target, *models.Request) (models.Stream, error) {
	return nil, io.EOF
}

func TestCompressStageWiring(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	off := false
	cfg := &config.Config{Compress: config.Compress{Header: &off}}
	cfg.Compress.Ratio, cfg.Compress.Mode, cfg.Compress.LearnEvery = 2, "statistical", 16
	got, err := compressStage(cfg, nopSched{}, nil, prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.(nopSched); !ok {
		t.Fatalf("no rule and no header: the chain got a stage (%T)", got)
	}
	cfg.Compress.Models = map[string]config.CompressRule{"tiny": {Ratio: 3}}
	cfg.Compress.Tokenizers = map[string]string{"tiny": t.TempDir() + "/missing.json"} // falls back to the estimate
	cfg.Compress.Mode = "model"
	cfg.Compress.Engine = config.CompressEngine{URL: "http://127.0.0.1:1", TopK: 5, MaxWords: 10}
	got, err = compressStage(cfg, nopSched{}, nil, prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.(*compress.Stage); !ok {
		t.Fatalf("with a model rule: %T", got)
	}
}
