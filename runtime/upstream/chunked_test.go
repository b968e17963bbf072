package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
)

// encodeChunked frames parts as a chunked body, with extensions and trailers now and then.
func encodeChunked(rng *rand.Rand, parts [][]byte) []byte {
	var b bytes.Buffer
	for _, p := range parts {
		switch rng.IntN(4) {
		case 0:
			fmt.Fprintf(&b, "%X;ext=1\r\n", len(p))
		case 1:
			fmt.Fprintf(&b, "%x \r\n", len(p))
		default:
			fmt.Fprintf(&b, "%x\r\n", len(p))
		}
		b.Write(p)
		b.WriteString("\r\n")
	}
	b.WriteString("0\r\n")
	if rng.IntN(3) == 0 {
		b.WriteString("X-Trailer: 1\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// trickle returns at most max bytes a read.
type trickle struct {
	r   io.Reader
	max int
}

func (t *trickle) Read(p []byte) (int, error) { return t.r.Read(p[:min(len(p), t.max)]) }

// errWouldBlock marks a read the engine could not have answered yet.
var errWouldBlock = errors.New("would block")

// gate serves its bytes, then answers every read with errWouldBlock (counted in waits).
type gate struct {
	data  []byte
	waits int
}

func (g *gate) Read(p []byte) (int, error) {
	if len(g.data) == 0 {
		g.waits++
		return 0, errWouldBlock
	}
	n := copy(p, g.data)
	g.data = g.data[n:]
	return n, nil
}

// TestChunked: random bodies, framed at random, read in random pieces through readers of
// several sizes, come out whole; the connection's reader is left at the next response.
func TestChunked(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 2000 {
		parts := make([][]byte, rng.IntN(12))
		var want []byte
		for j := range parts {
			parts[j] = make([]byte, 1+rng.IntN(700))
			for k := range parts[j] {
				parts[j][k] = byte('a' + rng.IntN(26))
			}
			want = append(want, parts[j]...)
		}
		wire := append(encodeChunked(rng, parts), "NEXT"...)
		br := bufio.NewReaderSize(&trickle{bytes.NewReader(wire), 1 + rng.IntN(300)}, 16+rng.IntN(4096))
		c := &chunked{br: br}
		var got []byte
		buf := make([]byte, 1+rng.IntN(2000))
		for {
			n, err := c.Read(buf[:1+rng.IntN(len(buf))])
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d: %d bytes, want %d", i, len(got), len(want))
		}
		if rest, _ := io.ReadAll(br); string(rest) != "NEXT" {
			t.Fatalf("case %d: left %q after the body, want NEXT", i, rest)
		}
	}
}

// TestChunkedNeverWaitsWithData: a Read that has data returns it rather than wait for
// more: cut anywhere, the body reads up to the cut without a read past it, except as
// the first step of a Read (which returns nothing then).
func TestChunkedNeverWaitsWithData(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for i := range 3000 {
		parts := make([][]byte, 1+rng.IntN(10))
		var want []byte
		for j := range parts {
			parts[j] = bytes.Repeat([]byte{byte('a' + j)}, 1+rng.IntN(300))
			want = append(want, parts[j]...)
		}
		wire := encodeChunked(rng, parts)
		cut := rng.IntN(len(wire) + 1)
		c := &chunked{br: bufio.NewReaderSize(&gate{data: wire[:cut]}, 16+rng.IntN(2048))}
		var got []byte
		buf := make([]byte, 64+rng.IntN(2048))
		var err error
		for {
			var n int
			n, err = c.Read(buf)
			got = append(got, buf[:n]...)
			if errors.Is(err, errWouldBlock) && n > 0 {
				t.Fatalf("case %d: a Read with %d bytes waited for more", i, n)
			}
			if err != nil {
				break
			}
		}
		if !bytes.HasPrefix(want, got) {
			t.Fatalf("case %d: read %q, not a prefix of the body", i, got)
		}
		if cut == len(wire) && (err != io.EOF || !bytes.Equal(got, want)) {
			t.Fatalf("case %d: whole body: %d of %d bytes, %v", i, len(got), len(want), err)
		}
		if cut < len(wire) && !errors.Is(err, errWouldBlock) {
			t.Fatalf("case %d: cut at %d of %d: %v, want a wait", i, cut, len(wire), err)
		}
	}
}

// TestChunkedMalformed: broken framing is an error, a body cut short is
// io.ErrUnexpectedEOF.
func TestChunkedMalformed(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"zz\r\nabc\r\n0\r\n\r\n", errBadChunk},
		{"3\r\nabcX\r\n0\r\n\r\n", errBadChunk},
		{"\r\n", errBadChunk},
		{"fffffffffffff\r\n", errBadChunk},
		{"3\r\nab", io.ErrUnexpectedEOF},
		{"3\r\nabc\r\n", io.ErrUnexpectedEOF},
		{"3\r\nabc\r\n0\r\n", io.ErrUnexpectedEOF},
		{"", io.ErrUnexpectedEOF},
		{strings.Repeat("1", 5000) + "\r\n", errBadChunk},
		{"3\nabc\r\n0\r\n\r\n", errBadChunk},       // a size line without CR
		{"3\r\nabc\r\n0\n\n", errBadChunk},         // nor the end
		{"3\r\nabc\r\n0\r\nA: 1\n\n", errBadChunk}, // nor a trailer
		{"3\r\nabc\r\n0\r\n" + strings.Repeat("A: 1\r\n", 40) + "\r\n", errBadChunk},
	} {
		c := &chunked{br: bufio.NewReaderSize(strings.NewReader(tc.in), 4096)}
		_, err := io.ReadAll(c)
		if !errors.Is(err, tc.want) {
			t.Errorf("%q: %v, want %v", tc.in, err, tc.want)
		}
		if n, again := c.Read(make([]byte, 8)); n != 0 || again != err {
			t.Errorf("%q: the error is not sticky: %d, %v after %v", tc.in, n, again, err)
		}
	}
	// Accepted as fasthttp and Go's readers accept them: leading zeros, extensions,
	// trailers; the reader is left after the body.
	for _, in := range []string{"00000000003\r\nabc\r\n0\r\n\r\n", "3;a=\"x;y\"\r\nabc\r\n000\r\nT: 1\r\n\r\n", "3 \r\nabc\r\n0;e\r\n\r\n"} {
		br := bufio.NewReaderSize(strings.NewReader(in+"NEXT"), 4096)
		got, err := io.ReadAll(&chunked{br: br})
		rest, _ := io.ReadAll(br)
		if err != nil || string(got) != "abc" || string(rest) != "NEXT" {
			t.Errorf("%q: %q, %v, left %q", in, got, err, rest)
		}
	}
}

// FuzzChunked: any bytes decode without a panic or a hang, to at most as many bytes of
// data as were given, and a valid framing decodes to its data.
func FuzzChunked(f *testing.F) {
	f.Add([]byte("3\r\nabc\r\n0\r\n\r\n"), uint8(7))
	f.Add([]byte("1;x\r\na\r\n0\r\nT: 1\r\n\r\n"), uint8(1))
	f.Add([]byte("0\r\n\n"), uint8(3))
	f.Fuzz(func(t *testing.T, in []byte, piece uint8) {
		c := &chunked{br: bufio.NewReaderSize(&trickle{bytes.NewReader(in), 1 + int(piece)}, 16)}
		buf := make([]byte, 1+int(piece))
		total := 0
		for i := 0; ; i++ {
			n, err := c.Read(buf)
			total += n
			if err != nil {
				break
			}
			if i > 2*len(in)+2 {
				t.Fatalf("no end after %d reads of %d bytes of input", i, len(in))
			}
		}
		if total > len(in) {
			t.Fatalf("%d bytes of data from %d of input", total, len(in))
		}
		// Where Go's own reader and this one both accept the body, they agree on its data
		// and on where the next response starts.
		br := bufio.NewReaderSize(bytes.NewReader(in), 4096)
		got, err := io.ReadAll(&chunked{br: br})
		rest, _ := io.ReadAll(br)
		hb := bufio.NewReader(io.MultiReader(strings.NewReader("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), bytes.NewReader(in)))
		resp, rerr := http.ReadResponse(hb, nil)
		if err != nil || rerr != nil {
			return
		}
		want, werr := io.ReadAll(resp.Body)
		if werr != nil {
			return
		}
		wantRest, _ := io.ReadAll(hb)
		if !bytes.Equal(got, want) || !bytes.Equal(rest, wantRest) {
			t.Fatalf("data %q, left %q; Go's reader: %q, left %q", got, rest, want, wantRest)
		}
	})
}

// TestChunkedReadReady: ReadReady says true only when the next Read returns without
// waiting (data, the end or an error), and false whenever everything that has arrived is
// buffered and that Read would wait; on bodies cut anywhere, some with a byte changed,
// with long extensions and up to 34 trailer lines, through readers from 16 bytes (lines
// longer than the buffer) to 4 KiB.
func TestChunkedReadReady(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for i := range 5000 {
		var b bytes.Buffer
		for j := range 1 + rng.IntN(8) {
			n := 1 + rng.IntN(200)
			ext := ""
			if rng.IntN(4) == 0 {
				ext = ";x=" + strings.Repeat("e", rng.IntN(40))
			}
			fmt.Fprintf(&b, "%x%s\r\n%s\r\n", n, ext, bytes.Repeat([]byte{byte('a' + j)}, n))
		}
		b.WriteString("0\r\n")
		if rng.IntN(3) == 0 {
			for k := range rng.IntN(35) {
				fmt.Fprintf(&b, "X-T%d: %s\r\n", k, strings.Repeat("t", rng.IntN(30)))
			}
		}
		b.WriteString("\r\n")
		wire := b.Bytes()
		if rng.IntN(4) == 0 {
			wire[rng.IntN(len(wire))] = "0a\r\n;x "[rng.IntN(7)]
		}
		size := 16 + rng.IntN(64)
		if rng.IntN(2) == 0 {
			size = 4096
		}
		checkReadReady(t, fmt.Sprintf("case %d", i), wire[:rng.IntN(len(wire)+1)], size, 1+rng.IntN(300))
	}
	// The cases a review found: a full buffer whose line cannot end in it is an error at
	// once only for a header line that starts the buffer.
	for _, tc := range []struct {
		name string
		wire string
		crlf bool
		buf  int
	}{
		{"trailer not ended in a full buffer", "0\r\nX:aaaaaaaaaaa", false, 16},
		{"header after a line end, not ended", "\r\n5;aaaaaaaaaaaa", true, 16},
		{"header line longer than the buffer", "5;aaaaaaaaaaaaaaaaaaaaaa\r\nhello\r\n", false, 16},
		{"bad line end after data", "xx5\r\nhello\r\n", true, 16},
		{"33 trailers", "0\r\n" + strings.Repeat("X: 1\r\n", 33) + "\r\n", false, 256},
	} {
		g := &gate{data: []byte(tc.wire)}
		c := &chunked{br: bufio.NewReaderSize(g, tc.buf), crlf: tc.crlf}
		if _, err := c.br.Peek(1); err != nil {
			t.Fatal(err)
		}
		all := len(g.data) == 0
		ready := c.ReadReady()
		n, err := c.Read(make([]byte, 64))
		if waited := n == 0 && errors.Is(err, errWouldBlock); ready && waited {
			t.Errorf("%s: ReadReady true, then Read waited", tc.name)
		} else if !ready && !waited && all {
			t.Errorf("%s: ReadReady false, then Read = %d, %v without waiting", tc.name, n, err)
		}
	}
}

// checkReadReady reads the chunked body that arrived (wire) through a reader of bufSize
// bytes, in reads of size bytes, and checks ReadReady before each.
func checkReadReady(t *testing.T, name string, wire []byte, bufSize, size int) {
	t.Helper()
	g := &gate{data: wire}
	c := &chunked{br: bufio.NewReaderSize(g, bufSize)}
	buf := make([]byte, size)
	for step := 0; ; step++ {
		ready := c.ReadReady()
		all := len(g.data) == 0 // everything that arrived is in the reader's buffer
		n, err := c.Read(buf)
		waited := n == 0 && errors.Is(err, errWouldBlock)
		if ready && waited {
			t.Fatalf("%s step %d: ReadReady true, then Read waited", name, step)
		}
		if !ready && all && !waited {
			t.Fatalf("%s step %d: ReadReady false with everything buffered, then Read = %d, %v", name, step, n, err)
		}
		if err != nil {
			return
		}
	}
}

// FuzzChunkedReadReady: ReadReady on any bytes (go test -fuzz FuzzChunkedReadReady).
func FuzzChunkedReadReady(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"), uint16(3), uint16(4080))
	f.Add([]byte("5\r\nhel"), uint16(100), uint16(0))
	f.Add([]byte("0\r\nX: 1\r\n"), uint16(1), uint16(4080))
	f.Add([]byte("5\r\n00000\r\n0\r\n\n"), uint16(121), uint16(4080)) // a bare LF after the last chunk
	f.Fuzz(func(t *testing.T, wire []byte, size, bufSize uint16) {
		if len(wire) > 8192 {
			return
		}
		checkReadReady(t, "fuzz", wire, 16+int(bufSize)%4081, 1+int(size)%512)
	})
}
