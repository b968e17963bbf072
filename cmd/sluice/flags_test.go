package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// TestUpstreamKeyNotOnCommandLine: the key for --upstream comes from an environment
// variable or a file; a key on the command line (visible in ps) is refused.
func TestUpstreamKeyNotOnCommandLine(t *testing.T) {
	env := mapEnv(map[string]string{"HOME": t.TempDir(), "VLLM_KEY": "sk-from-env"})
	f := serveFlags{upstream: "http://127.0.0.1:9/v1", upstreamKeyEnv: "VLLM_KEY"}
	cfg, err := loadServeConfig(f, env)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Engines[0].APIKey; got != "sk-from-env" {
		t.Fatalf("key from env = %q", got)
	}
	file := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(file, []byte("sk-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f = serveFlags{upstream: "http://127.0.0.1:9/v1", upstreamKeyFile: file}
	if cfg, err = loadServeConfig(f, env); err != nil || cfg.Engines[0].APIKey != "sk-from-file" {
		t.Fatalf("key from file = %v, %v", cfg, err)
	}
	f = serveFlags{upstream: "http://127.0.0.1:9/v1", upstreamKeyEnv: "NOPE"}
	if _, err = loadServeConfig(f, env); err == nil || !strings.Contains(err.Error(), "NOPE") {
		t.Fatalf("unset variable: err = %v", err)
	}
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"serve", "--upstream", "http://127.0.0.1:9/v1", "--upstream-key", "sk-visible"}, &bytes.Buffer{}, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "--upstream-key-env") {
		t.Fatalf("--upstream-key: exit %d, stderr %q", code, stderr.String())
	}
}

// TestRefusesPublicWithoutKeys: a non-loopback address without API keys is refused
// unless forced; a loopback one says it accepts this machine only.
func TestRefusesPublicWithoutKeys(t *testing.T) {
	t.Setenv("SLUICE_CACHE", t.TempDir())
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"serve", "--upstream", "http://127.0.0.1:9/v1", "--listen", "0.0.0.0:0"}, &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "refusing to serve 0.0.0.0:0 without API keys") {
		t.Fatalf("public without keys: exit %d, stderr %q", code, stderr.String())
	}
	// Forced, or on loopback, it goes on (and fails later: nothing answers at :9).
	for _, args := range [][]string{{"--listen", "0.0.0.0:0", "--insecure-public"}, {"--listen", "127.0.0.1:0"}} {
		stdout.Reset()
		stderr.Reset()
		code = run(context.Background(), append([]string{"serve", "--upstream", "http://127.0.0.1:9/v1", "--ready-timeout", "1ms"}, args...), &stdout, &stderr)
		if strings.Contains(stderr.String(), "refusing") {
			t.Fatalf("%v: refused: %s", args, stderr.String())
		}
		want := "this machine only"
		if args[1] == "0.0.0.0:0" {
			want = "WARNING: serving 0.0.0.0:0 without API keys"
		}
		if !strings.Contains(stdout.String()+stderr.String(), want) {
			t.Fatalf("%v: output lacks %q:\n%s%s", args, want, stdout.String(), stderr.String())
		}
	}
}
