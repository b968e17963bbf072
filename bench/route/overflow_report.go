package route

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteTable prints the result as a table, then the targets.
func (r *OverflowResult) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "overflow: %d llama-server engines x %d slots (capacity %.1f requests/s at %d output tokens), SLO %.0f ms (overflow beyond %.0f ms expected, or %.0f ms waited); fake clouds EU and US (TTFT %.0f ms, %.0f tokens/s)\n",
		r.Engines, r.Slots/max(r.Engines, 1), r.CapacityRPS, r.OutputTokens, r.SLOms, r.AdmitMs, r.MaxWaitMs, r.CloudTTFTms, r.CloudTPS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "load\trate/s\trequests\terrors\toverflow\tp50 TTFT ms\tp99 TTFT ms\tp99 local\tp99 cloud\tlocal busy\tEU reqs\tEU in EU cloud\tcloud EU\tcloud US\tresidency viol.\t")
	for _, l := range r.Levels {
		fmt.Fprintf(tw, "%.1fx\t%.1f\t%d\t%d\t%.1f%%\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f%%\t%d\t%d\t%d\t%d\t%d\t\n",
			l.Load, l.Rate, l.Requests, l.Errors, 100*l.Share, l.P50TTFTms, l.P99TTFTms, l.P99LocalTTFTms, l.P99CloudTTFTms,
			100*l.LocalBusy, l.EURequests, l.EUCloud, l.CloudEU, l.CloudUS, l.Violations)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, l := range r.Levels {
		if l.SkippedBusy+l.SkippedBreaker+l.MaxWait > 0 {
			fmt.Fprintf(w, "at %.1fx: %d local waits past max-wait moved on; clouds passed over %d times at their concurrency limit, %d with the circuit open\n",
				l.Load, l.MaxWait, l.SkippedBusy, l.SkippedBreaker)
		}
		for _, e := range l.ErrorSamples {
			fmt.Fprintf(w, "error at %.1fx: %s\n", l.Load, e)
		}
	}
	check := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISSED"
	}
	fmt.Fprintf(w, "targets: 3x P99 TTFT %.0f ms <= SLO %.0f ms: %s; 3x local slots busy %.1f%% >= 90%%: %s; overflow at 0.5x %.1f%% = 0: %s; residency violations %d = 0: %s; errors %d = 0: %s\n",
		r.P99TTFTms3x, r.SLOms, check(r.P99TTFTms3x <= r.SLOms), 100*r.LocalBusy3x, check(r.LocalBusy3x >= 0.9),
		100*r.OverflowShareHalf, check(r.OverflowShareHalf == 0), r.ResidencyViolations, check(r.ResidencyViolations == 0),
		r.Errors, check(r.Errors == 0))
	return nil
}

// JSON is the result as one JSON object.
func (r *OverflowResult) JSON() ([]byte, error) { return json.Marshal(r) }

// Name is the overflow part's name in "sluice bench route --part".
func (r *OverflowResult) Name() string { return "overflow" }

// Figures are the overflow part's JSON figures.
func (r *OverflowResult) Figures() map[string]any {
	return map[string]any{
		"p99_ttft_ms_3x":       r.P99TTFTms3x,
		"slo_ms":               r.SLOms,
		"local_busy_3x":        r.LocalBusy3x,
		"overflow_share_half":  r.OverflowShareHalf,
		"residency_violations": r.ResidencyViolations,
		"overflow_errors":      r.Errors,
		"capacity_rps":         r.CapacityRPS,
		"overflow_levels":      r.Levels,
	}
}

// Misses names the overflow targets missed.
func (r *OverflowResult) Misses() []string {
	var out []string
	if r.P99TTFTms3x > r.SLOms {
		out = append(out, fmt.Sprintf("P99 TTFT at 3x %.0f ms > SLO %.0f ms", r.P99TTFTms3x, r.SLOms))
	}
	if r.LocalBusy3x < 0.9 {
		out = append(out, fmt.Sprintf("local slots busy at 3x %.1f%% < 90%%", 100*r.LocalBusy3x))
	}
	if r.OverflowShareHalf != 0 {
		out = append(out, fmt.Sprintf("overflow at 0.5x %.1f%% > 0", 100*r.OverflowShareHalf))
	}
	if r.ResidencyViolations != 0 {
		out = append(out, fmt.Sprintf("%d residency violations", r.ResidencyViolations))
	}
	if r.Errors != 0 {
		out = append(out, fmt.Sprintf("%d errors", r.Errors))
	}
	return out
}
