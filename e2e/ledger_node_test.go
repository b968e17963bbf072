package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestLedgerWithNodeSDK runs e2e/js/ledger.test.mjs (the official OpenAI npm SDK)
// against a real `sluice serve` with keys and a rate limit.
func TestLedgerWithNodeSDK(t *testing.T) {
	if _, err := os.Stat(filepath.Join("js", "node_modules", "openai")); err != nil {
		t.Fatalf("npm packages missing (%v): run `make npm` (scripts/npm-deps.sh)", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: %v", err)
	}
	bin := buildSluice(t)
	dir := t.TempDir()
	keys := "    - key: sk-node\n      name: node\n    - key: sk-node-limited\n      requests_per_minute: 1\n"
	p := startSluice(t, bin, ledgerConfig(t, dir, "", keys, ""), dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "ledger.test.mjs")
	cmd.Dir = "js"
	cmd.Env = append(os.Environ(), "SLUICE_BASE_URL="+p.URL+"/v1", "SLUICE_API_KEY=sk-node", "SLUICE_LIMITED_KEY=sk-node-limited")
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("npm SDK ledger tests failed: %v", err)
	}
}
