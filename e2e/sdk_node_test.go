package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestNodeSDK runs e2e/js/sdk.test.mjs (the official OpenAI npm SDK) against the gateway.
// `make test` installs the npm packages first (scripts/npm-deps.sh).
func TestNodeSDK(t *testing.T) {
	if _, err := os.Stat(filepath.Join("js", "node_modules", "openai")); err != nil {
		t.Fatalf("npm packages missing (%v): run `make npm` (scripts/npm-deps.sh)", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: %v", err)
	}
	st := startStack(t, stackOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "sdk.test.mjs")
	cmd.Dir = "js"
	cmd.Env = append(os.Environ(), "SLUICE_BASE_URL="+st.URL+"/v1")
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("npm SDK tests failed: %v", err)
	}
}
