package openai

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unsafe"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/upstream"
	"github.com/valyala/fastjson"
)

type stream struct {
	b    *Backend
	r    *models.Request
	call *upstream.Call
	sse  *upstream.SSE
	p    *fastjson.Parser
	// deadline is the request's (zero: none), to tell a timeout from a cancellation.
	deadline time.Time

	usage     models.Usage
	haveUsage bool
	text      []byte // completion text so far, for usage estimates
	finished  bool   // a finish_reason arrived
	done      bool
	closed    bool

	// peeked is the next event as Buffered parsed it (nil: none), so that Recv does
	// not parse it again; peekData is a copy of the data it was parsed from (Recv uses
	// it only for an event with the same data: the reader's buffer may move). peekData
	// is kept through WaitReady (one event's bytes), to be reused rather than grown again.
	peeked   *fastjson.Value
	peekData []byte
}

var _ models.Stream = (*stream)(nil)

// WaitReady waits for the engine's next event (models.Waiter). The JSON parser goes
// back to its pool for the wait: a slow stream (the gateway waits here only between
// events far apart) holds none while the engine works, and takes one for the event.
func (s *stream) WaitReady() {
	if s.sse != nil && !s.done && !s.closed {
		if s.p != nil {
			s.peeked = nil
			s.b.parser.Put(s.p)
			s.p = nil
		}
		s.sse.WaitReady()
	}
}

// parser is the stream's JSON parser, taken from the pool when WaitReady gave it back.
func (s *stream) parser() *fastjson.Parser {
	if s.p == nil {
		s.p = s.b.parser.Get()
	}
	return s.p
}

// Buffered reports whether the engine's next event is already read and is one Recv
// returns as a chunk at once (models.Buffered): an object whose top-level choices hold
// a choice, or whose top-level usage is an object. The end of the stream ([DONE]) is
// not, since Recv then reads the body's end, nor is an event Recv passes over, as it
// would read on for the next one.
func (s *stream) Buffered() bool {
	if s.sse == nil || s.done || s.closed {
		return false
	}
	data, ok := s.sse.BufferedData()
	if !ok || len(data) == 0 || data[0] != '{' {
		return false
	}
	// The event is parsed here once, for this answer and for the Recv that returns it
	// (the parser's previous value, the chunk Recv last returned, is no longer read).
	v, err := s.parser().ParseBytes(data)
	if err != nil {
		s.peeked = nil
		return false // Recv parses it again and reports the error
	}
	s.peeked, s.peekData = v, append(s.peekData[:0], data...)
	_, u, ch := eventParts(v)
	if ch != nil && ch.Type() == fastjson.TypeArray {
		if a, _ := ch.Array(); len(a) > 0 && a[0].Type() == fastjson.TypeObject {
			return true
		}
	}
	return u != nil && u.Type() == fastjson.TypeObject
}

// eventParts returns the members of a streamed event that Recv reads, in one pass over
// its (unescaped) keys; nil where absent or when v is not an object. Of a repeated key
// the last copy counts, as for the clients that read the event sluice forwards
// (JavaScript's, Python's and Go's JSON decoders). eventParts, choiceParts and
// deltaParts are three functions rather than one taking the names: a switch on constant
// keys is ~50 ns an event faster (BenchmarkRecvAtHand: 365-391 against 429-443 ns).
func eventParts(v *fastjson.Value) (errV, usage, choices *fastjson.Value) {
	o, err := v.Object()
	if err != nil {
		return nil, nil, nil
	}
	o.Visit(func(k []byte, x *fastjson.Value) {
		switch string(k) {
		case "error":
			errV = x
		case "usage":
			usage = x
		case "choices":
			choices = x
		}
	})
	return errV, usage, choices
}

// choiceParts is eventParts for a streamed choice: its delta (chat), text (completions)
// and finish_reason.
func choiceParts(v *fastjson.Value) (delta, text, finish *fastjson.Value) {
	o, err := v.Object()
	if err != nil {
		return nil, nil, nil
	}
	o.Visit(func(k []byte, x *fastjson.Value) {
		switch string(k) {
		case "delta":
			delta = x
		case "text":
			text = x
		case "finish_reason":
			finish = x
		}
	})
	return delta, text, finish
}

// deltaParts is eventParts for a chat delta: role, content and tool_calls.
func deltaParts(v *fastjson.Value) (role, content, toolCalls *fastjson.Value) {
	o, err := v.Object()
	if err != nil {
		return nil, nil, nil
	}
	o.Visit(func(k []byte, x *fastjson.Value) {
		switch string(k) {
		case "role":
			role = x
		case "content":
			content = x
		case "tool_calls":
			toolCalls = x
		}
	})
	return role, content, toolCalls
}

