package fetch

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// lineEvery is how often line mode reports when the total size is unknown.
const lineEvery = 10 * time.Second

// progress counts the bytes written to it and reports them to w: a bar redrawn in place
// (term) at most every redraw, or plain lines (one per 10% of a known total, one per
// lineEvery otherwise). A nil w reports nothing.
type progress struct {
	w      io.Writer
	term   bool
	total  int64 // -1: unknown
	done   int64
	now    func() time.Time
	redraw time.Duration

	start    time.Time
	last     time.Time // last report
	decile   int       // line mode: the last 10% step reported
	width    int       // term mode: width of the last bar, to blank leftovers
	drawn    bool      // term mode: a bar is on the current line
	finished bool
}

func newProgress(w io.Writer, term bool, total int64, redraw time.Duration, now func() time.Time) *progress {
	if redraw <= 0 {
		redraw = 250 * time.Millisecond
	}
	p := &progress{w: w, term: term, total: total, now: now, redraw: redraw}
	p.start = now()
	p.last = p.start
	if w != nil && term {
		p.draw(p.start)
	}
	return p
}

// Write counts p; it never fails, so it can sit in an io.MultiWriter.
func (p *progress) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	if p.w == nil {
		return len(b), nil
	}
	t := p.now()
	switch {
	case p.term:
		if t.Sub(p.last) >= p.redraw {
			p.draw(t)
		}
	case p.total > 0:
		if d := int(p.done * 10 / p.total); d > p.decile && d < 10 {
			p.decile = d
			p.last = t
			fmt.Fprintf(p.w, "download: %d%% (%s of %s MB, %s, ETA %s)\n",
				d*10, mb(p.done), mb(p.total), p.rate(t), p.eta(t))
		}
	default:
		if t.Sub(p.last) >= lineEvery {
			p.last = t
			fmt.Fprintf(p.w, "download: %s MB (%s)\n", mb(p.done), p.rate(t))
		}
	}
	return len(b), nil
}

// draw redraws the bar in place.
func (p *progress) draw(t time.Time) {
	p.last = t
	var line string
	if p.total > 0 {
		frac := float64(p.done) / float64(p.total)
		line = fmt.Sprintf("%5.1f%% %s %s/%s MB  %s  ETA %s",
			100*frac, bar(frac, 24), mb(p.done), mb(p.total), p.rate(t), p.eta(t))
	} else {
		line = fmt.Sprintf("%s MB (%d bytes)  %s", mb(p.done), p.done, p.rate(t))
	}
	pad := ""
	if n := p.width - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	p.width = len(line)
	p.drawn = true
	fmt.Fprint(p.w, "\r"+line+pad)
}

// finish reports the completed download.
func (p *progress) finish() {
	if p.w == nil || p.finished {
		return
	}
	p.finished = true
	t := p.now()
	if p.term {
		p.draw(t)
		fmt.Fprintln(p.w)
	}
	fmt.Fprintf(p.w, "download: done, %s MB in %s (%s)\n", mb(p.done), dur(t.Sub(p.start)), p.rate(t))
}

// abort ends a bar left on the line so that the error that follows starts on its own.
func (p *progress) abort() {
	if p.w == nil || p.finished {
		return
	}
	p.finished = true
	if p.term && p.drawn {
		fmt.Fprintln(p.w)
	}
}

func (p *progress) rate(t time.Time) string {
	s := t.Sub(p.start).Seconds()
	if s <= 0 {
		return "-- MB/s"
	}
	return fmt.Sprintf("%.1f MB/s", float64(p.done)/1e6/s)
}

func (p *progress) eta(t time.Time) string {
	s := t.Sub(p.start).Seconds()
	if s <= 0 || p.done == 0 || p.total <= 0 {
		return "--"
	}
	left := float64(p.total-p.done) / (float64(p.done) / s)
	return dur(time.Duration(left * float64(time.Second)))
}

// bar is a fixed-width bar: [=====>     ].
func bar(frac float64, width int) string {
	frac = min(max(frac, 0), 1)
	n := int(frac * float64(width))
	s := strings.Repeat("=", n)
	if n < width {
		s += ">" + strings.Repeat(" ", width-n-1)
	}
	return "[" + s + "]"
}

// mb formats bytes as decimal megabytes with one decimal.
func mb(n int64) string { return fmt.Sprintf("%.1f", float64(n)/1e6) }

// dur formats a duration as 7s, 4m05s or 1h02m.
func dur(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}
