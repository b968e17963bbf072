package classify

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-llm/sluice/models"
)

// routeLLMFixture writes a miniature of RouteLLM's data layout.
func routeLLMFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	head := "prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview\n"
	write("routellm_mmlu/responses/mmlu_anatomy.csv", head+
		"\"Which bone?\nA. femur\nB. ulna\nAnswer:\",False,True\n"+
		"\"Contaminated, \"\"quoted\"\"\nAnswer:\",True,True\n"+
		"Plain question,True,False\n")
	// Strong model below chance: unparsed answers, left out.
	write("routellm_mmlu/responses/mmlu_broken.csv", head+"q1,True,False\nq2,True,False\nq3,False,False\nq4,True,False\nq5,True,True\n")
	write("routellm_mmlu/contaminated_prompts.jsonl",
		`{"train_prompt":"x","eval_prompt":"Contaminated, \"quoted\"\nAnswer:","train_idx":1,"eval_idx":2}`+"\n")
	write("routellm_gsm8k/gsm8k_responses.csv",
		"prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview,mistralai/Mixtral-8x7B-Instruct-v0.1_response,gpt-4-1106-preview_response\n"+
			"Janet has 3 ducks. How many?,False,True,\"It is 4\",\"It is 3\"\n"+
			"Skip me,True,True,a,b\n")
	write("routellm_gsm8k/contaminated_prompts.jsonl", `{"eval_prompt":"Skip me"}`+"\n")
	write("routellm_mt_bench/question.jsonl",
		`{"question_id": 81, "category": "writing", "turns": ["Write a blog post.", "Rewrite it."]}`+"\n"+
			`{"question_id": 111, "category": "math", "turns": ["Find the area.", "And the perimeter?"]}`+"\n")
	var j strings.Builder
	for _, r := range []struct {
		id, turn int
		model    string
		score    int
	}{
		{81, 1, RouteLLMStrong, 9}, {81, 1, RouteLLMWeak, 9}, {81, 2, RouteLLMStrong, 8}, {81, 2, RouteLLMWeak, 6},
		{111, 1, RouteLLMStrong, 10}, {111, 1, RouteLLMWeak, 3}, {111, 2, RouteLLMStrong, 9}, {111, 2, RouteLLMWeak, 4},
	} {
		j.WriteString(`{"question_id": ` + strconv.Itoa(r.id) + `, "model": "` + r.model + `", "judge": ["gpt-4", "single-v1"], "score": ` +
			strconv.Itoa(r.score) + `, "turn": ` + strconv.Itoa(r.turn) + `, "tstamp": 1}` + "\n")
	}
	write("routellm_mt_bench/judgements.jsonl", j.String())
	return dir
}