// stringBytes is v's string (unescaped), or nil when v is absent or not a string (as
// fastjson's GetStringBytes).
func stringBytes(v *fastjson.Value) []byte {
	if v == nil || v.Type() != fastjson.TypeString {
		return nil
	}
	b, _ := v.StringBytes()
	return b
}

func (s *stream) Recv() (models.Chunk, error) {
	if s.done || s.closed {
		return models.Chunk{}, io.EOF
	}
	if s.sse == nil {
		s.done = true
		return s.full(s.call.Resp.Body())
	}
	for {
		ev, data, err := s.sse.Next()
		peeked := s.peeked
		s.peeked = nil
		if err != nil {
			s.done = true
			if err == io.EOF {
				if s.finished {
					return models.Chunk{}, io.EOF
				}
				return models.Chunk{}, &models.Error{Kind: models.ErrUpstream, Code: "engine_stream_ended",
					Msg: "engine " + s.b.opts.Name + " ended the stream before finishing"}
			}
			if errors.Is(err, upstream.ErrEventTooLarge) {
				return models.Chunk{}, &models.Error{Kind: models.ErrUpstream, Code: "engine_event_too_large", Err: err,
					Msg: fmt.Sprintf("engine %s sent an event over %d bytes (server.limits.max_engine_line_bytes)", s.b.opts.Name, s.b.client.MaxEvent())}
			}
			return models.Chunk{}, s.b.transportError(err, s.deadline)
		}
		if string(ev) == "error" {
			s.done = true
			return models.Chunk{}, upstream.StreamError(s.b.opts.Name, data)
		}
		if len(data) == 0 {
			continue
		}
		if bytes.Equal(data, []byte("[DONE]")) {
			s.done = true
			if s.b.opts.Dialect == LlamaCpp {
				// llama-server closes the connection after a streamed answer.
				s.call.Discard()
			} else {
				// Read the body's end so the connection goes back to the pool.
				s.call.Drain(s.sse, 4<<10, time.Second)
			}
			return models.Chunk{}, io.EOF
		}
		v := peeked
		if v == nil || !bytes.Equal(data, s.peekData) {
			if v, err = s.parser().ParseBytes(data); err != nil {
				s.done = true
				return models.Chunk{}, &models.Error{Kind: models.ErrUpstream, Code: "engine_bad_json",
					Msg: "engine " + s.b.opts.Name + " sent malformed JSON", Err: err}
			}
		}
		e, u, cv := eventParts(v)
		if e != nil && e.Type() != fastjson.TypeNull {
			s.done = true
			return models.Chunk{}, upstream.StreamError(s.b.opts.Name, data)
		}
		c := models.Chunk{Raw: data, Format: models.FormatOpenAIChunk}
		if u != nil && u.Type() == fastjson.TypeObject {
			s.setUsage(u, &c)
		}
		var choices []*fastjson.Value
		if cv != nil && cv.Type() == fastjson.TypeArray {
			choices, _ = cv.Array()
		}
		if len(choices) == 0 {
			if c.Usage == nil {
				continue // keep-alive or metadata chunk
			}
			c.Format = models.FormatOpenAIUsage
			return c, nil
		}
		if c.Usage != nil {
			// Usage inside a content chunk (Mistral's last chunk): sluice writes its own
			// usage chunk (with the cost) when the client asks, so the engine's goes.
			c.Raw = jsonx.Delete(nil, data, "usage")
		}
		var text []byte
		d, tx, fv := choiceParts(choices[0])
		if d != nil {
			role, content, tc := deltaParts(d)
			c.Role = constant(stringBytes(role))
			text = stringBytes(content)
			if tc != nil && tc.Type() == fastjson.TypeArray {
				c.ToolCalls = tc.MarshalTo(nil)
			}
		} else {
			text = stringBytes(tx)
		}
		if fr := stringBytes(fv); len(fr) > 0 {
			c.FinishReason = constant(fr)
			s.finished = true
		}
		if len(text) > 0 {
			// The text is kept (for usage estimates) in s.text, which only ever grows:
			// the chunk's Text is a view of the bytes just appended, not another copy.
			start := len(s.text)
			s.text = append(s.text, text...)
			c.Text = unsafe.String(&s.text[start], len(text))
		}
		return c, nil
	}
}

