package main

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/compress"
	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/gateway"
	"github.com/sluice-llm/sluice/models"
)

// compressStage wraps next with prompt compression when the config lets any request
// be compressed (a model or tier rule, or the X-Sluice-Compress header).
func compressStage(cfg *config.Config, next gateway.Scheduler, counter models.TokenCounter,
	reg prometheus.Registerer, log *slog.Logger) (gateway.Scheduler, error) {
	cc := &cfg.Compress
	if !cc.Enabled() {
		return next, nil
	}
	lm, err := compress.NewLM(cc.LearnEvery > 0)
	if err != nil {
		return nil, err
	}
	comp := compress.NewCompressor(lm)
	if cc.LearnEvery > 0 {
		comp.LearnEvery = uint32(cc.LearnEvery)
	}
	rules := func(m map[string]config.CompressRule) map[string]compress.Rule {
		out := make(map[string]compress.Rule, len(m))
		for k, r := range m {
			out[k] = compress.Rule{Ratio: r.Ratio, Tokens: r.Tokens, Off: r.Off}
		}
		return out
	}
	o := compress.StageOptions{
		Models: rules(cc.Models), Tiers: rules(cc.Tiers), Ratio: cc.Ratio, Header: cc.HeaderAllowed(),
		MinTokens: cc.MinTokens, Tools: cc.Tools, ResponseFormat: cc.ResponseFormat,
		Counter: counter, Counters: map[string]models.TokenCounter{}, Registry: reg, Logger: log,
	}
	for model, path := range cc.Tokenizers {
		c, err := compress.NewCounter(path)
		if err != nil {
			log.Warn("compress: token counts for this model fall back to an estimate", "model", model, "err", err)
		}
		o.Counters[model] = c
	}
	if cc.Mode == "model" {
		o.Scorer = &compress.LlamaScorer{URL: cc.Engine.URL, TopK: cc.Engine.TopK, MaxWords: cc.Engine.MaxWords,
			Timeout: cc.Engine.Timeout, Client: &http.Client{}, Logger: log}
	}
	log.Info("prompt compression", "mode", cc.Mode, "models", len(cc.Models), "tiers", len(cc.Tiers),
		"header", cc.HeaderAllowed(), "ratio", cc.Ratio)
	return compress.NewStage(next, comp, o), nil
}
