package classify

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The model pair RouteLLM's published data compares.
const (
	RouteLLMStrong = "gpt-4-1106-preview"
	RouteLLMWeak   = "mistralai/Mixtral-8x7B-Instruct-v0.1"
)

// RouteLLMTrain converts RouteLLM's MMLU and GSM8K response files under dir (the
// layout of ../shared/data/route: routellm_mmlu/responses/mmlu_*.csv and
// routellm_gsm8k/gsm8k_responses.csv) into training examples: strong and weak are 1
// when that model answered correctly. Prompts listed in each set's
// contaminated_prompts.jsonl (they overlap MT-Bench or other evaluation sets) are left
// out, as RouteLLM does. Sources are "mmlu/<subject>" and "gsm8k".
//
// An MMLU subject where either model scores below chance (25% on four options) is left
// out too, and named in dropped: such a score means the answers were not parsed, not
// that the model is worse than guessing (in the published files GPT-4 scores 3% on high
// school mathematics, Mixtral 32%).
func RouteLLMTrain(dir string) (xs []Example, dropped []string, err error) {
	files, err := filepath.Glob(filepath.Join(dir, "routellm_mmlu", "responses", "mmlu_*.csv"))
	if err != nil {
		return nil, nil, err
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("routellm: no routellm_mmlu/responses/mmlu_*.csv under %s", dir)
	}
	slices.Sort(files)
	skip, err := readContaminated(filepath.Join(dir, "routellm_mmlu", "contaminated_prompts.jsonl"))
	if err != nil {
		return nil, nil, err
	}
	for _, f := range files {
		subject := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "mmlu_"), ".csv")
		n := len(xs)
		if xs, err = readResponses(f, "mmlu/"+subject, skip, xs); err != nil {
			return nil, nil, err
		}
		if belowChance(xs[n:], 0.25) {
			xs = xs[:n]
			dropped = append(dropped, "mmlu/"+subject)
		}
	}
	skip, err = readContaminated(filepath.Join(dir, "routellm_gsm8k", "contaminated_prompts.jsonl"))
	if err != nil {
		return nil, nil, err
	}
	xs, err = readResponses(filepath.Join(dir, "routellm_gsm8k", "gsm8k_responses.csv"), "gsm8k", skip, xs)
	return xs, dropped, err
}

// belowChance reports whether either model's accuracy on xs is below chance.
func belowChance(xs []Example, chance float64) bool {
	if len(xs) == 0 {
		return false
	}
	var s, w float64
	for i := range xs {
		s += *xs[i].Strong
		w += *xs[i].Weak
	}
	n := float64(len(xs))
	return s/n < chance || w/n < chance
}

// readContaminated returns the eval_prompt set of a contaminated_prompts.jsonl.
func readContaminated(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("routellm: %w", err)
	}
	defer f.Close()
	skip := make(map[string]bool)
	d := json.NewDecoder(f)
	for {
		var rec struct {
			EvalPrompt string `json:"eval_prompt"`
		}
		if err := d.Decode(&rec); err == io.EOF {
			return skip, nil
		} else if err != nil {
			return nil, fmt.Errorf("routellm: %s: %w", path, err)
		}
		skip[rec.EvalPrompt] = true
	}
}

// readResponses appends the rows of one RouteLLM response CSV (header: prompt, then one
// True/False column per model).
func readResponses(path, source string, skip map[string]bool, out []Example) ([]Example, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("routellm: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("routellm: %s: header: %w", path, err)
	}
	ip, is, iw := slices.Index(head, "prompt"), slices.Index(head, RouteLLMStrong), slices.Index(head, RouteLLMWeak)
	if ip < 0 || is < 0 || iw < 0 {
		return nil, fmt.Errorf("routellm: %s: header %q lacks prompt, %s or %s", path, head, RouteLLMStrong, RouteLLMWeak)
	}
	for row := 2; ; row++ {
		rec, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("routellm: %s: %w", path, err)
		}
		if len(rec) <= max(ip, is, iw) {
			return nil, fmt.Errorf("routellm: %s: row %d has %d fields", path, row, len(rec))
		}
		if skip[rec[ip]] {
			continue
		}
		s, err1 := parseBool(rec[is])
		w, err2 := parseBool(rec[iw])
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("routellm: %s: row %d: %w", path, row, err)
		}
		out = append(out, Example{Source: source, Prompt: rec[ip], Strong: f64(s), Weak: f64(w)})
	}
}

