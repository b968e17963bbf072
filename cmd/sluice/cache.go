package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/cache"
	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/models"
)

// openCacheStore opens the configured store. A bolt file another process holds (a
// second sluice on the same box) falls back to memory with a warning: the cache fails
// open, it never stops sluice from serving.
func openCacheStore(ctx context.Context, c *config.Cache, log *slog.Logger) (cache.Store, error) {
	so := cache.StoreOptions{MaxEntries: c.MaxEntries, MaxBytes: c.MaxBytes}
	switch c.Store {
	case "memory":
		return cache.NewMemory(so), nil
	case "redis":
		return cache.OpenRedis(ctx, cache.RedisOptions{URL: c.RedisURL, Prefix: c.RedisPrefix})
	default:
		s, err := cache.OpenBolt(c.Path, so)
		if err != nil {
			log.Warn("cache: the embedded store cannot be opened; caching in memory only", "path", c.Path, "err", err)
			return cache.NewMemory(so), nil
		}
		return s, nil
	}
}

// buildCache wraps next in the answer cache when the config turns it on. The returned
// stage is nil when it is off.
func buildCache(ctx context.Context, cfg *config.Config, next cache.Opener, reg prometheus.Registerer,
	counter models.TokenCounter, log *slog.Logger) (*cache.Stage, cache.Store, error) {
	c := &cfg.Cache
	if !c.On() {
		return nil, nil, nil
	}
	st, err := openCacheStore(ctx, c, log)
	if err != nil {
		return nil, nil, fmt.Errorf("cache: %w", err)
	}
	var emb cache.Embedder
	if e := c.Semantic.Embedder; e.Kind == "engine" {
		emb, err = cache.NewEngine(cache.EngineOptions{URL: e.URL, Model: e.Model, APIKey: e.APIKey, MaxBatch: e.Batch})
		if err != nil {
			st.Close()
			return nil, nil, err
		}
	}
	stage, err := cache.New(next, cache.Options{
		Store: st, Embedder: emb, Semantic: c.SemanticOn(),
		Threshold: c.Semantic.Threshold, Thresholds: c.Semantic.Thresholds,
		Margin: c.Semantic.Margin, Substitution: c.Semantic.Substitution,
		MaxQuestionBytes: c.Semantic.MaxQuestionBytes, IndexCPU: c.Semantic.IndexCPU,
		TTL: c.TTL, MaxTemperature: c.MaxTemperature, Disabled: c.DisabledModels, StoreTruncated: c.StoreTruncated, Queue: c.WriteQueue,
		Counter: counter, Registry: reg, Logger: log,
	})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	log.Info("answer cache", "settings", c.String())
	return stage, st, nil
}
