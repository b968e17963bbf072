package bench

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-llm/sluice/internal/jsonx"
)

// Traffic is what the load generator sends and what the fake engine answers: a pool of
// distinct chat requests (real prompts: chat questions, math problems, retrieval
// prompts with a paragraph or a whole article) and one answer streamed in Chunks pieces.
// Each request ends with a ticket number stamped anew per send (stamp), so no two are
// the same and sluice's answer cache sees a miss every time: the engine-bound traffic
// the benchmark is about.
type Traffic struct {
	bodies [2][][]byte // per mode (modeIndex): the pool of request bodies
	marks  []int       // per body: the offset of its ticket mark (the same in both modes)
	Answer Answer
	// Source says where the prompts came from; Sizes summarises the bodies' lengths.
	Source string
	Sizes  SizeStats
}

// SizeStats summarises request body sizes in bytes.
type SizeStats struct {
	Requests int     `json:"requests"`
	P10      int     `json:"p10_bytes"`
	Median   int     `json:"median_bytes"`
	P90      int     `json:"p90_bytes"`
	Max      int     `json:"max_bytes"`
	Over4KB  float64 `json:"share_over_4kb"` // share of bodies of 4,096 bytes or more
}

// Answer is the fake engine's answer: its content, in the pieces a stream carries (one
// content chunk each), JSON-escaped without quotes.
type Answer struct {
	Pieces []string `json:"pieces"`
}

// full is the whole answer's escaped content.
func (a Answer) full() string { return strings.Join(a.Pieces, "") }

// TrafficOptions choose the traffic. Zero values pick the defaults.
type TrafficOptions struct {
	// Data is the shared data directory (its route/ and compress/ folders); empty: the
	// small synthetic request of earlier runs (~300 bytes) and a 7-chunk answer.
	Data string
	// Chunks is the number of content chunks an answer streams (default 200).
	Chunks int
	// Requests is the number of distinct request bodies (default 2,048).
	Requests int
	Seed     uint64 // default 1
}

// The prompt sources and their shares of the mix, chosen so that, with the system
// prompts below, the median body is about 1 KB and one in seven is 4 KB or more
// (a retrieval prompt with a whole article): chat questions as people ask them
// (Arena-Hard, MT-Bench), math word problems (GSM8K), and retrieval prompts built from
// XQuAD (a paragraph, or the whole five-paragraph article, and a question about it).
var trafficMix = []struct {
	name  string
	share float64
}{
	{"arena-hard", 0.30}, {"mt-bench", 0.10}, {"gsm8k", 0.10}, {"xquad-paragraph", 0.35}, {"xquad-article", 0.15},
}

// systemPrompts are the system messages requests carry (one each, at random).
var systemPrompts = []string{
	"You are a helpful assistant.",
	"You are a concise assistant for a travel company. Answer in one short sentence and do not add any greeting.",
	"You are an expert software engineer. Answer with working code and a short explanation. Prefer the standard " +
		"library, handle errors explicitly and say which assumptions you made about the input.",
	"You are a support assistant for an online bank. Be accurate and polite. Never ask for passwords, PINs or full " +
		"card numbers. If the question is about a specific transaction, ask for the date and amount only. Answer in " +
		"the customer's language and keep answers under 150 words unless the customer asks for detail.",
	"Answer the user's question using only the documents provided in the conversation. If the answer is not in " +
		"them, say that you do not know. Quote the sentence that supports your answer.",
}

