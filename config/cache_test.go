package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCacheDefaults(t *testing.T) {
	model := writeModel(t)
	home := t.TempDir()
	c, err := Parse([]byte("engines:\n  - name: a\n    model_path: "+model+"\n"), "t.yaml", mapEnv(map[string]string{"HOME": home}))
	if err != nil {
		t.Fatal(err)
	}
	cc := c.Cache
	if !cc.On() || !cc.SemanticOn() || cc.Store != "bolt" || cc.TTL != 24*time.Hour || *cc.MaxTemperature != 0.3 ||
		cc.Semantic.Embedder.Kind != "builtin" || cc.MaxEntries != 100_000 {
		t.Fatalf("defaults: %+v", cc)
	}
	if want := filepath.Join(home, ".cache", "sluice", "answers", "cache.db"); cc.Path != want {
		t.Fatalf("path %q, want %q", cc.Path, want)
	}
}

func TestCacheConfig(t *testing.T) {
	model := writeModel(t)
	env := mapEnv(map[string]string{"HOME": t.TempDir(), "SLUICE_REDIS_URL": "redis://127.0.0.1:6379/1"})
	base := "engines:\n  - name: a\n    model_path: " + model + "\n"
	c, err := Parse([]byte(base+"cache:\n  store: redis\n  ttl: 1h\n  max_temperature: 0\n  semantic:\n    thresholds: {tiny: 0.8}\n    embedder: {kind: engine, url: 'http://127.0.0.1:8081/v1', model: e}\n"), "t.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Cache.RedisURL != "redis://127.0.0.1:6379/1" || c.Cache.Semantic.Thresholds["tiny"] != 0.8 || *c.Cache.MaxTemperature != 0 {
		t.Fatalf("%+v", c.Cache)
	}
	off, err := Parse([]byte(base+"cache:\n  enabled: false\n"), "t.yaml", env)
	if err != nil || off.Cache.On() || off.Cache.SemanticOn() {
		t.Fatalf("enabled: false: %v %+v", err, off.Cache)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"cache:\n  store: disk\n", "cache.store: must be bolt, memory or redis"},
		{"cache:\n  ttl: 10ms\n", "cache.ttl: must be at least 1s"},
		{"cache:\n  semantic:\n    threshold: 1.5\n", "cache.semantic.threshold"},
		{"cache:\n  semantic:\n    index_cpu: -0.5\n", "cache.semantic.index_cpu"},
		{"cache:\n  semantic:\n    index_cpu: 2\n", "cache.semantic.index_cpu"},
		{"cache:\n  semantic:\n    index_cpu: .nan\n", "cache.semantic.index_cpu"},
		{"cache:\n  semantic:\n    embedder: {kind: engine}\n", "cache.semantic.embedder: kind engine needs url and model"},
		{"cache:\n  semantic:\n    embedder: {kind: bert}\n", "cache.semantic.embedder.kind"},
		{"cache:\n  sematic: {}\n", "unknown key cache.sematic"},
		// Every cacheable question is embedded: a cloud embedder would take local-only
		// and EU keys' prompts off the box.
		{"cache:\n  semantic:\n    embedder: {kind: engine, url: 'https://api.openai.com/v1', model: e}\n", "cache.semantic.embedder.region: is required"},
		{"cache:\n  semantic:\n    embedder: {kind: engine, url: 'https://api.openai.com/v1', model: e, region: eu}\n", "cache.semantic.embedder.region: must be local"},
	} {
		_, err := Parse([]byte(base+tc.yaml), "t.yaml", mapEnv(map[string]string{"HOME": t.TempDir()}))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
	_, err = Parse([]byte(base+"cache:\n  store: redis\n"), "t.yaml", mapEnv(map[string]string{"HOME": t.TempDir()}))
	if err == nil || !strings.Contains(err.Error(), "cache.redis_url") {
		t.Errorf("redis without url: %v", err)
	}
}
