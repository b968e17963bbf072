package route

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
)

// Section is one part's results. Parts are independent: each prints its own table and
// contributes its own figures to the JSON line.
type Section interface {
	// Name is the part's name ("classify", "overflow"), as --part takes it.
	Name() string
	// WriteTable prints the part's readable results.
	WriteTable(w io.Writer) error
	// Figures are the part's headline figures for the JSON line, flat, with keys unique
	// across parts (snake_case, e.g. "apgr_mt_bench").
	Figures() map[string]any
	// Misses names the targets the part missed (empty: all met).
	Misses() []string
}

// Report is the results of the parts that ran, in order.
type Report struct {
	Sections []Section
}

// Add appends a part's results.
func (r *Report) Add(s Section) { r.Sections = append(r.Sections, s) }

// WriteTable prints each part's table under its name, then the targets missed.
func (r *Report) WriteTable(w io.Writer) error {
	for i, s := range r.Sections {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "== %s ==\n", s.Name())
		if err := s.WriteTable(w); err != nil {
			return err
		}
	}
	misses := r.Misses()
	fmt.Fprintln(w)
	if len(misses) == 0 {
		_, err := fmt.Fprintln(w, "targets: all met")
		return err
	}
	for _, m := range misses {
		if _, err := fmt.Fprintf(w, "target missed: %s\n", m); err != nil {
			return err
		}
	}
	return nil
}

// Misses lists every part's missed targets, prefixed with the part's name.
func (r *Report) Misses() []string {
	var out []string
	for _, s := range r.Sections {
		for _, m := range s.Misses() {
			out = append(out, s.Name()+": "+m)
		}
	}
	return out
}

// JSON merges the parts' figures into one object, with "parts" (the parts that ran) and
// "targets_met". Two parts reporting the same key is an error.
func (r *Report) JSON() ([]byte, error) {
	all := map[string]any{}
	var parts []string
	for _, s := range r.Sections {
		parts = append(parts, s.Name())
		for _, k := range slices.Sorted(maps.Keys(s.Figures())) {
			if _, dup := all[k]; dup {
				return nil, fmt.Errorf("bench route: figure %q reported by two parts", k)
			}
			all[k] = s.Figures()[k]
		}
	}
	for _, k := range []string{"parts", "targets_met", "targets_missed"} {
		if _, dup := all[k]; dup {
			return nil, fmt.Errorf("bench route: a part reports the reserved figure %q", k)
		}
	}
	misses := r.Misses()
	if misses == nil {
		misses = []string{}
	}
	all["parts"] = parts
	all["targets_met"] = len(misses) == 0
	all["targets_missed"] = misses
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(all); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
