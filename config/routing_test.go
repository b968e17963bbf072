package config

import (
	"strings"
	"testing"
	"time"
)

func TestRoutingConfig(t *testing.T) {
	model := writeModel(t)
	env := mapEnv(map[string]string{"HOME": t.TempDir(), "M": model, "K": "sk"})
	c, err := Parse([]byte(`
engines:
  - name: gpu
    model_path: ${M}
    context: 4096
    models:
      - name: llama
        tier: large
        capabilities: [tools, json]
  - name: vllm
    kind: openai
    url: http://10.1.2.3:8000/v1
    models: [{name: qwen}]
  - name: openai-eu
    kind: openai
    url: https://eu.api.example.com/v1
    api_key: ${K}
    region: eu
    max_concurrency: 8
    models:
      - name: gpt-4o-mini
        tier: small
        context_window: 128000
      - name: big
        upstream: gpt-4o
        tier: frontier
        price: {input: 2.5, output: 10}
pricing:
  cloud:
    gpt-4o-mini: {input: 0.15, output: 0.6}
routing:
  tiers: [small, large, frontier]
  auto: {threshold: 0.4}
  overflow:
    breaker: {failures: 3}
`), "t.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Routing
	if r.DefaultTier != "small" || r.Auto.Weak != "small" || r.Auto.Strong != "large" || r.Auto.Threshold != 0.4 {
		t.Errorf("auto defaults = %+v", r)
	}
	if r.Fallback.MaxAttempts != 3 || r.Fallback.Backoff != 50*time.Millisecond || !r.Overflow.OverflowEnabled() ||
		r.Overflow.Breaker.Failures != 3 || r.Overflow.Breaker.Cooldown != 30*time.Second || r.Overflow.MaxConcurrency != 32 {
		t.Errorf("fallback/overflow defaults = %+v", r)
	}
	gpu, vllm, cloud := c.Engines[0], c.Engines[1], c.Engines[2]
	if gpu.Region != "local" || vllm.Region != "local" || cloud.Region != "eu" || cloud.Local() || !gpu.Local() {
		t.Errorf("regions = %q %q %q", gpu.Region, vllm.Region, cloud.Region)
	}
	if m := gpu.Models[0]; m.Tier != "large" || m.ContextWindow != 4096 || len(m.Capabilities) != 2 || m.Price != nil {
		t.Errorf("local model = %+v", m)
	}
	if m := vllm.Models[0]; m.Tier != "small" || m.ContextWindow != 0 {
		t.Errorf("vllm model = %+v", m)
	}
	if m := cloud.Models[0]; m.Price == nil || m.Price.Input != 0.15 || m.ContextWindow != 128000 {
		t.Errorf("cloud model priced from pricing.cloud: %+v", m)
	}
	if m := cloud.Models[1]; m.Price == nil || m.Price.Output != 10 || m.Tier != "frontier" {
		t.Errorf("cloud model with its own price: %+v", m)
	}
}

func TestRoutingConfigErrors(t *testing.T) {
	model := writeModel(t)
	env := mapEnv(map[string]string{"HOME": t.TempDir(), "M": model})
	local := "engines:\n  - name: a\n    model_path: ${M}\n"
	tests := []struct{ name, yaml, want string }{
		{"public url needs a region", "engines:\n  - name: c\n    kind: openai\n    url: https://api.example.com/v1\n", "engines[0].region: is required"},
		{"upper-case region", "engines:\n  - name: c\n    kind: openai\n    url: https://api.example.com/v1\n    region: EU\n", "lower-case region"},
		{"unknown tier", local + "    models:\n      - name: m\n        tier: huge\n", "engines[0].models[0].tier: unknown tier \"huge\""},
		{"unknown capability", local + "    models:\n      - name: m\n        capabilities: [telepathy]\n", "capabilities[0]: \"telepathy\" is not one of"},
		{"unknown key beside inline ones", local + "    models:\n      - name: m\n        teir: small\n", "unknown key engines[0].models[0].teir"},
		{"auto tier not listed", local + "routing:\n  tiers: [a, b]\n  auto: {strong: c}\n", "routing.auto.strong: unknown tier \"c\""},
		{"tier named auto", local + "routing:\n  tiers: [auto]\n", "routing.tiers[0]"},
		{"duplicate tier", local + "routing:\n  tiers: [a, a]\n", "is listed twice"},
		{"threshold", local + "routing:\n  auto: {threshold: 2}\n", "routing.auto.threshold"},
		{"attempts", local + "routing:\n  fallback: {max_attempts: 50}\n", "routing.fallback.max_attempts"},
		{"negative price", "engines:\n  - name: c\n    kind: openai\n    url: https://x.example/v1\n    region: us\n    models:\n      - name: m\n        price: {input: -1, output: 1}\n", "prices must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "t.yaml", env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzParseRouting(f *testing.F) {
	f.Add([]byte("engines:\n  - name: c\n    kind: openai\n    url: https://x.example/v1\n    region: eu\n    models:\n      - {name: m, tier: large, context_window: 100, capabilities: [tools], price: {input: 1, output: 2}}\nrouting:\n  tiers: [small, large]\n  auto: {weak: small, strong: large, threshold: 0.3}\n  fallback: {max_attempts: 2, backoff: 10ms}\n  overflow: {max_wait: 1s, breaker: {failures: 2, cooldown: 5s}}\n"))
	f.Add([]byte("engines:\n  - name: o\n    kind: ollama\n    url: http://10.0.0.1:11434\nrouting:\n  tiers: [a]\n"))
	env := mapEnv(map[string]string{"HOME": "/nonexistent"})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b, "fuzz.yaml", env)
		if err != nil {
			return
		}
		if c.Validate() != nil {
			t.Fatalf("Parse accepted a config that Validate rejects")
		}
		for _, e := range c.Engines {
			if e.Region == "" {
				t.Fatalf("engine %s has no region after defaults", e.Name)
			}
			for _, m := range e.Models {
				if m.Tier == "" {
					t.Fatalf("model %s has no tier after defaults", m.Name)
				}
			}
		}
	})
}
