package config

import (
	"fmt"
	"path/filepath"
	"time"
)

// Cache configures the answer cache (docs/cache.md). It is on by default, with an
// embedded store that survives restarts and the built-in embedder: only requests
// sampled at temperature <= max_temperature (or with a seed) are cached, so turning it
// on changes no answer a client would not get again anyway.
type Cache struct {
	// Enabled turns the cache stage on (default true).
	Enabled *bool `yaml:"enabled"`
	// Store is bolt (default: an embedded file), memory or redis (shared by replicas).
	Store string `yaml:"store"`
	// Path of the bolt file (default $SLUICE_CACHE/answers/cache.db).
	Path string `yaml:"path"`
	// RedisURL for store: redis (default $SLUICE_REDIS_URL), e.g.
	// redis://:${REDIS_PASSWORD}@10.0.0.5:6379/0.
	RedisURL string `yaml:"redis_url"`
	// RedisPrefix of sluice's keys (default "sluice:cache:").
	RedisPrefix string `yaml:"redis_prefix"`
	// TTL of an entry (default 24h).
	TTL time.Duration `yaml:"ttl"`
	// MaxEntries and MaxBytes bound the local stores, least recently used out first
	// (defaults 100,000 and 512 MiB). Redis uses its own maxmemory.
	MaxEntries int   `yaml:"max_entries"`
	MaxBytes   int64 `yaml:"max_bytes"`
	// MaxTemperature: requests sampled above it (or with no temperature and no seed) are
	// not cached unless the client sends X-Sluice-Cache: force (default 0.3).
	MaxTemperature *float64 `yaml:"max_temperature"`
	// StoreTruncated also keeps answers cut at max_tokens (finish_reason "length");
	// by default only whole answers are kept.
	StoreTruncated bool `yaml:"store_truncated"`
	// DisabledModels are never cached.
	DisabledModels []string `yaml:"disabled_models"`
	// WriteQueue bounds answers waiting to be stored (default 1024).
	WriteQueue int           `yaml:"write_queue"`
	Semantic   CacheSemantic `yaml:"semantic"`
}

// CacheSemantic configures the semantic lookup.
type CacheSemantic struct {
	// Enabled turns it on (default true).
	Enabled *bool `yaml:"enabled"`
	// Threshold is the similarity a match needs (default 0.5 with the built-in embedder,
	// 0.92 with an engine's); Thresholds overrides it per model.
	Threshold  float64            `yaml:"threshold"`
	Thresholds map[string]float64 `yaml:"thresholds"`
	// Margin: refuse a match when another cached question with another answer comes
	// within this much (default 0.1; -1 turns the guard off).
	Margin float64 `yaml:"margin"`
	// Substitution: refuse a match when each question has more than this share of
	// content the other lacks (default 0.45; -1 turns the guard off).
	Substitution float64 `yaml:"substitution"`
	// MaxQuestionBytes: longer questions are matched exactly only (default 2048; -1: no
	// bound).
	MaxQuestionBytes int `yaml:"max_question_bytes"`
	// IndexCPU bounds the share of one CPU spent adding stored answers to the semantic
	// index (default 0.1; -1: no bound); answers over it wait in a backlog and match
	// exactly meanwhile.
	IndexCPU float64       `yaml:"index_cpu"`
	Embedder CacheEmbedder `yaml:"embedder"`
}

// CacheEmbedder chooses the embedder.
type CacheEmbedder struct {
	// Kind is builtin (default: no model needed) or engine (an OpenAI-compatible
	// /embeddings endpoint: llama-server --embeddings, Ollama).
	Kind   string `yaml:"kind"`
	URL    string `yaml:"url"` // base URL, e.g. http://127.0.0.1:8081/v1
	Model  string `yaml:"model"`
	APIKey string `yaml:"api_key"`
	// Batch is the most texts sent at once (default 64).
	Batch int `yaml:"batch"`
	// Region must be local (the default for a loopback or private address): every
	// cacheable question is embedded, local-only keys' too.
	Region string `yaml:"region"`
}