// LoadTraffic builds the traffic for o.
func LoadTraffic(o TrafficOptions) (*Traffic, error) {
	if o.Chunks <= 0 {
		o.Chunks = 200
	}
	if o.Requests <= 0 {
		o.Requests = 2048
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Data == "" {
		return syntheticTraffic(), nil
	}
	src, err := loadPrompts(o.Data)
	if err != nil {
		return nil, err
	}
	ans, err := loadAnswer(filepath.Join(o.Data, "route/arena_hard_v0.1/model_answer/gpt-4-0314.jsonl"), o.Chunks)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	t := &Traffic{Answer: ans, Source: "prompts from " + o.Data + ": " + mixString()}
	for range o.Requests {
		x, acc := rng.Float64(), 0.0
		kind := trafficMix[len(trafficMix)-1].name
		for _, m := range trafficMix {
			if acc += m.share; x < acc {
				kind = m.name
				break
			}
		}
		ps := src[kind]
		user := ps[rng.IntN(len(ps))]
		sys := systemPrompts[rng.IntN(len(systemPrompts))]
		t.add(sys, user)
	}
	t.summarize()
	return t, nil
}

func mixString() string {
	parts := make([]string, len(trafficMix))
	for i, m := range trafficMix {
		parts[i] = fmt.Sprintf("%s %.0f%%", m.name, m.share*100)
	}
	return strings.Join(parts, ", ")
}

// syntheticTraffic is the earlier fixed request and short answer.
func syntheticTraffic() *Traffic {
	t := &Traffic{Source: "synthetic: one ~300-byte request, a 7-chunk answer (--data \"\")"}
	for _, p := range strings.Split("The capital| of France| is| Paris|.", "|") {
		t.Answer.Pieces = append(t.Answer.Pieces, p)
	}
	t.add("You are a concise assistant for a travel company. Answer in one short sentence and do not add any greeting.",
		"What is the capital of France, and which river flows through it?")
	t.summarize()
	return t
}

// ticketMark is the placeholder stamp overwrites with a request's sequence number.
const ticketMark = "#0000000000"

// add appends one request, both modes, ending the user message with a ticket mark.
func (t *Traffic) add(system, user string) {
	var tmp []byte
	head := []byte(`{"model":"bench","messages":[{"role":"system","content":`)
	head = append(head, jsonx.AppendString(tmp, system)...)
	head = append(head, `},{"role":"user","content":`...)
	head = append(head, jsonx.AppendString(tmp[:0], user+"\n\nTicket ")...)
	head = head[:len(head)-1] // reopen the string
	mark := len(head)
	head = append(head, ticketMark+`"}],"temperature":0.2,"max_tokens":512`...)
	ns := append(slices.Clip(head), '}')
	st := append(slices.Clip(head), `,"stream":true,"stream_options":{"include_usage":true}}`...)
	t.bodies[0] = append(t.bodies[0], ns)
	t.bodies[1] = append(t.bodies[1], st)
	t.marks = append(t.marks, mark)
}

func (t *Traffic) summarize() {
	sizes := make([]int, len(t.bodies[0]))
	over := 0
	for i, b := range t.bodies[0] {
		sizes[i] = len(b)
		if len(b) >= 4096 {
			over++
		}
	}
	slices.Sort(sizes)
	at := func(q float64) int { return sizes[min(int(q*float64(len(sizes))), len(sizes)-1)] }
	t.Sizes = SizeStats{Requests: len(sizes), P10: at(0.1), Median: at(0.5), P90: at(0.9), Max: sizes[len(sizes)-1],
		Over4KB: round(float64(over)/float64(len(sizes)), 3)}
}

// modeIndex maps a mode to its bodies.
func modeIndex(m Mode) int {
	if m == Stream {
		return 1
	}
	return 0
}

// body returns request n's body for mode and where its ticket mark starts.
func (t *Traffic) body(m Mode, n uint64) ([]byte, int) {
	i := int(n % uint64(len(t.marks)))
	return t.bodies[modeIndex(m)][i], t.marks[i]
}

// stamp writes n into the ticket mark that starts at off in body, in place.
func stamp(body []byte, off int, n uint64) {
	if off < 0 || off+len(ticketMark) > len(body) || body[off] != '#' {
		return
	}
	d := body[off+1 : off+len(ticketMark)]
	for j := len(d) - 1; j >= 0; j-- {
		d[j] = byte('0' + n%10)
		n /= 10
	}
}

// loadPrompts reads the user prompts of each source in trafficMix.
func loadPrompts(dir string) (map[string][]string, error) {
	out := map[string][]string{}
	var err error
	if out["arena-hard"], err = jsonlField(filepath.Join(dir, "route/arena_hard_v0.1/question.jsonl"), func(b []byte) (string, error) {
		var q struct {
			Turns []struct {
				Content string `json:"content"`
			} `json:"turns"`
		}
		if err := json.Unmarshal(b, &q); err != nil || len(q.Turns) == 0 {
			return "", errors.New("no turns")
		}
		return q.Turns[0].Content, nil
	}); err != nil {
		return nil, err
	}
	if out["mt-bench"], err = jsonlField(filepath.Join(dir, "route/routellm_mt_bench/question.jsonl"), func(b []byte) (string, error) {
		var q struct {
			Turns []string `json:"turns"`
		}
		if err := json.Unmarshal(b, &q); err != nil || len(q.Turns) == 0 {
			return "", errors.New("no turns")
		}
		return q.Turns[0], nil
	}); err != nil {
		return nil, err
	}
	if out["gsm8k"], err = csvColumn(filepath.Join(dir, "route/routellm_gsm8k/gsm8k_responses.csv"), "prompt"); err != nil {
		return nil, err
	}
	para, art, err := xquadPrompts(filepath.Join(dir, "compress/xquad.en.json"))
	if err != nil {
		return nil, err
	}
	out["xquad-paragraph"], out["xquad-article"] = para, art
	for k, v := range out {
		if len(v) == 0 {
			return nil, fmt.Errorf("bench: traffic: no %s prompts in %s", k, dir)
		}
	}
	return out, nil
}

func jsonlField(path string, field func([]byte) (string, error)) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bench: traffic: %w (set the data directory with --data)", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		s, err := field(sc.Bytes())
		if err != nil {
			return nil, fmt.Errorf("bench: traffic: %s: %w", path, err)
		}
		if s != "" {
			out = append(out, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bench: traffic: %s: %w", path, err)
	}
	return out, nil
}

func csvColumn(path, col string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bench: traffic: %w (set the data directory with --data)", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("bench: traffic: %s: %w", path, err)
	}
	k := slices.Index(head, col)
	if k < 0 {
		return nil, fmt.Errorf("bench: traffic: %s has no %q column", path, col)
	}
	var out []string
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("bench: traffic: %s: %w", path, err)
		}
		if k < len(rec) && rec[k] != "" {
			out = append(out, rec[k])
		}
	}
}

