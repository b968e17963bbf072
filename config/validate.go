package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Finish applies defaults and validates a Config built in code (flags).
func (c *Config) Finish(env Env) error {
	if env == nil {
		env = OSEnv
	}
	c.applyDefaults(env)
	return c.Validate()
}

func (c *Config) applyDefaults(env Env) {
	cache := CacheDir(env)
	s := &c.Server
	if s.Listen == "" {
		s.Listen = "127.0.0.1:8080"
	}
	if s.MaxBodyBytes == 0 {
		s.MaxBodyBytes = 8 << 20
	}
	if s.RequestTimeout == 0 {
		s.RequestTimeout = 10 * time.Minute
	}
	if s.ShutdownTimeout == 0 {
		s.ShutdownTimeout = 30 * time.Second
	}
	s.Limits.applyDefaults()
	if c.Scheduler.MaxQueue == 0 {
		c.Scheduler.MaxQueue = 256
	}
	if c.Scheduler.RefreshEvery == 0 {
		c.Scheduler.RefreshEvery = 2 * time.Second
	}
	if c.Scheduler.Policy == "" {
		c.Scheduler.Policy = "sluice"
	}
	if c.Scheduler.SLO == (SLO{}) {
		c.Scheduler.SLO.Interactive = 5 * time.Second
	}
	if c.Pricing.CPUPerHour == 0 {
		c.Pricing.CPUPerHour = 0.05
	}
	if c.GPU.RefreshEvery == 0 {
		c.GPU.RefreshEvery = 5 * time.Second
	}
	if c.GPU.Headroom == 0 {
		c.GPU.Headroom = 0.10
	}
	if c.Server.AdminKeyFile == "" {
		c.Server.AdminKeyFile = filepath.Join(cache, "admin-key")
	}
	c.Ledger.applyDefaults(env)
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	c.Compress.applyDefaults()
	c.Cache.applyDefaults(env)
	c.Batch.applyDefaults(env)
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Tokenizer == "" {
		p := filepath.Join(cache, "vocab", "llama2", "tokenizer.json")
		if _, err := os.Stat(p); err == nil {
			c.Tokenizer = p
		}
	}
	kept := c.Engines[:0]
	for _, e := range c.Engines {
		if e.Kind == "" {
			e.Kind = "llamacpp"
		}
		if e.Kind == "llamacpp" && e.URL == "" {
			if e.Optional && e.ModelPath != "" {
				if _, err := os.Stat(e.ModelPath); err != nil {
					continue
				}
			}
			if e.Binary == "" {
				e.Binary = DefaultLlamaServer(env)
			}
			if len(e.Models) == 0 && e.ModelPath != "" {
				kind := "chat"
				if e.Embedding {
					kind = "embedding"
				}
				e.Models = []Model{{Name: strings.TrimSuffix(filepath.Base(e.ModelPath), ".gguf"), Kind: kind}}
			}
		}
		if e.Slots == 0 {
			e.Slots = 4
		}
		if e.Context == 0 {
			e.Context = 2048
		}
		applyCloudDefaults(&e)
		for i := range e.Models {
			if e.Models[i].Upstream == "" {
				e.Models[i].Upstream = e.Models[i].Name
			}
			if e.Models[i].Kind == "" {
				e.Models[i].Kind = "chat"
			}
		}
		kept = append(kept, e)
	}
	c.Engines = kept
	c.Routing.applyDefaults(c)
}

// DefaultLlamaServer finds llama-server: $SLUICE_LLAMA_SERVER, the build cache
// (scripts/build-llama-server.sh), else "llama-server" on $PATH.
func DefaultLlamaServer(env Env) string {
	if p, ok := env("SLUICE_LLAMA_SERVER"); ok && p != "" {
		return p
	}
	p := filepath.Join(CacheDir(env), "engines", "llama-server-"+LlamaServerVersion+"-cpu", "llama-server")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "llama-server"
}