func TestRouteLLMTrain(t *testing.T) {
	dir := routeLLMFixture(t)
	xs, dropped, err := RouteLLMTrain(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || dropped[0] != "mmlu/broken" {
		t.Errorf("dropped %v, want [mmlu/broken]", dropped)
	}
	want := []struct {
		source, prompt string
		strong, weak   float64
	}{
		{"mmlu/anatomy", "Which bone?\nA. femur\nB. ulna\nAnswer:", 1, 0},
		{"mmlu/anatomy", "Plain question", 0, 1},
		{"gsm8k", "Janet has 3 ducks. How many?", 1, 0},
	}
	if len(xs) != len(want) {
		t.Fatalf("%d examples, want %d: %+v", len(xs), len(want), xs)
	}
	for i, w := range want {
		x := xs[i]
		if x.Source != w.source || x.Prompt != w.prompt || *x.Strong != w.strong || *x.Weak != w.weak {
			t.Errorf("example %d = %q %q %v %v, want %+v", i, x.Source, x.Prompt, *x.Strong, *x.Weak, w)
		}
		if err := x.validate(); err != nil {
			t.Errorf("example %d: %v", i, err)
		}
	}
}

func TestRouteLLMMTBench(t *testing.T) {
	dir := routeLLMFixture(t)
	perTurn, firstTurn, err := RouteLLMMTBench(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(perTurn) != 4 || len(firstTurn) != 2 {
		t.Fatalf("%d per-turn, %d first-turn examples", len(perTurn), len(firstTurn))
	}
	t2 := perTurn[1]
	if t2.ID != "81/2" || t2.Category != "writing" || len(t2.Messages) != 3 || t2.Messages[0].Content != "Write a blog post." ||
		t2.Messages[1].Role != "assistant" || t2.Messages[2].Content != "Rewrite it." || *t2.Strong != 8 || *t2.Weak != 6 {
		t.Errorf("turn 2 example %+v", t2)
	}
	if m := perTurn[2]; len(m.Messages) != 1 || *m.Strong != 10 || *m.Weak != 3 {
		t.Errorf("turn 1 example %+v", m)
	}
	if q := firstTurn[1]; q.Prompt != "Find the area." || *q.Strong != 9.5 || *q.Weak != 3.5 || q.Category != "math" {
		t.Errorf("first-turn example %+v", q)
	}
	// The two views have the same mean quality.
	mean := func(xs []Example, strong bool) float64 {
		var s float64
		for _, x := range xs {
			if strong {
				s += *x.Strong
			} else {
				s += *x.Weak
			}
		}
		return s / float64(len(xs))
	}
	if mean(perTurn, true) != mean(firstTurn, true) || mean(perTurn, false) != mean(firstTurn, false) {
		t.Error("per-turn and first-turn views differ in mean quality")
	}
}

func TestRouteLLMErrors(t *testing.T) {
	if _, _, err := RouteLLMTrain(t.TempDir()); err == nil {
		t.Error("empty dir: no error")
	}
	if _, _, err := RouteLLMMTBench(t.TempDir()); err == nil {
		t.Error("empty dir: no error")
	}
	dir := routeLLMFixture(t)
	p := filepath.Join(dir, "routellm_mmlu/responses/mmlu_anatomy.csv")
	if err := os.WriteFile(p, []byte("prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview\nq,maybe,True\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := RouteLLMTrain(dir); err == nil || !strings.Contains(err.Error(), `"maybe"`) {
		t.Errorf("bad boolean: %v", err)
	}
	if err := os.WriteFile(p, []byte("prompt,a,b\nq,True,True\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := RouteLLMTrain(dir); err == nil || !strings.Contains(err.Error(), "header") {
		t.Errorf("wrong header: %v", err)
	}
	j := filepath.Join(dir, "routellm_mt_bench/judgements.jsonl")
	if err := os.WriteFile(j, []byte(`{"question_id": 81, "model": "gpt-4-1106-preview", "score": 9, "turn": 1}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := RouteLLMMTBench(dir); err == nil || !strings.Contains(err.Error(), "lacks a judgement") {
		t.Errorf("missing judgement: %v", err)
	}
}

// routeData is the published RouteLLM data, from this package's directory.
const routeData = "../../../shared/data/route"

func needRouteData(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(routeData, "routellm_mt_bench", "judgements.jsonl")); err != nil {
		t.Fatalf("RouteLLM data not found at %s (see docs/routing.md): %v", routeData, err)
	}
}

// TestRouteLLMPublishedData checks the converters against the published files: sizes,
// the below-chance subject, MT-Bench's mean scores.
func TestRouteLLMPublishedData(t *testing.T) {
	needRouteData(t)
	xs, dropped, err := RouteLLMTrain(routeData)
	if err != nil {
		t.Fatal(err)
	}
	// 14,042 MMLU rows - 5 contaminated - 270 high school mathematics + 1,319 GSM8K - 12.
	if len(xs) != 15074 || len(dropped) != 1 || dropped[0] != "mmlu/high_school_mathematics" {
		t.Errorf("%d training examples (want 15074), dropped %v", len(xs), dropped)
	}
	perTurn, firstTurn, err := RouteLLMMTBench(routeData)
	if err != nil {
		t.Fatal(err)
	}
	if len(perTurn) != 160 || len(firstTurn) != 80 {
		t.Fatalf("%d MT-Bench turns, %d questions", len(perTurn), len(firstTurn))
	}
	items, err := ScoreExamples(perTurn, func(*models.Request) float64 { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	ev, err := Evaluate(items)
	if err != nil {
		t.Fatal(err)
	}
	// SOURCES.md: GPT-4 mean 9.23, Mixtral 8.34.
	if math.Abs(ev.Strong-9.23) > 0.005 || math.Abs(ev.Weak-8.34) > 0.005 {
		t.Errorf("MT-Bench means strong %.3f weak %.3f", ev.Strong, ev.Weak)
	}
	// No MT-Bench prompt is in the training data.
	train := map[string]bool{}
	for i := range xs {
		train[xs[i].Prompt] = true
	}
	for _, x := range firstTurn {
		if train[x.Prompt] {
			t.Errorf("MT-Bench question %s is in the training data", x.ID)
		}
	}
}

// TestDefaultWeightsReproduce retrains on the published data with the options recorded
// in the embedded weights and checks that the result is the embedded file: the shipped
// weights are what `sluice router train` makes from RouteLLM's MMLU and GSM8K.
func TestDefaultWeightsReproduce(t *testing.T) {
	needRouteData(t)
	if testing.Short() {
		t.Skip("trains on 15,074 examples; skipped with -short")
	}
	m, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	emb := m.File()
	xs, _, err := RouteLLMTrain(routeData)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Train(xs, emb.Training.Options)
	if err != nil {
		t.Fatal(err)
	}
	if f.Training.DataHash != emb.Training.DataHash {
		t.Fatalf("training data hash %s, embedded weights were trained on %s", f.Training.DataHash, emb.Training.DataHash)
	}
	// Exact on the platform that trained them; within float32 rounding of the
	// optimiser's path elsewhere.
	const tol = 1e-4
	check := func(name string, a, b []float32) {
		if len(a) != len(b) {
			t.Fatalf("%s: %d values, embedded %d", name, len(a), len(b))
		}
		for i := range a {
			if math.Abs(float64(a[i]-b[i])) > tol {
				t.Errorf("%s[%d] = %v, embedded %v", name, i, a[i], b[i])
				return
			}
		}
	}
	check("weights", f.Weights, emb.Weights)
	check("means", f.Means, emb.Means)
	check("hash_weights", f.HashWeights, emb.HashWeights)
	check("bias", []float32{f.Bias, f.WordsMean, f.Calibration.A, f.Calibration.B},
		[]float32{emb.Bias, emb.WordsMean, emb.Calibration.A, emb.Calibration.B})
}