// full handles a non-streamed answer: one chunk carrying the whole object. The gateway
// forwards Raw, so only usage is read when the engine reports it; the text is extracted
// only when sluice must count tokens itself.
func (s *stream) full(body []byte) (models.Chunk, error) {
	c := models.Chunk{Raw: body, Format: models.FormatOpenAIFull}
	if s.r.Kind != models.KindEmbedding {
		// jsonx checks the document's structure as it scans (and the gateway's splice
		// fails on a broken one); fastjson parses and validates only the two parts
		// sluice reads, usage and choices, not the engine's other fields.
		var r [2][2]int
		ok := jsonx.Lookup(body, []string{"usage", "choices"}, r[:])
		if us, ue, cs, ce := r[0][0], r[0][1], r[1][0], r[1][1]; ok && us >= 0 && cs >= 0 && body[us] == '{' {
			u, err := s.parser().ParseBytes(body[us:ue])
			if err == nil {
				s.setUsage(u, &c)
				if ch, err := s.parser().ParseBytes(body[cs:ce]); err == nil {
					s.readChoice(ch.GetArray(), &c)
					return c, nil
				}
			}
		}
	}
	v, err := s.parser().ParseBytes(body)
	if err != nil {
		return models.Chunk{}, &models.Error{Kind: models.ErrUpstream, Code: "engine_bad_json",
			Msg: "engine " + s.b.opts.Name + " sent malformed JSON", Err: err}
	}
	s.readUsage(v, &c)
	if s.r.Kind == models.KindEmbedding {
		data := v.GetArray("data")
		c.Embeddings = make([][]float32, len(data))
		for _, d := range data {
			i := d.GetInt("index")
			if i < 0 || i >= len(data) {
				return models.Chunk{}, &models.Error{Kind: models.ErrUpstream, Code: "engine_bad_json",
					Msg: "engine " + s.b.opts.Name + " sent an embedding with index out of range"}
			}
			arr := d.GetArray("embedding")
			vec := make([]float32, len(arr))
			for j, x := range arr {
				vec[j] = float32(x.GetFloat64())
			}
			c.Embeddings[i] = vec
		}
		return c, nil
	}
	s.readChoice(v.GetArray("choices"), &c)
	return c, nil
}

// readChoice fills c from the first choice of a whole answer.
func (s *stream) readChoice(choices []*fastjson.Value, c *models.Chunk) {
	if len(choices) == 0 {
		return
	}
	ch := choices[0]
	if m := ch.Get("message"); m != nil {
		c.Role = constant(m.GetStringBytes("role"))
		c.Text = string(m.GetStringBytes("content"))
		if tc := m.Get("tool_calls"); tc != nil && tc.Type() == fastjson.TypeArray {
			c.ToolCalls = tc.MarshalTo(nil)
		}
	} else {
		c.Text = string(ch.GetStringBytes("text"))
	}
	c.FinishReason = constant(ch.GetStringBytes("finish_reason"))
	s.text = append(s.text, c.Text...)
}

// constant returns common role and finish-reason values as constants (no allocation).
func constant(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case "assistant":
		return "assistant"
	case "stop":
		return "stop"
	case "length":
		return "length"
	case "tool_calls":
		return "tool_calls"
	}
	return string(b)
}

func (s *stream) readUsage(v *fastjson.Value, c *models.Chunk) {
	u := v.Get("usage")
	if u == nil || u.Type() != fastjson.TypeObject {
		return
	}
	s.setUsage(u, c)
}

func (s *stream) setUsage(u *fastjson.Value, c *models.Chunk) {
	s.usage = models.Usage{
		PromptTokens:     u.GetInt("prompt_tokens"),
		CompletionTokens: u.GetInt("completion_tokens"),
		CachedTokens:     u.GetInt("prompt_tokens_details", "cached_tokens"),
	}
	s.haveUsage = true
	uc := s.usage
	c.Usage = &uc
}

func (s *stream) Usage() models.Usage {
	if s.haveUsage {
		return s.usage
	}
	return EstimateUsage(s.b.opts.Counter, s.r, string(s.text))
}

func (s *stream) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.b.active.Add(-1)
	if s.sse != nil {
		s.sse.Release()
	}
	s.call.Release()
	s.peeked = nil
	if s.p != nil {
		s.b.parser.Put(s.p)
		s.p = nil
	}
	return nil
}

// EstimateUsage counts the prompt and completion with counter (or ~4 bytes a token when
// counter is nil). The result is marked Estimated.
func EstimateUsage(counter models.TokenCounter, r *models.Request, completion string) models.Usage {
	count := func(s string) int {
		if s == "" {
			return 0
		}
		if counter != nil {
			return counter.CountTokens(s)
		}
		return (len(s) + 3) / 4
	}
	u := models.Usage{Estimated: true}
	u.PromptTokens = count(r.PromptText())
	if r.Kind == models.KindChat {
		// Chat templates add a few tokens per message (role markers).
		u.PromptTokens += 3 * len(r.Messages)
	}
	u.CompletionTokens = count(strings.TrimSpace(completion))
	return u
}
