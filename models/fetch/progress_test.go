package fetch

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// clock is a manual clock for the progress display.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Unix(1_700_000_000, 0)} }
func write(p *progress, n int)           { p.Write(make([]byte, n)) }
func countOf(s, sub string) int          { return strings.Count(s, sub) }
func linesOf(s string) []string          { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }
func lastDraw(s string) string           { return s[strings.LastIndex(s, "\r")+1:] }
func trimmed(s string) string            { return strings.TrimRight(s, " \n") }
func feed(p *progress, c *clock, steps int, n int, every time.Duration) {
	for range steps {
		c.advance(every)
		write(p, n)
	}
}

func TestFetchProgressLines(t *testing.T) {
	tests := []struct {
		name  string
		total int64
		steps int // writes of 1 MB, one second apart
		want  []string
	}{
		{name: "known length: a line per 10%", total: 10e6, steps: 10, want: []string{
			"download: 10% (1.0 of 10.0 MB, 1.0 MB/s, ETA 9s)",
			"download: 20% (2.0 of 10.0 MB, 1.0 MB/s, ETA 8s)",
			"download: 30% (3.0 of 10.0 MB, 1.0 MB/s, ETA 7s)",
			"download: 40% (4.0 of 10.0 MB, 1.0 MB/s, ETA 6s)",
			"download: 50% (5.0 of 10.0 MB, 1.0 MB/s, ETA 5s)",
			"download: 60% (6.0 of 10.0 MB, 1.0 MB/s, ETA 4s)",
			"download: 70% (7.0 of 10.0 MB, 1.0 MB/s, ETA 3s)",
			"download: 80% (8.0 of 10.0 MB, 1.0 MB/s, ETA 2s)",
			"download: 90% (9.0 of 10.0 MB, 1.0 MB/s, ETA 1s)",
			"download: done, 10.0 MB in 10s (1.0 MB/s)",
		}},
		{name: "known length: big steps skip deciles", total: 4e6, steps: 4, want: []string{
			"download: 20% (1.0 of 4.0 MB, 1.0 MB/s, ETA 3s)",
			"download: 50% (2.0 of 4.0 MB, 1.0 MB/s, ETA 2s)",
			"download: 70% (3.0 of 4.0 MB, 1.0 MB/s, ETA 1s)",
			"download: done, 4.0 MB in 4s (1.0 MB/s)",
		}},
		{name: "unknown length: a line per 10 seconds", total: -1, steps: 25, want: []string{
			"download: 10.0 MB (1.0 MB/s)",
			"download: 20.0 MB (1.0 MB/s)",
			"download: done, 25.0 MB in 25s (1.0 MB/s)",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			var out bytes.Buffer
			p := newProgress(&out, false, tc.total, 0, c.now)
			feed(p, c, tc.steps, 1e6, time.Second)
			p.finish()
			p.finish() // idempotent
			got := linesOf(out.String())
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if strings.Contains(out.String(), "\r") {
				t.Error("line mode wrote a carriage return")
			}
		})
	}
}

func TestFetchProgressBar(t *testing.T) {
	tests := []struct {
		name      string
		total     int64
		every     time.Duration // between 1 MB writes
		steps     int
		wantDraws int    // carriage returns, the first draw and the final one included
		wantLast  string // the final bar
	}{
		{name: "throttled to the redraw interval", total: 100e6, every: 10 * time.Millisecond, steps: 100,
			wantDraws: 1 + 4 + 1, wantLast: "100.0% [========================] 100.0/100.0 MB  100.0 MB/s  ETA 0s"},
		{name: "slow writes redraw each time", total: 8e6, every: time.Second, steps: 4,
			wantDraws: 1 + 4 + 1, wantLast: " 50.0% [============>           ] 4.0/8.0 MB  1.0 MB/s  ETA 4s"},
		{name: "unknown length shows bytes", total: -1, every: time.Second, steps: 3,
			wantDraws: 1 + 3 + 1, wantLast: "3.0 MB (3000000 bytes)  1.0 MB/s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			var out bytes.Buffer
			p := newProgress(&out, true, tc.total, 0, c.now)
			feed(p, c, tc.steps, 1e6, tc.every)
			p.finish()
			s := out.String()
			if got := countOf(s, "\r"); got != tc.wantDraws {
				t.Errorf("%d draws, want %d:\n%q", got, tc.wantDraws, s)
			}
			bar, _, _ := strings.Cut(lastDraw(s), "\n")
			if trimmed(bar) != tc.wantLast {
				t.Errorf("last bar %q, want %q", trimmed(bar), tc.wantLast)
			}
			if !strings.HasSuffix(s, "\ndownload: done, "+mb(p.done)+" MB in "+dur(time.Duration(tc.steps)*tc.every)+
				" ("+p.rate(c.now())+")\n") {
				t.Errorf("no summary line after the bar:\n%q", s)
			}
		})
	}
}

func TestFetchProgressAbortEndsTheBarLine(t *testing.T) {
	c := newClock()
	var out bytes.Buffer
	p := newProgress(&out, true, 10e6, 0, c.now)
	feed(p, c, 2, 1e6, time.Second)
	p.abort()
	p.finish() // no summary after an abort
	if s := out.String(); !strings.HasSuffix(s, "\n") || strings.Contains(s, "done") {
		t.Errorf("output after abort: %q", s)
	}
}

func TestFetchProgressNilWriter(t *testing.T) {
	c := newClock()
	p := newProgress(nil, true, 10, 0, c.now)
	if n, err := p.Write([]byte("abc")); n != 3 || err != nil || p.done != 3 {
		t.Errorf("Write = %d, %v; done %d", n, err, p.done)
	}
	p.finish()
	p.abort()
}

func TestFetchFormat(t *testing.T) {
	tests := []struct{ got, want string }{
		{dur(0), "0s"},
		{dur(59*time.Second + 400*time.Millisecond), "59s"},
		{dur(65 * time.Second), "1m05s"},
		{dur(3*time.Hour + 2*time.Minute + 59*time.Second), "3h02m"},
		{mb(1_234_567), "1.2"},
		{bar(0, 4), "[>   ]"},
		{bar(0.5, 4), "[==> ]"},
		{bar(1, 4), "[====]"},
		{bar(2, 4), "[====]"},
	}
	for i, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%d: got %q, want %q", i, tc.got, tc.want)
		}
	}
}
