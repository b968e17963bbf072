package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestSSE(t *testing.T) {
	in := ": comment\n\ndata: {\"a\":1}\n\nevent: ping\ndata: x\ndata: y\r\n\r\ndata:[DONE]\n\nerror: {\"e\":1}\n\ndata: tail"
	s := NewSSE(strings.NewReader(in), 0)
	defer s.Release()
	want := []struct{ ev, data string }{{"", `{"a":1}`}, {"ping", "x\ny"}, {"", "[DONE]"}, {"error", `{"e":1}`}, {"", "tail"}}
	for i, w := range want {
		ev, data, err := s.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if string(ev) != w.ev || string(data) != w.data {
			t.Fatalf("event %d = %q %q, want %q %q", i, ev, data, w.ev, w.data)
		}
	}
	if _, _, err := s.Next(); err != io.EOF {
		t.Fatalf("after last event err = %v, want EOF", err)
	}
}

func TestSSELongLine(t *testing.T) {
	long := strings.Repeat("x", 100<<10)
	s := NewSSE(strings.NewReader("data: "+long+"\n\n"), 0)
	defer s.Release()
	_, data, err := s.Next()
	if err != nil || string(data) != long {
		t.Fatalf("long line: len %d err %v", len(data), err)
	}
}

func FuzzSSE(f *testing.F) {
	f.Add("data: a\n\ndata: b\n\n")
	f.Add("event: x\ndata:\n\n:c\n")
	f.Fuzz(func(t *testing.T, in string) {
		s := NewSSE(strings.NewReader(in), 0)
		defer s.Release()
		for i := 0; i <= len(in); i++ {
			if _, _, err := s.Next(); err != nil {
				if err != io.EOF {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
		}
		t.Fatalf("more events than bytes in %q", in)
	})
}

// endless yields n bytes of b, then EOF, counting what was read.
type endless struct {
	b    byte
	n    int
	read int
}

func (e *endless) Read(p []byte) (int, error) {
	if e.read >= e.n {
		return 0, io.EOF
	}
	k := min(len(p), e.n-e.read)
	for i := range p[:k] {
		p[i] = e.b
	}
	e.read += k
	return k, nil
}

// TestSSEEventBound: an engine that sends a line (or an event of many lines) longer
// than the bound fails the stream with ErrEventTooLarge, having read little more than
// the bound, instead of gathering it all in memory.
func TestSSEEventBound(t *testing.T) {
	const max = 1 << 20
	for _, tc := range []struct {
		name string
		r    io.Reader
		src  *endless
	}{
		{"one long line", nil, &endless{b: 'x', n: 64 << 20}},
		{"many data lines", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r io.Reader
			var counted *endless
			if tc.src != nil {
				counted = tc.src
				r = io.MultiReader(strings.NewReader("data: "), tc.src)
			} else {
				counted = &endless{b: 'y', n: 64 << 20}
				// "data: yyyy...\n" lines: 1 KiB each, never a blank line.
				r = &lines{src: counted}
			}
			s := NewSSE(r, max)
			defer s.Release()
			_, data, err := s.Next()
			if !errors.Is(err, ErrEventTooLarge) {
				t.Fatalf("err = %v (event of %d bytes), want ErrEventTooLarge", err, len(data))
			}
			if counted.read > 2*max {
				t.Fatalf("read %d bytes before giving up, bound %d", counted.read, max)
			}
		})
	}
}

// lines turns src into 1 KiB "data: ..." lines.
type lines struct {
	src *endless
	buf []byte
}

func (l *lines) Read(p []byte) (int, error) {
	if len(l.buf) == 0 {
		chunk := make([]byte, 1024)
		n, err := l.src.Read(chunk)
		if n == 0 {
			return 0, err
		}
		l.buf = append(append([]byte("data: "), chunk[:n]...), '\n')
	}
	n := copy(p, l.buf)
	l.buf = l.buf[n:]
	return n, nil
}

// TestClientSSE: a client's SSE readers come from its own pool, keep its event bound,
// and a released reader serves the next stream from the start.
func TestClientSSE(t *testing.T) {
	c, err := New("http://127.0.0.1:1", Options{MaxEvent: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for round := range 3 {
		s := c.SSE(strings.NewReader("data: one\n\ndata: " + strings.Repeat("x", 100) + "\n\n"))
		_, data, err := s.Next()
		if err != nil || string(data) != "one" {
			t.Fatalf("round %d: first event %q, %v", round, data, err)
		}
		if _, _, err := s.Next(); !errors.Is(err, ErrEventTooLarge) {
			t.Fatalf("round %d: a 106-byte event under a 64-byte bound: %v, want ErrEventTooLarge", round, err)
		}
		s.Release()
		s.Release() // idempotent
	}
}

// TestSSEBufferedData: the next event's data when the whole event is in the buffer, and
// nothing consumed: Next returns the same event after.
func TestSSEBufferedData(t *testing.T) {
	for _, tc := range []struct {
		in, data string
		ok       bool
	}{
		{"data: a\n\n", "a", true},
		{"data: a\n", "", false},
		{"data: a", "", false},
		{": keep-alive\n\ndata: b\n\n", "b", true},
		{"\n\nevent: x\ndata: y\n\n", "y", true},
		{"data: z\r\n\r\ndata: w\r\n\r\n", "z", true},
		{"data: one\ndata: two\n\n", "one", true},
		{"error: {\"message\":\"boom\"}\n\n", "", false},
		{"retry: 10\ndata: r\n\n", "", false},
		{": only a comment\n\n", "", false},
	} {
		s := NewSSE(strings.NewReader(tc.in), 0)
		if _, err := s.br.Peek(1); err != nil {
			t.Fatal(err)
		}
		data, ok := s.BufferedData()
		if ok != tc.ok || string(data) != tc.data {
			t.Errorf("%q: BufferedData = %q, %v; want %q, %v", tc.in, data, ok, tc.data, tc.ok)
		}
		if ok {
			if _, d, err := s.Next(); err != nil || !strings.HasPrefix(string(d), tc.data) {
				t.Errorf("%q: Next after BufferedData = %q, %v", tc.in, d, err)
			}
		}
	}
}

// TestSSEBufferedDataReadsOn: events that arrived together (one chunk each) are all at
// hand, although the SSE reader's own buffer holds only a few of them: BufferedData
// reads on from the connection's buffer where that cannot wait, and Next then never
// waits for the engine; BufferedData itself never reads where that would wait. The
// event cut by the end of what arrived is not at hand.
func TestSSEBufferedDataReadsOn(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for i := range 200 {
		var parts [][]byte
		var want []string
		for j := range 5 + rng.IntN(60) {
			d := fmt.Sprintf(`{"n":%d,"pad":%q}`, j, strings.Repeat("x", rng.IntN(300)))
			want = append(want, d)
			parts = append(parts, []byte("data: "+d+"\n\n"))
		}
		wire := encodeChunked(rng, parts)
		cut := len(wire)
		if i%2 == 1 {
			cut = rng.IntN(len(wire) + 1)
		}
		// The events whose bytes all arrived: those whose end is in wire[:cut].
		whole, end := 0, 0
		for _, p := range parts {
			end = bytes.Index(wire[end:], p) + end + len(p)
			if end > cut {
				break
			}
			whole++
		}
		g := &gate{data: wire[:cut]}
		s := NewSSE(&chunked{br: bufio.NewReaderSize(g, 64<<10)}, 0)
		// The first event is read as the gateway does (it may fill the buffers); every
		// one after it must be at hand exactly when its bytes arrived.
		if whole == 0 {
			continue // (a reader that cannot wait ends the first event where it was cut)
		}
		_, d, err := s.Next()
		if err != nil || string(d) != want[0] {
			t.Fatalf("case %d: first event %q, %v", i, d, err)
		}
		got := 1
		for got < len(want) {
			waits := g.waits
			data, ok := s.BufferedData()
			if g.waits != waits {
				t.Fatalf("case %d: BufferedData read from the engine's connection where that waits", i)
			}
			if !ok {
				break
			}
			_, d, err := s.Next()
			if err != nil || string(d) != want[got] || !bytes.HasPrefix(d, data) {
				t.Fatalf("case %d: event %d at hand as %q, then Next = %q, %v", i, got, data, d, err)
			}
			got++
		}
		if cut == len(wire) && got != len(want) {
			t.Fatalf("case %d: %d of %d events at hand with the whole body arrived", i, got, len(want))
		}
		if got != whole {
			t.Fatalf("case %d: %d events at hand, %d arrived whole", i, got, whole)
		}
	}
}

// TestCallReadReady: a call answers for its chunked body; a body it does not decode
// itself is never ready, one that ended always is.
func TestCallReadReady(t *testing.T) {
	for _, tc := range []struct {
		name string
		call Call
		want bool
	}{
		{"chunk buffered", Call{body: &chunked{br: bufio.NewReader(strings.NewReader("3\r\nabc\r\n"))}}, true},
		{"nothing buffered", Call{body: &chunked{br: bufio.NewReader(&gate{})}}, false},
		{"another body", Call{body: strings.NewReader("data: x\n\n")}, false},
		{"no body", Call{}, true},
		{"ended", Call{body: strings.NewReader(""), eof: true}, true},
	} {
		if c, ok := tc.call.body.(*chunked); ok && tc.want {
			if _, err := c.br.Peek(1); err != nil {
				t.Fatal(err)
			}
		}
		if got := tc.call.ReadReady(); got != tc.want {
			t.Errorf("%s: ReadReady = %v, want %v", tc.name, got, tc.want)
		}
	}
}