// Validate checks the configuration; messages name the offending field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if _, _, err := net.SplitHostPort(c.Server.Listen); err != nil {
		bad("server.listen", "%q is not host:port", c.Server.Listen)
	}
	if c.Server.MaxBodyBytes < 1024 {
		bad("server.max_body_bytes", "must be at least 1024, got %d", c.Server.MaxBodyBytes)
	}
	if c.Server.RequestTimeout < time.Second {
		bad("server.request_timeout", "must be at least 1s, got %v", c.Server.RequestTimeout)
	}
	c.Server.Limits.validate(bad)
	c.Server.validateKeys(bad)
	c.Ledger.validate(bad)
	for i, k := range c.Server.AdminKeys {
		if k == "" {
			bad(fmt.Sprintf("server.admin_keys[%d]", i), "is empty (an unset environment variable?)")
		}
	}
	for k, v := range c.Pricing.GPUPerHour {
		if v < 0 {
			bad("pricing.gpu_per_hour."+k, "must not be negative")
		}
	}
	for k, v := range c.Pricing.Cloud {
		if v.Input < 0 || v.Output < 0 {
			bad("pricing.cloud."+k, "prices must not be negative")
		}
	}
	if c.Pricing.CPUPerHour < 0 {
		bad("pricing.cpu_per_hour", "must not be negative")
	}
	if c.GPU.Headroom < 0 || c.GPU.Headroom >= 1 {
		bad("gpu.headroom", "must be in [0, 1), got %g", c.GPU.Headroom)
	}
	c.Cache.validate(bad)
	switch c.Scheduler.Policy {
	case "sluice", "least-loaded", "round-robin":
	default:
		bad("scheduler.policy", "must be sluice, least-loaded or round-robin, got %q", c.Scheduler.Policy)
	}
	if c.Scheduler.SLO.Interactive < 0 || c.Scheduler.SLO.Batch < 0 {
		bad("scheduler.slo", "must not be negative")
	}
	if w := c.Scheduler.Weights; w.Prefix < 0 || w.Load < 0 || w.KV < 0 || w.GPU < 0 {
		bad("scheduler.weights", "must not be negative")
	}
	for k, v := range c.Scheduler.TenantWeights {
		if v <= 0 {
			bad("scheduler.tenant_weights."+k, "must be positive")
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "must be text or json, got %q", c.Log.Format)
	}
	c.Compress.validate(bad)
	c.Routing.validate(c, bad)
	c.Batch.validate(bad)
	if len(c.Engines) == 0 {
		bad("engines", "no engines configured: add one, or pass --model, --ollama or --upstream")
	}
	names := map[string]bool{}
	models := map[string]string{}
	for i, e := range c.Engines {
		p := fmt.Sprintf("engines[%d]", i)
		if e.Name == "" {
			bad(p+".name", "is required")
		} else if names[e.Name] {
			bad(p+".name", "%q is used by another engine", e.Name)
		}
		names[e.Name] = true
		switch e.Kind {
		case "llamacpp":
			if e.URL == "" {
				if e.ModelPath == "" {
					bad(p, "a llamacpp engine needs url (a running llama-server) or model_path (a GGUF file sluice runs)")
				} else if _, err := os.Stat(e.ModelPath); err != nil {
					bad(p+".model_path", "%s does not exist: run `make run` (it builds llama-server and generates the demo model) or point it at a GGUF file", e.ModelPath)
				}
			}
		case "ollama", "openai":
			if e.URL == "" && !e.Cloud() {
				bad(p+".url", "is required for a %s engine", e.Kind)
			}
		case KindAnthropic, KindGemini:
		default:
			bad(p+".kind", "must be llamacpp, ollama, openai, anthropic or gemini, got %q", e.Kind)
		}
		validateCloud(p, &e, bad)
		if e.URL != "" {
			if u, err := url.Parse(e.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad(p+".url", "%q is not an http(s) URL", e.URL)
			}
		}
		if e.Slots < 1 || e.Slots > 1024 {
			bad(p+".slots", "must be between 1 and 1024, got %d", e.Slots)
		}
		if e.KVTokens < 0 {
			bad(p+".kv_tokens", "must not be negative")
		}
		if e.MaxLoadedModels < 0 {
			bad(p+".max_loaded_models", "must not be negative")
		}
		if e.PricePerHour != nil && *e.PricePerHour < 0 {
			bad(p+".price_per_hour", "must not be negative")
		}
		for j, g := range e.GPUs {
			if g < 0 {
				bad(fmt.Sprintf("%s.gpus[%d]", p, j), "must be a GPU index (0 or more)")
			}
		}
		if e.Context < 16 {
			bad(p+".context", "must be at least 16, got %d", e.Context)
		}
		for j, m := range e.Models {
			mp := fmt.Sprintf("%s.models[%d]", p, j)
			if m.Name == "" {
				bad(mp+".name", "is required")
			}
			if m.Kind != "chat" && m.Kind != "embedding" {
				bad(mp+".kind", "must be chat or embedding, got %q", m.Kind)
			}
			for _, n := range append([]string{m.Name}, m.Aliases...) {
				if prev, dup := models[n]; dup && n != "" {
					bad(mp, "model name %q is already served by %s", n, prev)
				}
				models[n] = mp
			}
		}
	}
	return errors.Join(errs...)
}

// AdminKeyDigests returns the SHA-256 digests of the configured admin keys.
func (s *Server) AdminKeyDigests() [][32]byte { return digests(s.AdminKeys) }

func digests(keys []string) [][32]byte {
	out := make([][32]byte, 0, len(keys))
	for _, k := range keys {
		if h, ok := strings.CutPrefix(k, "sha256:"); ok {
			var d [32]byte
			b, _ := hex.DecodeString(h)
			copy(d[:], b)
			out = append(out, d)
			continue
		}
		out = append(out, sha256.Sum256([]byte(k)))
	}
	return out
}
