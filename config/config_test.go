package config

import (
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
	if got := c.Server.APIKeys; len(got) != 2 || got[0] != "sk-secret" || got[1] != "sk-default" {
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
	f.Add([]byte("engines:\n  - name: a\n    kind: openai\n    url: http://x:1\nbatch: {enabled: true, concurrency: 2, max_file_bytes: 9, retry_backoff: 1s}\n"))
	env := mapEnv(map[string]string{"HOME": "/nonexistent"})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b, "fuzz.yaml", env)
		if err == nil && c.Validate() != nil {
			t.Fatalf("Parse accepted a config that Validate rejects")
		}
	})
}