func parseBool(s string) (float64, error) {
	switch s {
	case "True", "true", "1", "1.0":
		return 1, nil
	case "False", "false", "0", "0.0":
		return 0, nil
	}
	return 0, fmt.Errorf("%q is not True or False", s)
}

// RouteLLMMTBench converts MT-Bench (routellm_mt_bench/question.jsonl and the GPT-4
// judge's judgements.jsonl under dir) into evaluation examples, scores 1–10. It returns
// two views of the same 80 questions:
//
//   - perTurn: 160 requests, one per question and turn, as a client sends them: turn 1
//     is the first user message; turn 2 is the conversation so far (the first user
//     message, an empty assistant message standing for the first answer, which differs
//     between the two models, and the second user message). Each carries that turn's
//     scores.
//   - firstTurn: 80 requests routed on the first turn alone, as RouteLLM's evaluation
//     does, each carrying the mean of the question's two turn scores (so the mean over
//     questions equals the mean over all 160 answers).
//
// MT-Bench is for evaluation only: never train on it.
func RouteLLMMTBench(dir string) (perTurn, firstTurn []Example, err error) {
	base := filepath.Join(dir, "routellm_mt_bench")
	type question struct {
		ID       int      `json:"question_id"`
		Category string   `json:"category"`
		Turns    []string `json:"turns"`
	}
	var qs []question
	if err := readJSONLines(filepath.Join(base, "question.jsonl"), func(d *json.Decoder) error {
		var q question
		if err := d.Decode(&q); err != nil {
			return err
		}
		if len(q.Turns) != 2 {
			return fmt.Errorf("question %d has %d turns, want 2", q.ID, len(q.Turns))
		}
		qs = append(qs, q)
		return nil
	}); err != nil {
		return nil, nil, err
	}
	type key struct {
		id, turn int
		model    string
	}
	scores := make(map[key]float64)
	if err := readJSONLines(filepath.Join(base, "judgements.jsonl"), func(d *json.Decoder) error {
		var j struct {
			ID    int     `json:"question_id"`
			Model string  `json:"model"`
			Score float64 `json:"score"`
			Turn  int     `json:"turn"`
		}
		if err := d.Decode(&j); err != nil {
			return err
		}
		scores[key{j.ID, j.Turn, j.Model}] = j.Score
		return nil
	}); err != nil {
		return nil, nil, err
	}
	for _, q := range qs {
		var s, w [2]float64
		for t := range 2 {
			var ok1, ok2 bool
			s[t], ok1 = scores[key{q.ID, t + 1, RouteLLMStrong}]
			w[t], ok2 = scores[key{q.ID, t + 1, RouteLLMWeak}]
			if !ok1 || !ok2 {
				return nil, nil, fmt.Errorf("routellm: mt-bench question %d turn %d lacks a judgement of both models", q.ID, t+1)
			}
		}
		id := fmt.Sprint(q.ID)
		perTurn = append(perTurn,
			Example{ID: id + "/1", Source: "mt-bench", Category: q.Category,
				Messages: []Message{{Role: "user", Content: q.Turns[0]}},
				Strong:   f64(s[0]), Weak: f64(w[0])},
			Example{ID: id + "/2", Source: "mt-bench", Category: q.Category,
				Messages: []Message{{Role: "user", Content: q.Turns[0]}, {Role: "assistant"}, {Role: "user", Content: q.Turns[1]}},
				Strong:   f64(s[1]), Weak: f64(w[1])})
		firstTurn = append(firstTurn, Example{ID: id, Source: "mt-bench", Category: q.Category,
			Prompt: q.Turns[0], Strong: f64((s[0] + s[1]) / 2), Weak: f64((w[0] + w[1]) / 2)})
	}
	if len(perTurn) == 0 {
		return nil, nil, fmt.Errorf("routellm: no MT-Bench questions under %s", base)
	}
	return perTurn, firstTurn, nil
}

func readJSONLines(path string, each func(*json.Decoder) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("routellm: %w", err)
	}
	defer f.Close()
	d := json.NewDecoder(f)
	for d.More() {
		if err := each(d); err != nil {
			return fmt.Errorf("routellm: %s: %w", path, err)
		}
	}
	return nil
}
