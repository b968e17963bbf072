package compress

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Case is one question against one context. Answer is a gold answer span (extractive
// sets); Relevant are the parts of Context a good compression keeps (QMSum's turns).
type Case struct {
	Context  string
	Question string
	Answer   string
	Relevant []string
}

// squad is the SQuAD v1.1 layout (XQuAD uses it too).
type squad struct {
	Data []struct {
		Title      string `json:"title"`
		Paragraphs []struct {
			Context string `json:"context"`
			QAs     []struct {
				Question string `json:"question"`
				Answers  []struct {
					Text string `json:"text"`
				} `json:"answers"`
			} `json:"qas"`
		} `json:"paragraphs"`
	} `json:"data"`
}

// LoadSQuAD reads a SQuAD v1.1 file into two sets: each question against its own
// paragraph, and the same question against its whole article (up to five paragraphs,
// as XQuAD's articles are: the paragraph's own and its neighbours, in article order).
func LoadSQuAD(path string) (paragraphs, articles []Case, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("squad: %w", err)
	}
	var s squad
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, nil, fmt.Errorf("squad %s: %w", path, err)
	}
	for _, a := range s.Data {
		for pi, p := range a.Paragraphs {
			// The article: five paragraphs around this one.
			lo := max(0, pi-2)
			hi := min(len(a.Paragraphs), lo+5)
			lo = max(0, hi-5)
			ctx := make([]string, 0, hi-lo)
			for _, q := range a.Paragraphs[lo:hi] {
				ctx = append(ctx, q.Context)
			}
			article := strings.Join(ctx, "\n\n")
			for _, qa := range p.QAs {
				if len(qa.Answers) == 0 || qa.Answers[0].Text == "" {
					continue
				}
				c := Case{Context: p.Context, Question: qa.Question, Answer: qa.Answers[0].Text}
				paragraphs = append(paragraphs, c)
				c.Context = article
				articles = append(articles, c)
			}
		}
	}
	if len(paragraphs) == 0 {
		return nil, nil, fmt.Errorf("squad %s: no questions with answers", path)
	}
	return paragraphs, articles, nil
}

// LoadQMSum reads QMSum's JSONL: every specific query against its whole meeting
// transcript (one "Speaker: words" line per turn), with the turns its
// relevant_text_span names as the text to keep. limit > 0 keeps the first limit queries.
func LoadQMSum(path string, limit int) ([]Case, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("qmsum: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var out []Case
	for sc.Scan() {
		var m struct {
			Queries []struct {
				Query string     `json:"query"`
				Spans [][]string `json:"relevant_text_span"`
			} `json:"specific_query_list"`
			Turns []struct {
				Speaker string `json:"speaker"`
				Content string `json:"content"`
			} `json:"meeting_transcripts"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("qmsum %s: %w", path, err)
		}
		lines := make([]string, len(m.Turns))
		for i, t := range m.Turns {
			lines[i] = t.Speaker + ": " + t.Content
		}
		transcript := strings.Join(lines, "\n")
		for _, q := range m.Queries {
			c := Case{Context: transcript, Question: q.Query}
			for _, sp := range q.Spans {
				if len(sp) != 2 {
					continue
				}
				a, err1 := strconv.Atoi(sp[0])
				b, err2 := strconv.Atoi(sp[1])
				if err1 != nil || err2 != nil || a < 0 || b >= len(m.Turns) || a > b {
					continue
				}
				for i := a; i <= b; i++ {
					c.Relevant = append(c.Relevant, m.Turns[i].Content)
				}
			}
			if len(c.Relevant) == 0 {
				continue
			}
			out = append(out, c)
			if limit > 0 && len(out) >= limit {
				return out, nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("qmsum %s: %w", path, err)
	}
	return out, nil
}