// xquadPrompts builds retrieval prompts from a SQuAD v1.1 file: each question with its
// paragraph, and each article's first question with the whole article.
func xquadPrompts(path string) (para, article []string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: traffic: %w (set the data directory with --data)", err)
	}
	var sq struct {
		Data []struct {
			Paragraphs []struct {
				Context string `json:"context"`
				QAs     []struct {
					Question string `json:"question"`
				} `json:"qas"`
			} `json:"paragraphs"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &sq); err != nil {
		return nil, nil, fmt.Errorf("bench: traffic: %s: %w", path, err)
	}
	for _, a := range sq.Data {
		var whole strings.Builder
		for i, p := range a.Paragraphs {
			fmt.Fprintf(&whole, "[%d] %s\n\n", i+1, p.Context)
		}
		for _, p := range a.Paragraphs {
			for _, q := range p.QAs {
				para = append(para, "Document:\n"+p.Context+"\n\nQuestion: "+q.Question)
				article = append(article, "Documents:\n"+whole.String()+"Question: "+q.Question)
			}
		}
	}
	return para, article, nil
}

// loadAnswer takes the first answer in an Arena-Hard model_answer file that has at
// least chunks words, and splits its first chunks words into pieces (a word and the
// space before it), as an engine streams tokens.
func loadAnswer(path string, chunks int) (Answer, error) {
	texts, err := jsonlField(path, func(b []byte) (string, error) {
		var a struct {
			Choices []struct {
				Turns []struct {
					Content string `json:"content"`
				} `json:"turns"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(b, &a); err != nil || len(a.Choices) == 0 || len(a.Choices[0].Turns) == 0 {
			return "", errors.New("no answer")
		}
		return a.Choices[0].Turns[0].Content, nil
	})
	if err != nil {
		return Answer{}, err
	}
	for _, s := range texts {
		words := strings.SplitAfter(s, " ")
		if len(words) < chunks {
			continue
		}
		var a Answer
		for _, w := range words[:chunks] {
			esc := jsonx.AppendString(nil, w)
			a.Pieces = append(a.Pieces, string(esc[1:len(esc)-1]))
		}
		return a, nil
	}
	return Answer{}, fmt.Errorf("bench: traffic: no answer of %d words in %s", chunks, path)
}

// String describes the traffic for a report.
func (t *Traffic) String() string {
	return fmt.Sprintf("%d distinct requests (%s); body bytes p10 %d, median %d, p90 %d, max %d, %s%% at 4 KB or more; "+
		"answers of %d content chunks", t.Sizes.Requests, t.Source, t.Sizes.P10, t.Sizes.Median, t.Sizes.P90, t.Sizes.Max,
		strconv.FormatFloat(t.Sizes.Over4KB*100, 'f', 1, 64), len(t.Answer.Pieces))
}
