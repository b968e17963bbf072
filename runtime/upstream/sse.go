package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
)

// SSE reads server-sent events from a stream.
type SSE struct {
	br    *bufio.Reader
	src   io.Reader  // what br reads, for WaitReady
	pool  *sync.Pool // where br goes back on Release (nil: nowhere)
	data  []byte
	event []byte
	long  []byte // gathers a line longer than the reader's buffer
	max   int
}

// DefaultMaxEvent bounds one event (its lines together) when NewSSE is given no bound.
const DefaultMaxEvent = 4 << 20

// ErrEventTooLarge: an event (or one of its lines) is longer than the reader's bound.
// The stream cannot go on: what is left of the event was not read.
var ErrEventTooLarge = errors.New("upstream: server-sent event larger than the limit")

// sseBuffer is the line reader's buffer: it holds one line at a time (a longer line is
// gathered in SSE.long). Engines' events are a few hundred bytes, and every stream in
// flight holds one buffer.
const sseBuffer = 1 << 10

// NewSSE reads events from r, each at most maxEvent bytes (0: DefaultMaxEvent), with a
// reader of its own. Client.SSE reuses pooled readers instead. Call Release when done.
func NewSSE(r io.Reader, maxEvent int) *SSE {
	if maxEvent <= 0 {
		maxEvent = DefaultMaxEvent
	}
	return &SSE{br: bufio.NewReaderSize(r, sseBuffer), src: r, max: maxEvent}
}

// SSE reads events from r (a response body of c's), each at most c's MaxEvent bytes,
// with a reader from c's pool. Call Release when done.
func (c *Client) SSE(r io.Reader) *SSE {
	br, _ := c.readers.Get().(*bufio.Reader)
	if br == nil {
		br = bufio.NewReaderSize(r, sseBuffer)
	} else {
		br.Reset(r)
	}
	limit := c.opts.MaxEvent
	if limit <= 0 {
		limit = DefaultMaxEvent
	}
	return &SSE{br: br, src: r, pool: &c.readers, max: limit}
}

// Release returns the reader's buffer to its pool.
func (s *SSE) Release() {
	if s.br != nil {
		s.br.Reset(nil)
		if s.pool != nil {
			s.pool.Put(s.br)
		}
		s.br = nil
		s.src = nil
	}
}

// BufferedData returns the data of the next event if the whole event is already at
// hand: in the reader's buffer, or (the rest of it) in the engine connection's, from which
// it is then read without waiting (the source's ReadReady), so a later call to Next
// returns it without waiting for the engine. Only its first data line is returned when
// it has several. Comments and events without data before it are passed over.
func (s *SSE) BufferedData() ([]byte, bool) {
	if s.br == nil {
		return nil, false
	}
	for {
		if n := s.br.Buffered(); n > 0 {
			b, _ := s.br.Peek(n)
			data, whole, ok := firstEvent(b)
			if whole {
				return data, ok
			}
		}
		// Not all here: read on while that cannot wait, within the buffer.
		r, ready := s.src.(interface{ ReadReady() bool })
		if !ready || s.br.Buffered() == s.br.Size() || !r.ReadReady() {
			return nil, false
		}
		if _, err := s.br.Peek(s.br.Buffered() + 1); err != nil {
			return nil, false // the end or an error: Next reports it
		}
	}
}

// firstEvent finds the first event with data in b: its first data line, whole when the
// event is all in b; ok false when a line Next treats otherwise comes first (an error
// line).
func firstEvent(b []byte) (data []byte, whole, ok bool) {
	have := false
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return nil, false, false // the event is not all here
		}
		line := bytes.TrimRight(b[:i], "\r")
		b = b[i+1:]
		switch {
		case len(line) == 0:
			if have {
				return data, true, true
			}
		case bytes.HasPrefix(line, []byte("data:")):
			if !have {
				data = bytes.TrimPrefix(line[len("data:"):], []byte(" "))
				have = true
			}
		case line[0] != ':' && !bytes.HasPrefix(line, []byte("event:")):
			return nil, true, false // a field Next treats otherwise (an error line)
		}
	}
}

// Read reads the raw bytes left after the events read so far (for draining).
func (s *SSE) Read(p []byte) (int, error) { return s.br.Read(p) }

// Next returns the next event's name (often empty) and data. The slices are valid until
// the next call. It returns io.EOF at the end of the stream; a stream that ends in the
// middle of an event returns that event first.
func (s *SSE) Next() (event, data []byte, err error) {
	s.data = s.data[:0]
	s.event = s.event[:0]
	have := false
	for {
		line, err := s.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A very long line: gather it whole, up to the bound.
			s.long = append(s.long[:0], line...)
			for err == bufio.ErrBufferFull {
				if len(s.long)+len(s.data) > s.max {
					return nil, nil, ErrEventTooLarge
				}
				line, err = s.br.ReadSlice('\n')
				s.long = append(s.long, line...)
			}
			line = s.long
		}
		if len(line)+len(s.data) > s.max {
			return nil, nil, ErrEventTooLarge
		}
		if err != nil && len(line) == 0 {
			if have {
				return s.event, s.data, nil
			}
			return nil, nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if have {
				return s.event, s.data, nil
			}
			continue
		}
		if line[0] == ':' {
			continue // comment
		}
		name, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			name, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(name) {
		case "data":
			if have {
				s.data = append(s.data, '\n')
			}
			s.data = append(s.data, value...)
			have = true
		case "event":
			s.event = append(s.event[:0], value...)
		case "error":
			// llama-server writes "error: {json}" lines for some failures.
			s.event = append(s.event[:0], "error"...)
			s.data = append(s.data[:0], value...)
			have = true
		}
		if err != nil {
			if have {
				return s.event, s.data, nil
			}
			return nil, nil, err
		}
	}
}
