package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// chunked decodes a chunked response body (RFC 9112, section 7.1) from the connection's
// reader. One Read returns the data of as many chunks as are already buffered, where
// fasthttp's stream returns one chunk a read: engines frame each streamed event as a
// chunk of its own, so the SSE reader above then finds the events that arrived together
// (models.Buffered) and the gateway writes them together. Past the first byte of a Read
// it never waits: it stops at a chunk header, data or line end not yet in the buffer.
type chunked struct {
	br   *bufio.Reader
	left int64 // data bytes left in the current chunk
	crlf bool  // the current chunk's data is read, its line end is not
	eof  bool  // the last chunk and the trailers are read
	err  error // sticky
}

// errBadChunk: the engine's chunked framing is broken.
var errBadChunk = errors.New("upstream: malformed chunked encoding")

// maxChunkSize bounds one chunk's declared size (the SSE reader bounds an event anyway).
const maxChunkSize = 1 << 40

func (c *chunked) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if c.eof {
			break
		}
		if c.err != nil {
			return n, c.err
		}
		wait := n == 0 // only the first step of a Read may wait for the engine
		switch {
		case c.crlf:
			if !wait && c.br.Buffered() < 2 {
				return n, nil
			}
			c.err = readLineEnd(c.br)
			c.crlf = false
		case c.left == 0:
			if !wait && !c.headerBuffered() {
				return n, nil
			}
			c.err = c.header()
		default:
			m := int64(len(p) - n)
			if !wait {
				m = min(m, int64(c.br.Buffered()))
				if m == 0 {
					return n, nil
				}
			}
			k, err := c.br.Read(p[n : n+int(min(m, c.left))])
			n += k
			c.left -= int64(k)
			if err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				c.err = err
			} else if c.left == 0 {
				c.crlf = true
			}
		}
	}
	if c.eof {
		// The end with the last data, so that the caller knows at once (Call.eof: a
		// WaitReady after it must not wait on the idle connection).
		return n, io.EOF
	}
	return n, nil
}

// headerBuffered reports whether the next chunk's header can be read without waiting:
// its line is buffered, and for the last chunk (size 0) the end of the trailers too.
func (c *chunked) headerBuffered() bool {
	b, _ := c.br.Peek(c.br.Buffered())
	_, _, ok := headerIn(b, len(b) == c.br.Size())
	return ok
}

// headerIn finds a chunk header at the start of b, what the reader has buffered: ok when
// reading it cannot wait, with the chunk's size and the header's length. For the last
// chunk that takes its trailers up to the empty line. A malformed line counts as ok with
// size -1: reading it reports the error at once. So does a header line not ended within
// a full buffer (full: b is the whole buffer, starting at the line), which the reader
// refuses as too long; a trailer line is read after the header's, from a buffer no longer
// full, so an unended one waits.
func headerIn(b []byte, full bool) (size int64, n int, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return -1, 0, full
	}
	size, valid := chunkSize(b[:i+1])
	if !valid {
		return -1, i + 1, true
	}
	if size > 0 {
		return size, i + 1, true
	}
	// The trailers, read as header does.
	rest := b[i+1:]
	for k := 0; ; k++ {
		j := bytes.IndexByte(rest, '\n')
		if j < 0 {
			return 0, i + 1, false
		}
		if j < 1 || rest[j-1] != '\r' || j == 1 || k == maxTrailers {
			return 0, i + 1, true // malformed, the end, or too many: at once
		}
		rest = rest[j+1:]
	}
}

// ReadReady reports whether a Read now returns data, the body's end or an error without
// waiting for the engine: what SSE.BufferedData asks before it reads on for an event
// that is not all in its own buffer yet.
func (c *chunked) ReadReady() bool {
	if c.eof || c.err != nil {
		return true
	}
	b, _ := c.br.Peek(c.br.Buffered())
	if c.left > 0 {
		return len(b) > 0
	}
	full := len(b) == c.br.Size() // the header line starts the buffer
	if c.crlf {
		if len(b) < 2 {
			return false
		}
		if b[0] != '\r' || b[1] != '\n' {
			return true // an error, at once
		}
		b, full = b[2:], false // the header line is read after the line end's bytes
	}
	size, n, ok := headerIn(b, full)
	// A chunk with data: at least its first byte must be here too, or Read would wait.
	return ok && (size <= 0 || len(b) > n)
}

// header reads a chunk's header; at the last chunk it reads the trailers and ends.
func (c *chunked) header() error {
	line, err := readLine(c.br)
	if err != nil {
		return err
	}
	size, ok := chunkSize(line)
	if !ok {
		return errBadChunk
	}
	if size > 0 {
		c.left = size
		return nil
	}
	for i := 0; ; i++ { // trailers, up to the empty line
		line, err := readLine(c.br)
		if err != nil {
			return err
		}
		if len(line) == 2 {
			c.eof = true
			return nil
		}
		if i == maxTrailers {
			return errBadChunk
		}
	}
}

// maxTrailers bounds the trailer lines after the last chunk (engines send none).
const maxTrailers = 32

// readLine reads one line of the framing (at most the reader's buffer), which must end
// in CRLF, as fasthttp's and Go's readers require.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	switch err {
	case nil:
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return nil, errBadChunk
		}
		return line, nil
	case io.EOF:
		return nil, io.ErrUnexpectedEOF
	case bufio.ErrBufferFull:
		return nil, errBadChunk
	}
	return nil, err
}

// readLineEnd reads the CRLF that ends a chunk's data.
func readLineEnd(br *bufio.Reader) error {
	b, err := br.Peek(2)
	if err != nil {
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	if b[0] != '\r' || b[1] != '\n' {
		return errBadChunk
	}
	_, _ = br.Discard(2)
	return nil
}

// chunkSize parses a chunk header line: hex digits (leading zeros allowed), optional
// extensions after ';', then CRLF.
func chunkSize(line []byte) (int64, bool) {
	line, ok := bytes.CutSuffix(line, []byte("\r\n"))
	if !ok {
		return 0, false
	}
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	for len(line) > 1 && line[0] == '0' {
		line = line[1:]
	}
	if len(line) == 0 || len(line) > 10 {
		return 0, false
	}
	var size int64
	for _, ch := range line {
		var d byte
		switch {
		case ch >= '0' && ch <= '9':
			d = ch - '0'
		case ch >= 'a' && ch <= 'f':
			d = ch - 'a' + 10
		case ch >= 'A' && ch <= 'F':
			d = ch - 'A' + 10
		default:
			return 0, false
		}
		size = size<<4 | int64(d)
	}
	return size, size <= maxChunkSize
}