// On reports whether the cache stage runs.
func (c *Cache) On() bool { return c.Enabled == nil || *c.Enabled }

// SemanticOn reports whether the semantic lookup runs.
func (c *Cache) SemanticOn() bool {
	return c.On() && (c.Semantic.Enabled == nil || *c.Semantic.Enabled)
}

func (c *Cache) applyDefaults(env Env) {
	if c.Store == "" {
		c.Store = "bolt"
	}
	if c.Path == "" {
		c.Path = filepath.Join(CacheDir(env), "answers", "cache.db")
	}
	if c.RedisURL == "" {
		c.RedisURL, _ = env("SLUICE_REDIS_URL")
	}
	if c.TTL == 0 {
		c.TTL = 24 * time.Hour
	}
	if c.MaxEntries == 0 {
		c.MaxEntries = 100_000
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 512 << 20
	}
	if c.MaxTemperature == nil {
		t := 0.3
		c.MaxTemperature = &t
	}
	if c.WriteQueue == 0 {
		c.WriteQueue = 1024
	}
	if c.Semantic.Embedder.Kind == "" {
		c.Semantic.Embedder.Kind = "builtin"
	}
}

func (c *Cache) validate(bad func(path, format string, args ...any)) {
	switch c.Store {
	case "bolt", "memory":
	case "redis":
		if c.On() && c.RedisURL == "" {
			bad("cache.redis_url", "is required for store redis (or set SLUICE_REDIS_URL)")
		}
	default:
		bad("cache.store", "must be bolt, memory or redis, got %q", c.Store)
	}
	if c.TTL < time.Second {
		bad("cache.ttl", "must be at least 1s, got %v", c.TTL)
	}
	if c.MaxEntries < 0 || c.MaxBytes < 0 || c.WriteQueue < 0 {
		bad("cache", "max_entries, max_bytes and write_queue must not be negative")
	}
	if t := *c.MaxTemperature; t < 0 || t > 2 {
		bad("cache.max_temperature", "must be in [0, 2], got %g", t)
	}
	s := &c.Semantic
	if s.Threshold < 0 || s.Threshold > 1 {
		bad("cache.semantic.threshold", "must be in [0, 1], got %g", s.Threshold)
	}
	for m, v := range s.Thresholds {
		if v <= 0 || v > 1 {
			bad("cache.semantic.thresholds."+m, "must be in (0, 1], got %g", v)
		}
	}
	if s.Margin > 1 || s.Substitution > 1 {
		bad("cache.semantic", "margin and substitution must be at most 1")
	}
	if v := s.IndexCPU; v != 0 && v != -1 && !(v >= 0.001 && v <= 1) { // NaN too
		bad("cache.semantic.index_cpu", "must be a share of one CPU in [0.001, 1] (one writer indexes), 0 (the default, 0.1) or -1 (no bound), got %g", s.IndexCPU)
	}
	if s.MaxQuestionBytes < -1 {
		bad("cache.semantic.max_question_bytes", "must be positive, 0 (the default, 2048) or -1 (no bound), got %d", s.MaxQuestionBytes)
	}
	switch s.Embedder.Kind {
	case "builtin":
	case "engine":
		if s.Embedder.URL == "" || s.Embedder.Model == "" {
			bad("cache.semantic.embedder", "kind engine needs url and model")
		}
		if c.On() {
			sideServiceRegion("cache.semantic.embedder", s.Embedder.URL, &s.Embedder.Region, bad)
		}
	default:
		bad("cache.semantic.embedder.kind", "must be builtin or engine, got %q", s.Embedder.Kind)
	}
	if s.Embedder.Batch < 0 {
		bad("cache.semantic.embedder.batch", "must not be negative")
	}
}

// String describes the cache settings for the start-up log (no secrets).
func (c *Cache) String() string {
	if !c.On() {
		return "off"
	}
	where := c.Store
	if c.Store == "bolt" {
		where += " " + c.Path
	}
	return fmt.Sprintf("%s, ttl %v, semantic %v (%s)", where, c.TTL, c.SemanticOn(), c.Semantic.Embedder.Kind)
}
