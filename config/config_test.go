package config

import (
	"crypto/sha256"

	"github.com/sluice-llm/sluice/models"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mapEnv(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeModel(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(p, []byte("GGUF"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseErrors(t *testing.T) {
	model := writeModel(t)
	env := mapEnv(map[string]string{"HOME": t.TempDir(), "M": model})
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top key", "servr: {}\n", "unknown key servr"},
		{"unknown nested key", "server:\n  listn: x\n", "unknown key server.listn"},
		{"unknown key in list", "engines:\n  - name: a\n    model_path: ${M}\n    slotz: 2\n", "unknown key engines[0].slotz"},
		{"unknown key in model", "engines:\n  - name: a\n    model_path: ${M}\n    models:\n      - name: x\n        alias: y\n", "unknown key engines[0].models[0].alias"},
		{"missing env", "server:\n  api_keys: [\"${NOPE}\"]\nengines:\n  - name: a\n    model_path: ${M}\n", "environment variable NOPE is not set"},
		{"bad kind", "engines:\n  - name: a\n    kind: tgi\n    url: http://x:1\n", "engines[0].kind: must be llamacpp, ollama, openai, anthropic or gemini"},
		{"no engines", "server: {}\n", "engines: no engines configured"},
		{"missing model file", "engines:\n  - name: a\n    model_path: /nonexistent.gguf\n", "engines[0].model_path: /nonexistent.gguf does not exist"},
		{"dup names", "engines:\n  - name: a\n    model_path: ${M}\n  - name: a\n    model_path: ${M}\n", "engines[1].name: \"a\" is used by another engine"},
		{"ollama needs url", "engines:\n  - name: o\n    kind: ollama\n", "engines[0].url: is required"},
		{"bad listen", "server:\n  listen: nope\nengines:\n  - name: a\n    model_path: ${M}\n", "server.listen"},
		{"wrong type", "server:\n  max_body_bytes: lots\nengines:\n  - name: a\n    model_path: ${M}\n", "cannot unmarshal"},
		{"bad digest", "server:\n  api_keys: [\"sha256:zz\"]\nengines:\n  - name: a\n    model_path: ${M}\n", "server.api_keys[0]: sha256: digest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "test.yaml", env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseDefaultsAndExpansion(t *testing.T) {
	model := writeModel(t)
	env := mapEnv(map[string]string{"HOME": t.TempDir(), "M": model, "KEY": "sk-secret"})
	c, err := Parse([]byte(`
server:
  api_keys: ["${KEY}", "${OTHER:-sk-default}"]
engines:
  - name: local
    model_path: ${M}
  - name: ol
    kind: ollama
    url: http://127.0.0.1:11434
`), "t.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.Listen != "127.0.0.1:8080" || c.Server.RequestTimeout != 10*time.Minute || c.Server.MaxBodyBytes != 8<<20 {
		t.Errorf("server defaults = %+v", c.Server)
	}
	if got := c.Server.APIKeys; len(got) != 2 || got[0].Key != "sk-secret" || got[1].Key != "sk-default" {
		t.Errorf("api keys = %v", got)
	}
	e := c.Engines[0]
	if e.Kind != "llamacpp" || e.Slots != 4 || e.Context != 2048 || len(e.Models) != 1 || e.Models[0].Name != "m" || e.Models[0].Upstream != "m" {
		t.Errorf("llamacpp defaults = %+v", e)
	}
	if len(c.Server.KeyDigests()) != 2 {
		t.Errorf("digests")
	}
}

func TestDefaultConfig(t *testing.T) {
	cache := t.TempDir()
	env := mapEnv(map[string]string{"SLUICE_CACHE": cache})
	// Without the demo model the embedded default explains what to run.
	if _, err := Default(env); err == nil || !strings.Contains(err.Error(), "make run") {
		t.Fatalf("default without model: err = %v", err)
	}
	if err := os.MkdirAll(filepath.Join(cache, "models"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cache, "models", "tiny.gguf"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Default(env)
	if err != nil {
		t.Fatal(err)
	}
	// The optional embedding engine is left out when its model is missing.
	if len(c.Engines) != 1 || c.Engines[0].ModelPath != filepath.Join(cache, "models", "tiny.gguf") {
		t.Fatalf("engines = %+v", c.Engines)
	}
	if c.Engines[0].Models[0].Name != "tiny" || c.Engines[0].Models[0].Aliases[0] != "sluice-demo" {
		t.Fatalf("models = %+v", c.Engines[0].Models)
	}
}

func TestExpandString(t *testing.T) {
	env := mapEnv(map[string]string{"A": "x", "E": ""})
	tests := []struct{ in, want, err string }{
		{"plain", "plain", ""},
		{"${A}/b", "x/b", ""},
		{"${E:-d}", "d", ""},
		{"${E}", "", ""},
		{"$$A", "$A", ""},
		{"${B:-}", "", ""},
		{"${B}", "", "B is not set"},
		{"${A", "", "unclosed"},
	}
	for _, tt := range tests {
		got, err := ExpandString(tt.in, env)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ExpandString(%q) err = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ExpandString(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("server:\n  listen: 127.0.0.1:1\n"))
	f.Add([]byte("engines:\n  - name: a\n    kind: openai\n    url: http://x:1\n"))
	f.Add([]byte("server:\n  api_keys:\n    - sk-a\n    - key: sk-b\n      residency: eu\n      daily_usd: 1\nengines:\n  - name: a\n    kind: openai\n    url: http://x:1\n"))
	f.Add([]byte("server:\n  api_keys: [{key: 'sha256:00', tiers: [small]}, 3, null]\nledger: {durability: power, batch_size: 0}\n"))
	f.Add([]byte("engines:\n  - name: a\n    kind: openai\n    url: http://x:1\nbatch: {enabled: true, concurrency: 2, max_file_bytes: 9, retry_backoff: 1s}\n"))
	env := mapEnv(map[string]string{"HOME": "/nonexistent"})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b, "fuzz.yaml", env)
		if err == nil && c.Validate() != nil {
			t.Fatalf("Parse accepted a config that Validate rejects")
		}
	})
}

func TestAPIKeyObjects(t *testing.T) {
	model := writeModel(t)
	env := mapEnv(map[string]string{"HOME": t.TempDir(), "M": model, "K": "sk-team"})
	c, err := Parse([]byte(`
server:
  api_keys:
    - ${K}
    - sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    - key: sk-eu
      name: support
      tenant: acme
      residency: eu
      tiers: [small]
      models: [tiny]
      no_cache: true
      requests_per_minute: 60
      tokens_per_minute: 1000
      daily_usd: 5
      monthly_usd: 100
engines:
  - name: a
    model_path: ${M}
`), "t.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	ks := c.Server.APIKeys
	if len(ks) != 3 || ks[0].Key != "sk-team" || ks[0].Name != "" {
		t.Fatalf("keys = %+v", ks)
	}
	// "test" hashes to 9f86d0...: a digest entry matches the key it is the digest of.
	if ks[1].Digest() != sha256.Sum256([]byte("test")) {
		t.Errorf("digest entry = %x", ks[1].Digest())
	}
	p := ks[2].Policy()
	if p.ID != models.KeyID(sha256.Sum256([]byte("sk-eu"))) || p.Name != "support" || p.Tenant != "acme" ||
		p.Residency != "eu" || len(p.Tiers) != 1 || p.Models[0] != "tiny" || !p.NoCache ||
		p.RequestsPerMinute != 60 || p.TokensPerMinute != 1000 || p.DailyUSD != 5 || p.MonthlyUSD != 100 || !p.Limited() {
		t.Errorf("policy = %+v", p)
	}
	if p0 := ks[0].Policy(); p0.Tenant != p0.ID || p0.Residency != models.ResidencyAny || p0.Limited() {
		t.Errorf("plain key policy = %+v", p0)
	}
	if strings.Contains(p.ID, "sk-eu") || len(p.ID) != len("key-")+12 {
		t.Errorf("id %q", p.ID)
	}
	home, _ := env("HOME")
	if c.Ledger.Path != filepath.Join(home, ".local", "share", "sluice", "ledger.db") || c.Ledger.Durability != "process" ||
		c.Ledger.References["small"] != "gpt-4o-mini" {
		t.Errorf("ledger defaults = %+v", c.Ledger)
	}
}

func TestAPIKeyErrors(t *testing.T) {
	model := writeModel(t)
	env := mapEnv(map[string]string{"HOME": t.TempDir(), "M": model})
	eng := "engines:\n  - name: a\n    model_path: ${M}\n"
	for _, tt := range []struct{ yaml, want string }{
		{"server:\n  api_keys:\n    - key: k\n      residency: mars\n" + eng, "server.api_keys[0].residency: must be local-only, eu or any"},
		{"server:\n  api_keys:\n    - key: k\n      tennant: x\n" + eng, "unknown key server.api_keys[0].tennant"},
		{"server:\n  api_keys:\n    - name: nokey\n" + eng, "server.api_keys[0]: is empty"},
		{"server:\n  api_keys: [a, a]\n" + eng, "server.api_keys[1]: is the same key as server.api_keys[0]"},
		{"server:\n  api_keys:\n    - key: k\n      daily_usd: -1\n" + eng, "limits must not be negative"},
		{"ledger:\n  durability: maybe\n" + eng, "ledger.durability: must be process or power"},
		{"ledger:\n  batch_sise: 3\n" + eng, "unknown key ledger.batch_sise"},
	} {
		_, err := Parse([]byte(tt.yaml), "t.yaml", env)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.yaml, err, tt.want)
		}
	}
}
