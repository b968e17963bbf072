package route

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/router/classify"
)

// mtBenchFixture writes a small MT-Bench in RouteLLM's layout: coding and math questions
// where the strong model is far better, writing ones where both are alike.
func mtBenchFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	base := filepath.Join(dir, "routellm_mt_bench")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	var q, j strings.Builder
	qs := []struct {
		cat, t1, t2  string
		strong, weak int
	}{
		{"coding", "Write a Python function to merge two sorted arrays in O(n) time.", "Now do it in C++ without recursion.", 9, 4},
		{"math", "Solve for x: 3x + 7 = 25. Then compute the probability of rolling a 6 twice.", "How many integers satisfy |x - 2| < 5?", 10, 5},
		{"writing", "Write a short poem about the sea.", "Make it rhyme.", 9, 9},
		{"roleplay", "Pretend you are a pirate and greet me.", "Now say goodbye.", 8, 8},
		{"writing", "Draft an email inviting my team to lunch.", "Make it shorter.", 9, 8},
	}
	for i, x := range qs {
		fmt.Fprintf(&q, `{"question_id": %d, "category": %q, "turns": [%q, %q]}`+"\n", i+1, x.cat, x.t1, x.t2)
		for turn := 1; turn <= 2; turn++ {
			fmt.Fprintf(&j, `{"question_id": %d, "model": %q, "score": %d, "turn": %d}`+"\n", i+1, classify.RouteLLMStrong, x.strong, turn)
			fmt.Fprintf(&j, `{"question_id": %d, "model": %q, "score": %d, "turn": %d}`+"\n", i+1, classify.RouteLLMWeak, x.weak, turn)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "question.jsonl"), []byte(q.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "judgements.jsonl"), []byte(j.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRunClassify(t *testing.T) {
	res, err := RunClassify(context.Background(), ClassifyConfig{DataDir: mtBenchFixture(t), LatencyFor: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Calls < 30 || res.NS <= 0 || res.MeanNS <= 0 || res.P99NS < res.P50NS || res.LongNS <= 0 {
		t.Errorf("latency figures %+v", res)
	}
	if res.PerTurn.N != 10 || res.FirstTurn.N != 5 {
		t.Errorf("evaluated %d turns, %d questions", res.PerTurn.N, res.FirstTurn.N)
	}
	var rep Report
	rep.Add(res)
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"== classify ==", "sluice classifier", "keyword regex", "random (expected)", "MT-Bench"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
	b, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var figs map[string]any
	if err := json.Unmarshal(b, &figs); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"classify_ns", "apgr_mt_bench", "strong_share_at_95_mt_bench", "regex_apgr_mt_bench", "parts", "targets_met"} {
		if _, ok := figs[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	if a := figs["apgr_mt_bench"].(float64); a < 0 || a > 1.5 {
		t.Errorf("apgr_mt_bench %v", a)
	}
}

func TestRunClassifyErrors(t *testing.T) {
	if _, err := RunClassify(context.Background(), ClassifyConfig{DataDir: t.TempDir()}); err == nil {
		t.Error("no MT-Bench data: no error")
	}
	if _, err := RunClassify(context.Background(), ClassifyConfig{DataDir: mtBenchFixture(t), Weights: "/nonexistent.json"}); err == nil {
		t.Error("missing weights file: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := RunClassify(ctx, ClassifyConfig{DataDir: mtBenchFixture(t)}); err == nil {
		t.Error("cancelled: no error")
	}
}

// section is a second part's results, to check that parts merge.
type section struct {
	name   string
	figs   map[string]any
	misses []string
}

func (s section) Name() string { return s.name }
func (s section) WriteTable(w io.Writer) error {
	_, err := fmt.Fprintf(w, "%s table\n", s.name)
	return err
}
func (s section) Figures() map[string]any { return s.figs }
func (s section) Misses() []string        { return s.misses }

func TestReportMergesParts(t *testing.T) {
	var rep Report
	rep.Add(section{name: "a", figs: map[string]any{"x": 1}})
	rep.Add(section{name: "b", figs: map[string]any{"y": 2.5}, misses: []string{"y too small"}})
	b, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"parts":["a","b"],"targets_met":false,"targets_missed":["b: y too small"],"x":1,"y":2.5}`
	if string(b) != want {
		t.Errorf("JSON %s\nwant %s", b, want)
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "== a ==\na table\n\n== b ==\nb table") || !strings.Contains(s, "target missed: b: y too small") {
		t.Errorf("table:\n%s", s)
	}
	rep.Add(section{name: "c", figs: map[string]any{"x": 3}})
	if _, err := rep.JSON(); err == nil {
		t.Error("duplicate figure: no error")
	}
	var clash Report
	clash.Add(section{name: "d", figs: map[string]any{"parts": 1}})
	if _, err := clash.JSON(); err == nil {
		t.Error("reserved figure: no error")
	}
	var ok Report
	ok.Add(section{name: "e", figs: map[string]any{}})
	if b, _ := ok.JSON(); !strings.Contains(string(b), `"targets_met":true,"targets_missed":[]`) {
		t.Errorf("all met: %s", b)
	}
}
