package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestAnthropicNodeSDK runs e2e/js/anthropic.test.mjs (the official Anthropic npm SDK)
// against the routed stack's POST /v1/messages.
func TestAnthropicNodeSDK(t *testing.T) {
	if _, err := os.Stat(filepath.Join("js", "node_modules", "@anthropic-ai", "sdk")); err != nil {
		t.Fatalf("npm packages missing (%v): run `make npm` (scripts/npm-deps.sh)", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: %v", err)
	}
	st := startRoutedStack(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "anthropic.test.mjs")
	cmd.Dir = "js"
	cmd.Env = append(os.Environ(), "SLUICE_URL="+st.URL, "SLUICE_API_KEY="+keyAny)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("Anthropic npm SDK tests failed: %v", err)
	}
}
