package compress

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A SQuAD v1.1 file written here: the harness runs on any file of that shape.
func writeSQuAD(t *testing.T) string {
	t.Helper()
	paras := []string{
		"The Thames Barrier was completed in 1982. It protects London from storm surges coming up the estuary from the North Sea, and it is raised several times a year.",
		"The Danube flows through ten countries, more than any other river in the world. It empties into the Black Sea through a delta in Romania that is rich in birds.",
		"The Rhine rises in the Swiss Alps. It flows through Germany and the Netherlands to the North Sea and has been a waterway since Roman times.",
	}
	qa := [][2]string{{"When was the Thames Barrier completed?", "1982"}, {"How many countries does the Danube flow through?", "ten countries"},
		{"Where does the Rhine rise?", "the Swiss Alps"}}
	type q struct {
		Question string              `json:"question"`
		Answers  []map[string]string `json:"answers"`
	}
	type p struct {
		Context string `json:"context"`
		QAs     []q    `json:"qas"`
	}
	var ps []p
	for i, c := range paras {
		ps = append(ps, p{Context: c, QAs: []q{{Question: qa[i][0], Answers: []map[string]string{{"text": qa[i][1]}}}}})
	}
	b, _ := json.Marshal(map[string]any{"version": "1.1", "data": []any{map[string]any{"title": "Rivers", "paragraphs": ps}}})
	path := filepath.Join(t.TempDir(), "squad.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunOnSQuADFile(t *testing.T) {
	rep, err := Run(context.Background(), Config{SQuAD: writeSQuAD(t), Ratios: []float64{2}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 8 { // 2 sets × 4 methods
		t.Fatalf("%d rows", len(rep.Rows))
	}
	var buf bytes.Buffer
	if err := rep.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"sluice", "random", "first-n", "overlap", "targets at 2x"} {
		if !strings.Contains(buf.String(), m) {
			t.Errorf("table lacks %q:\n%s", m, buf.String())
		}
	}
	b, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"kept_2x_xquad_pct", "kept_2x_articles_pct", "ratio_achieved_2x", "tokens_per_sec_per_core"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %s: %s", k, b)
		}
	}
	if rep.Kept2xArticles != 100 || rep.Ratio2x < 1.5 {
		t.Errorf("articles kept %.0f%%, ratio %.2f", rep.Kept2xArticles, rep.Ratio2x)
	}
}

// On XQuAD (../shared/data), sluice keeps more answers than every
// baseline on whole articles at 2x and 3x. Quality, not speed: no timing is asserted.
func TestBeatsBaselinesOnXQuAD(t *testing.T) {
	path := "../../../shared/data/compress/xquad.en.json"
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("XQuAD (../shared/data/compress/xquad.en.json beside the repository): %v", err)
	}
	rep, err := Run(context.Background(), Config{SQuAD: path, Ratios: []float64{2, 3}, Limit: 300})
	if err != nil {
		t.Fatal(err)
	}
	best := map[string]float64{}
	for _, r := range rep.Rows {
		key := r.Set + "/" + strings.Repeat("x", int(r.Target))
		if r.Method == "sluice" {
			continue
		}
		best[key] = max(best[key], r.Kept)
	}
	for _, r := range rep.Rows {
		key := r.Set + "/" + strings.Repeat("x", int(r.Target))
		if r.Method == "sluice" && r.Kept <= best[key] {
			t.Errorf("%s at %gx: sluice kept %.1f%%, a baseline %.1f%%", r.Set, r.Target, r.Kept, best[key])
		}
	}
}
