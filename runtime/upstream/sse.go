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

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

// NewSSE reads events from r, each at most maxEvent bytes (0: DefaultMaxEvent). Call
// Release when done.
func NewSSE(r io.Reader, maxEvent int) *SSE {
	if maxEvent <= 0 {
		maxEvent = DefaultMaxEvent
	}
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	return &SSE{br: br, max: maxEvent}
}

// Release returns the reader's buffer to the pool.
func (s *SSE) Release() {
	if s.br != nil {
		s.br.Reset(nil)
		readerPool.Put(s.br)
		s.br = nil
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
