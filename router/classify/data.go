package classify

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/sluice-llm/sluice/models"
)

// Example is one line of the labelled JSONL that `sluice router train` and `sluice router
// eval` read:
//
//	{"prompt": "...", "strong": 1, "weak": 0}
//	{"messages": [{"role": "user", "content": "..."}], "strong": 9, "weak": 7}
//	{"prompt": "...", "label": 1}
//
// A request is a prompt (one user message) or a list of chat messages. Its label is
// either given directly (1: needs the strong model, 0: the weak one is enough; values in
// between are soft labels) or derived from the two models' scores on it (correctness
// 0/1, a judge's 1–10, any scale where higher is better): 1 when strong > weak, else 0.
// Evaluation needs the scores. Unknown fields (a category, an id) are ignored, so
// annotated files stay readable.
type Example struct {
	ID       string    `json:"id,omitempty"`
	Source   string    `json:"source,omitempty"`   // where it came from (balances training across sources)
	Category string    `json:"category,omitempty"` // optional, for per-category breakdowns
	Prompt   string    `json:"prompt,omitempty"`
	Messages []Message `json:"messages,omitempty"`
	Strong   *float64  `json:"strong,omitempty"`
	Weak     *float64  `json:"weak,omitempty"`
	Label    *float64  `json:"label,omitempty"`
	Weight   *float64  `json:"weight,omitempty"` // training weight (default 1)
}

// Message is one chat message of an Example.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Target is the example's training label in [0,1].
func (x *Example) Target() float64 {
	if x.Label != nil {
		return *x.Label
	}
	if *x.Strong > *x.Weak {
		return 1
	}
	return 0
}

// HasScores reports whether the example carries both models' scores (needed to evaluate).
func (x *Example) HasScores() bool { return x.Strong != nil && x.Weak != nil }

// TrainWeight is the example's weight (1 unless set).
func (x *Example) TrainWeight() float64 {
	if x.Weight != nil {
		return *x.Weight
	}
	return 1
}

// Request is the request a client would send for this example: the prompt as one user
// message, or the messages.
func (x *Example) Request() *models.Request {
	r := &models.Request{Kind: models.KindChat, Model: "auto"}
	if x.Prompt != "" {
		r.Messages = []models.Message{{Role: "user", Content: x.Prompt}}
		return r
	}
	r.Messages = make([]models.Message, len(x.Messages))
	for i, m := range x.Messages {
		r.Messages[i] = models.Message{Role: m.Role, Content: m.Content}
	}
	return r
}

// validate checks one decoded line.
func (x *Example) validate() error {
	switch {
	case x.Prompt == "" && len(x.Messages) == 0:
		return errors.New(`needs "prompt" or "messages"`)
	case x.Prompt != "" && len(x.Messages) > 0:
		return errors.New(`has both "prompt" and "messages"`)
	}
	user := false
	for i, m := range x.Messages {
		switch m.Role {
		case "user":
			user = true
		case "system", "developer", "assistant", "tool":
		default:
			return fmt.Errorf("messages[%d].role %q: want user, system, developer, assistant or tool", i, m.Role)
		}
	}
	if len(x.Messages) > 0 && !user {
		return errors.New(`"messages" has no user message`)
	}
	if (x.Strong == nil) != (x.Weak == nil) {
		return errors.New(`"strong" and "weak" go together`)
	}
	if x.Label == nil && x.Strong == nil {
		return errors.New(`needs "label" or the "strong" and "weak" scores`)
	}
	if x.Label != nil && (!finite64(*x.Label) || *x.Label < 0 || *x.Label > 1) {
		return errors.New(`"label" must be in [0,1]`)
	}
	if x.Strong != nil && (!finite64(*x.Strong) || !finite64(*x.Weak)) {
		return errors.New(`"strong" and "weak" must be finite numbers`)
	}
	if x.Weight != nil && (!finite64(*x.Weight) || *x.Weight < 0) {
		return errors.New(`"weight" must be a finite number >= 0`)
	}
	return nil
}

// MaxLine is the longest JSONL line ReadJSONL accepts.
const MaxLine = 16 << 20

// ReadJSONL reads labelled examples, one JSON object per line (blank lines skipped). An
// invalid line is an error naming its line number.
func ReadJSONL(r io.Reader) ([]Example, error) {
	var out []Example
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	for line := 1; ; line++ {
		b, err := readLine(br, &buf)
		if err == io.EOF && len(b) == 0 {
			return out, nil
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		b = bytes.TrimSpace(b)
		if len(b) > 0 {
			var x Example
			d := json.NewDecoder(bytes.NewReader(b))
			if derr := d.Decode(&x); derr != nil {
				return nil, fmt.Errorf("line %d: %w", line, derr)
			}
			if d.More() {
				return nil, fmt.Errorf("line %d: more than one JSON value", line)
			}
			if verr := x.validate(); verr != nil {
				return nil, fmt.Errorf("line %d: %w", line, verr)
			}
			out = append(out, x)
		}
		if err == io.EOF {
			return out, nil
		}
	}
}

// readLine returns the next line without its newline, at most MaxLine bytes.
func readLine(br *bufio.Reader, buf *[]byte) ([]byte, error) {
	*buf = (*buf)[:0]
	for {
		frag, err := br.ReadSlice('\n')
		if len(*buf)+len(frag) > MaxLine {
			return nil, fmt.Errorf("line longer than %d bytes", MaxLine)
		}
		*buf = append(*buf, frag...)
		switch err {
		case nil:
			return (*buf)[:len(*buf)-1], nil
		case bufio.ErrBufferFull:
			continue
		default:
			return *buf, err
		}
	}
}

// WriteJSONL writes examples one per line.
func WriteJSONL(w io.Writer, xs []Example) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for i := range xs {
		if err := enc.Encode(&xs[i]); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func finite64(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// f64 returns a pointer to v (for building examples).
func f64(v float64) *float64 { return &v }
