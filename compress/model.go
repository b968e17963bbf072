package compress

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"time"
)

// LlamaScorer is the model-scored mode: it asks a small causal model on a local
// llama-server how surprising each word is after the text before it, as LLMLingua
// does with GPT-2 or LLaMA-7B. llama-server returns probabilities for generated tokens
// only (not for prompt tokens), so each word is scored as the first token generated
// after its prefix: one /completion call with every prefix as a prompt array,
// n_predict 1 and n_probs TopK, the prefixes sharing the engine's prompt cache. A word
// whose first token is not among the TopK candidates gets half the smallest
// candidate's probability. This costs one short generation per word (milliseconds each
// on a small model), so it is off by default and capped at MaxWords words a request;
// the rest, and every word when the engine fails, use the statistical LM.
type LlamaScorer struct {
	URL      string // llama-server base URL
	TopK     int
	MaxWords int
	Timeout  time.Duration
	Client   *http.Client
	Logger   *slog.Logger
}

var _ WordScorer = (*LlamaScorer)(nil)

// Bits fills bits[i] for the word at spans[i] of texts[i]; words it does not score are
// NaN. It returns false when it scored none.
func (s *LlamaScorer) Bits(ctx context.Context, texts []string, spans [][2]int32, bits []float32) bool {
	for i := range bits {
		bits[i] = float32(math.NaN())
	}
	n := min(len(spans), s.MaxWords)
	if n <= 0 {
		return false
	}
	prompts := make([]string, n)
	for i := range n {
		prompts[i] = texts[i][:spans[i][0]]
	}
	if s.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.Timeout)
		defer cancel()
	}
	res, err := s.complete(ctx, prompts)
	if err != nil {
		if s.Logger != nil {
			s.Logger.Warn("compress: model scoring failed; using word frequencies", "err", err)
		}
		return false
	}
	for i := range n {
		if i >= len(res) {
			break
		}
		word := texts[i][spans[i][0]:spans[i][1]]
		space := spans[i][0] > 0 && isSpace(texts[i][spans[i][0]-1])
		if p := res[i].prob(word, space); p > 0 {
			bits[i] = float32(-math.Log2(p))
		}
	}
	return true
}

// candidate is one token llama-server proposes, in either of its JSON shapes.
type candidate struct {
	Token   string   `json:"token"`
	TokStr  string   `json:"tok_str"`
	Prob    *float64 `json:"prob"`
	LogProb *float64 `json:"logprob"`
}

func (c candidate) text() string {
	if c.Token != "" {
		return c.Token
	}
	return c.TokStr
}

func (c candidate) p() float64 {
	if c.Prob != nil {
		return *c.Prob
	}
	if c.LogProb != nil {
		return math.Exp(*c.LogProb)
	}
	return 0
}

type position struct {
	TopLogProbs []candidate `json:"top_logprobs"`
	TopProbs    []candidate `json:"top_probs"`
	Probs       []candidate `json:"probs"`
}

func (p position) candidates() []candidate {
	switch {
	case len(p.TopLogProbs) > 0:
		return p.TopLogProbs
	case len(p.TopProbs) > 0:
		return p.TopProbs
	}
	return p.Probs
}

type completion struct {
	Probs []position `json:"completion_probabilities"`
}

// prob is the probability that the next token starts word (preceded by a space when
// space is set): the most likely candidate that is a prefix of it; half the smallest
// candidate's when none is.
func (c completion) prob(word string, space bool) float64 {
	if len(c.Probs) == 0 {
		return 0
	}
	cands := c.Probs[0].candidates()
	best, least := 0.0, 1.0
	for _, k := range cands {
		p := k.p()
		least = min(least, p)
		t := k.text()
		t2 := strings.TrimLeft(t, " ▁")
		if t2 == "" || (len(t2) < len(t)) != space {
			continue
		}
		if strings.HasPrefix(word, t2) && p > best {
			best = p
		}
	}
	if best == 0 {
		best = least / 2
	}
	return max(best, 1e-9)
}

func (s *LlamaScorer) complete(ctx context.Context, prompts []string) ([]completion, error) {
	body, err := json.Marshal(map[string]any{
		"prompt": prompts, "n_predict": 1, "n_probs": s.TopK, "cache_prompt": true,
		"temperature": 0, "post_sampling_probs": false,
	})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(s.URL, "/")+"/completion", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	cl := s.Client
	if cl == nil {
		cl = http.DefaultClient
	}
	resp, err := cl.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("llama-server /completion: %s: %.200s", resp.Status, b)
	}
	var out []completion
	if len(prompts) == 1 && len(b) > 0 && b[0] == '{' {
		var one completion
		if err := json.Unmarshal(b, &one); err != nil {
			return nil, fmt.Errorf("llama-server /completion: %w", err)
		}
		return []completion{one}, nil
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("llama-server /completion: %w", err)
	}
	return out, nil
}
