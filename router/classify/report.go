package classify

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/sluice-llm/sluice/models"
)

// Row is one router's line in a comparison.
type Row struct {
	Router    string  `json:"router"`
	APGR      float64 `json:"apgr"`
	ShareAt95 float64 `json:"strong_share_at_95"`
	// PGR at 0%, 10%, ..., 100% strong calls (none for the random draws).
	PGR  []float64 `json:"pgr_by_decile,omitempty"`
	Eval Eval      `json:"-"`
}

// Comparison evaluates the classifier against the baselines on one labelled set.
type Comparison struct {
	N      int     `json:"n"`
	Strong float64 `json:"strong"`
	Weak   float64 `json:"weak"`
	Rows   []Row   `json:"rows"`
	// APGRLow and APGRHigh bound the classifier's APGR: the 95% interval over bootstrap
	// resamples of the set (a request's turns, ids "q/1" and "q/2", drawn together).
	APGRLow  float64 `json:"apgr_low"`
	APGRHigh float64 `json:"apgr_high"`
	// Categories is the classifier's mean score per example category (when the data
	// names categories), highest first.
	Categories []CategoryScore `json:"categories,omitempty"`
}

// CategoryScore is the classifier's mean score on one category, with that category's
// mean strong-minus-weak quality gap.
type CategoryScore struct {
	Category string  `json:"category"`
	N        int     `json:"n"`
	Score    float64 `json:"score"`
	Gap      float64 `json:"gap"`
}

// Router names in a Comparison.
const (
	RowClassifier = "sluice classifier"
	RowRegex      = "keyword regex"
	RowRandom     = "random (mean of 1000 draws)"
	RowExpected   = "random (expected)"
	RowOracle     = "oracle (knows the answers)"
)

// Compare evaluates m, the keyword-regex router, random routing and the oracle (which
// sends the requests with the largest quality gap first: the upper bound) on examples
// carrying strong and weak scores.
func Compare(m *Model, xs []Example) (*Comparison, error) {
	var cls []float64
	items, err := ScoreExamples(xs, func(r *models.Request) float64 {
		s, _ := m.Score(r)
		cls = append(cls, s)
		return s
	})
	if err != nil {
		return nil, err
	}
	c := &Comparison{N: len(items)}
	add := func(name string, items []Item) error {
		ev, err := Evaluate(items)
		if err != nil {
			return err
		}
		c.Strong, c.Weak = ev.Strong, ev.Weak
		row := Row{Router: name, APGR: ev.APGR, ShareAt95: ev.ShareAt95, Eval: ev, PGR: make([]float64, 11)}
		for k := range row.PGR {
			row.PGR[k] = ev.PGRAt(float64(k) / 10)
		}
		c.Rows = append(c.Rows, row)
		return nil
	}
	if err := add(RowClassifier, items); err != nil {
		return nil, err
	}
	cluster := make([]string, len(xs))
	for i := range xs {
		cluster[i] = fmt.Sprint("#", i)
		if id, _, _ := strings.Cut(xs[i].ID, "/"); id != "" {
			cluster[i] = id
		}
	}
	if c.APGRLow, c.APGRHigh, err = BootstrapAPGR(items, cluster, 1000, 1); err != nil {
		return nil, err
	}
	re := NewRegexRouter()
	reItems, _ := ScoreExamples(xs, re.Score)
	if err := add(RowRegex, reItems); err != nil {
		return nil, err
	}
	apgr, share, err := RandomRouter(items, 1000, 1)
	if err != nil {
		return nil, err
	}
	c.Rows = append(c.Rows, Row{Router: RowRandom, APGR: apgr, ShareAt95: share})
	exp, err := Expected(items)
	if err != nil {
		return nil, err
	}
	row := Row{Router: RowExpected, APGR: exp.APGR, ShareAt95: exp.ShareAt95, Eval: exp, PGR: make([]float64, 11)}
	for k := range row.PGR {
		row.PGR[k] = exp.PGRAt(float64(k) / 10)
	}
	c.Rows = append(c.Rows, row)
	oracle := slices.Clone(items)
	for i := range oracle {
		oracle[i].Score = oracle[i].Strong - oracle[i].Weak
	}
	if err := add(RowOracle, oracle); err != nil {
		return nil, err
	}

	byCat := map[string]*CategoryScore{}
	for i := range xs {
		if xs[i].Category == "" {
			continue
		}
		cs := byCat[xs[i].Category]
		if cs == nil {
			cs = &CategoryScore{Category: xs[i].Category}
			byCat[xs[i].Category] = cs
		}
		cs.N++
		cs.Score += cls[i]
		cs.Gap += *xs[i].Strong - *xs[i].Weak
	}
	for _, cs := range byCat {
		cs.Score /= float64(cs.N)
		cs.Gap /= float64(cs.N)
		c.Categories = append(c.Categories, *cs)
	}
	slices.SortFunc(c.Categories, func(a, b CategoryScore) int {
		if a.Score != b.Score {
			if a.Score > b.Score {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Category, b.Category)
	})
	return c, nil
}

// Row returns the named row (nil if absent).
func (c *Comparison) Row(name string) *Row {
	for i := range c.Rows {
		if c.Rows[i].Router == name {
			return &c.Rows[i]
		}
	}
	return nil
}

// WriteTable prints the comparison: APGR, the strong share needed for 95% of the strong
// model's quality, and PGR at 10%-steps of strong calls.
func (c *Comparison) WriteTable(w io.Writer, title string) error {
	fmt.Fprintf(w, "%s: %d requests, mean quality strong %.3f, weak %.3f, 95%% of strong = %.3f\n",
		title, c.N, c.Strong, c.Weak, 0.95*c.Strong)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "router\tAPGR\tstrong share @95%\t")
	for k := 1; k < 10; k++ {
		fmt.Fprintf(tw, "PGR@%d%%\t", k*10)
	}
	fmt.Fprintln(tw)
	for _, r := range c.Rows {
		fmt.Fprintf(tw, "%s\t%.3f\t%.1f%%\t", r.Router, r.APGR, 100*r.ShareAt95)
		for k := 1; k < 10; k++ {
			if len(r.PGR) != 11 {
				fmt.Fprint(tw, "-\t")
				continue
			}
			fmt.Fprintf(tw, "%.2f\t", r.PGR[k])
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "classifier's APGR, 95%% bootstrap interval over resampled requests: %.3f to %.3f\n", c.APGRLow, c.APGRHigh)
	if len(c.Categories) > 0 {
		fmt.Fprint(w, "classifier's mean score by category (gap = strong - weak quality):")
		for i, cs := range c.Categories {
			if i%4 == 0 {
				fmt.Fprint(w, "\n ")
			}
			fmt.Fprintf(w, " %-11s %.3f (gap %+.2f)", cs.Category, cs.Score, cs.Gap)
		}
		fmt.Fprintln(w)
	}
	return nil
}
