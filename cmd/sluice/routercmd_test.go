package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRouterTrainEval trains on a small labelled file, evaluates the weights on another,
// and scores a prompt with them: the commands a user retrains with.
func TestRouterTrainEval(t *testing.T) {
	dir := t.TempDir()
	var train, eval bytes.Buffer
	for i := range 120 {
		// The strong model wins on the coding prompts.
		code := i%3 == 0
		p := fmt.Sprintf("tell me about the garden party number %d", i)
		strong, weak := 1, 1
		if code {
			p = fmt.Sprintf("write a python function with recursion over an array, case %d", i)
			weak = 0
		}
		fmt.Fprintf(&train, `{"prompt": %q, "strong": %d, "weak": %d, "source": "synthetic"}`+"\n", p, strong, weak)
		if i < 30 {
			fmt.Fprintf(&eval, `{"messages": [{"role": "user", "content": %q}], "strong": %d, "weak": %d, "category": %q}`+"\n",
				p, 5+4*strong, 5+4*weak, map[bool]string{true: "coding", false: "chat"}[code])
		}
	}
	trainPath, evalPath := filepath.Join(dir, "train.jsonl"), filepath.Join(dir, "eval.jsonl")
	weights := filepath.Join(dir, "w.json")
	if err := os.WriteFile(trainPath, train.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(evalPath, eval.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"router", "train", "--data", trainPath, "--out", weights, "--hash-bits", "8", "--cv", "3"}, &stdout, &stderr); code != 0 {
		t.Fatalf("train: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "trained on 120 examples") || !strings.Contains(stdout.String(), "3-fold cross-validation") {
		t.Errorf("train output:\n%s", stdout.String())
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"router", "eval", "--data", evalPath, "--weights", weights, "--json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("eval: exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var c struct {
		N    int
		Rows []struct {
			Router string
			APGR   float64
		}
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &c); err != nil {
		t.Fatalf("last line is not the JSON figures: %v\n%s", err, stdout.String())
	}
	// A third of the requests gain 4 points, so even the oracle's APGR is 5/6; separable
	// data lets the classifier match it.
	if c.N != 30 || len(c.Rows) != 5 || c.Rows[0].Router != "sluice classifier" || c.Rows[4].Router != "oracle (knows the answers)" ||
		c.Rows[0].APGR < c.Rows[4].APGR-1e-9 {
		t.Errorf("eval figures %+v\n%s", c, stdout.String())
	}
	if !strings.Contains(stdout.String(), "coding") {
		t.Errorf("no per-category line:\n%s", stdout.String())
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"router", "score", "--weights", weights, "write python code with recursion", "hello"}, &stdout, &stderr); code != 0 {
		t.Fatalf("score: exit %d: %s", code, stderr.String())
	}
	if n := strings.Count(stdout.String(), "\n"); n != 2 {
		t.Errorf("score printed %d lines:\n%s", n, stdout.String())
	}

	// Errors name the line.
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte(`{"prompt": "x", "label": 1}`+"\n"+`{"prompt": "y"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"router", "train", "--data", bad, "--out", weights}, &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), "line 2") {
		t.Errorf("bad data: exit %d, %s", code, stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"router", "eval", "--data", bad}, &stdout, &stderr); code == 0 {
		t.Errorf("eval without scores: exit 0")
	}
}

// TestBenchRouteJSON runs `sluice bench route --json` on the published MT-Bench data with
// the embedded weights: its last line carries the figures the issue names.
func TestBenchRouteJSON(t *testing.T) {
	data := "../../../shared/data/route"
	if _, err := os.Stat(filepath.Join(data, "routellm_mt_bench")); err != nil {
		t.Fatalf("RouteLLM data not found at %s: %v", data, err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"bench", "route", "--data-dir", data, "--latency-for", "20ms", "--json", "--quiet"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var figs map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &figs); err != nil {
		t.Fatalf("last line: %v\n%s", err, stdout.String())
	}
	for _, k := range []string{"classify_ns", "apgr_mt_bench", "strong_share_at_95_mt_bench", "regex_apgr_mt_bench"} {
		if _, ok := figs[k]; !ok {
			t.Errorf("no %q in %s", k, lines[len(lines)-1])
		}
	}
	if code := run(context.Background(), []string{"bench", "route", "--part", "nope"}, &stdout, &stderr); code == 0 {
		t.Error("unknown part: exit 0")
	}
}
