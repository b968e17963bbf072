package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/ledger"
)

// TestKeysAndUsageCommands: `sluice keys` and `sluice usage` on the store itself.
func TestKeysAndUsageCommands(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SLUICE_DATA", dir)
	path := filepath.Join(dir, "ledger.db")
	ctx := context.Background()
	sh := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if code := run(ctx, args, &out, &out); code != 0 {
			t.Fatalf("sluice %s: exit %d\n%s", strings.Join(args, " "), code, out.String())
		}
		return out.String()
	}
	out := sh("keys", "create", "--name", "support-bot", "--tenant", "acme", "--residency", "eu", "--models", "tiny,small",
		"--rpm", "60", "--daily-usd", "2.5")
	m := regexp.MustCompile(`created (key-[0-9a-f]{12}) \(tenant acme, residency eu\)\n.*\n(sk-sluice-[0-9a-f]{48})\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("create said:\n%s", out)
	}
	id := m[1]
	list := sh("keys", "list")
	if !strings.Contains(list, id) || !strings.Contains(list, "support-bot") || !strings.Contains(list, "tiny,small") ||
		!strings.Contains(list, "2.5") || !strings.Contains(list, "active") || strings.Contains(list, m[2]) {
		t.Fatalf("list:\n%s", list)
	}
	sh("keys", "revoke", id)
	if list := sh("keys", "list", "--ledger", path); !strings.Contains(list, "revoked") {
		t.Fatalf("after revoke:\n%s", list)
	}
	var errOut bytes.Buffer
	if code := run(ctx, []string{"keys", "create", "--residency", "mars"}, &errOut, &errOut); code == 0 || !strings.Contains(errOut.String(), "residency") {
		t.Errorf("a bad residency: exit %d\n%s", code, errOut.String())
	}

	// Usage from records in the store.
	s, err := ledger.OpenSQLite(path, false)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := s.Apply(ctx, []ledger.Record{
		{UID: "a", Time: now, KeyID: id, Feature: "search", Model: "tiny", Pool: "box", CostUSD: 0.001, ReferenceUSD: 0.004,
			RefCompressedUSD: 0.004, ServedRefUSD: 0.004, PromptTokens: 10, CompletionTokens: 5, Status: 200},
		{UID: "b", Time: now, KeyID: id, Feature: "chat", Model: "tiny", Pool: "box", CostUSD: 0.002, Status: 200},
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	table := sh("usage", "--group-by", "feature")
	if !strings.Contains(table, "search") || !strings.Contains(table, "SAVED $") || !strings.Contains(table, "total") {
		t.Fatalf("usage table:\n%s", table)
	}
	lines, err := csv.NewReader(strings.NewReader(sh("usage", "--group-by", "feature", "--feature", "search", "--csv"))).ReadAll()
	if err != nil || len(lines) != 2 || lines[0][0] != "feature" || lines[1][0] != "search" || lines[1][1] != "1" {
		t.Fatalf("usage CSV: %v %q", err, lines)
	}
}
