package sim

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// WriteTable writes results as an aligned text table, one row per result.
func WriteTable(w io.Writer, rs []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tgpus\trequests\tdone\trate/s\tttft p50\tttft p90\tttft p99\tout tok/s\tgoodput\tprefix hit\tsimulated\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f\t%s\t%s\t%s\t%.0f\t%.1f%%\t%.1f%%\t%s\t\n",
			r.Policy, r.GPUs, r.Requests, r.Completed, r.Rate,
			ms(r.TTFTp50), ms(r.TTFTp90), ms(r.TTFTp99), r.OutputTokensPerSec,
			100*r.Goodput, 100*r.PrefixHitRatio, r.Simulated.Round(100*time.Millisecond))
	}
	_ = tw.Flush()
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
}
