package anthropic

import (
	"io"
	"strings"
	"time"
	"unsafe"

	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/internal/cloud"
	"github.com/sluice-llm/sluice/runtime/openai"
	"github.com/sluice-llm/sluice/runtime/upstream"
	"github.com/valyala/fastjson"
)

// stream is one Messages API answer, streamed (server-sent events) or whole. It turns
// Anthropic's events into chunks with the structured fields filled in (Raw stays
// empty: the gateway encodes the client's wire format from them):
//
//	message_start                         → Role "assistant"; input token counts
//	content_block_start (tool_use)        → a tool-call delta with id and name
//	content_block_delta text_delta        → Text
//	content_block_delta input_json_delta  → a tool-call delta with an argument fragment
//	message_delta                         → FinishReason and Usage
//	message_stop                          → io.EOF
//	error                                 → the mapped error
//	ping, content_block_stop, thinking    → nothing
type stream struct {
	b        *Backend
	r        *models.Request
	call     *upstream.Call
	sse      *upstream.SSE
	p        *fastjson.Parser
	deadline time.Time

	// Chunks read ahead by prime, returned before anything else.
	pend   [4]models.Chunk
	pi, pn int

	text      []byte // completion text so far (chunks' Text are views into it)
	blockTool []int  // content block index → tool call index (-1: not a tool_use block)
	tools     int    // tool calls so far

	in, out, cacheW, cacheR int
	haveIn, finished        bool

	err    error // ends the stream after the pending chunks
	done   bool
	closed bool
}

var _ models.Stream = (*stream)(nil)

// prime reads ahead to the first chunk with content, so that errors before it are
// Open's. A whole answer is read and decoded here.
func (s *stream) prime() error {
	if s.sse == nil {
		c, err := s.full(s.call.Resp.Body())
		if err != nil {
			return err
		}
		s.pend[0], s.pn = c, 1
		return nil
	}
	for s.pn < len(s.pend) {
		c, err := s.next()
		if err == io.EOF {
			s.done = true
			return nil
		}
		if err != nil {
			return err
		}
		s.pend[s.pn] = c
		s.pn++
		if c.Text != "" || len(c.ToolCalls) > 0 || c.FinishReason != "" {
			return nil
		}
	}
	return nil
}

func (s *stream) Recv() (models.Chunk, error) {
	if s.closed {
		return models.Chunk{}, io.EOF
	}
	if s.pi < s.pn {
		c := s.pend[s.pi]
		s.pend[s.pi] = models.Chunk{}
		s.pi++
		return c, nil
	}
	if s.done || s.sse == nil {
		s.done = true
		return models.Chunk{}, io.EOF
	}
	c, err := s.next()
	if err != nil {
		s.done = true
	}
	return c, err
}

// next reads events until one makes a chunk; io.EOF after message_stop.
func (s *stream) next() (models.Chunk, error) {
	for {
		ev, data, err := s.sse.Next()
		if err != nil {
			if err == io.EOF {
				if s.finished {
					return models.Chunk{}, io.EOF
				}
				return models.Chunk{}, cloud.StreamEnded(provider, s.b.opts.Name)
			}
			return models.Chunk{}, cloud.TransportError(provider, s.b.opts.Name, err, s.deadline)
		}
		if len(data) == 0 {
			continue
		}
		v, err := s.p.ParseBytes(data)
		if err != nil {
			return models.Chunk{}, cloud.BadResponse(provider, s.b.opts.Name, "malformed event: "+err.Error())
		}
		typ := v.GetStringBytes("type")
		if len(typ) == 0 {
			typ = ev
		}
		switch string(typ) {
		case "message_start":
			s.readUsage(v.Get("message", "usage"))
			return models.Chunk{Role: "assistant"}, nil
		case "content_block_start":
			idx := v.GetInt("index")
			cb := v.Get("content_block")
			switch string(cb.GetStringBytes("type")) {
			case "tool_use":
				k := s.tools
				s.tools++
				s.setBlockTool(idx, k)
				return models.Chunk{ToolCalls: cloud.AppendToolCallDelta(nil, k,
					string(cb.GetStringBytes("id")), string(cb.GetStringBytes("name")), "")}, nil
			case "text":
				if t := cb.GetStringBytes("text"); len(t) > 0 {
					return models.Chunk{Text: s.keep(t)}, nil
				}
			}
		case "content_block_delta":
			d := v.Get("delta")
			switch string(d.GetStringBytes("type")) {
			case "text_delta":
				if t := d.GetStringBytes("text"); len(t) > 0 {
					return models.Chunk{Text: s.keep(t)}, nil
				}
			case "input_json_delta":
				k := s.toolOf(v.GetInt("index"))
				if pj := d.GetStringBytes("partial_json"); k >= 0 && len(pj) > 0 {
					return models.Chunk{ToolCalls: cloud.AppendToolCallDelta(nil, k, "", "", string(pj))}, nil
				}
			}
		case "message_delta":
			s.readUsage(v.Get("usage"))
			s.finished = true
			u := s.reported()
			return models.Chunk{FinishReason: finishReason(v.GetStringBytes("delta", "stop_reason")), Usage: &u}, nil
		case "message_stop":
			s.finished = true
			// Read the body's end so the connection goes back to the pool.
			if s.call != nil {
				s.call.Drain(s.sse, 4<<10, time.Second)
			}
			return models.Chunk{}, io.EOF
		case "error":
			return models.Chunk{}, s.b.eventError(v)
		}
		// ping, content_block_stop, thinking and other blocks: nothing to send.
	}
}

// full decodes a whole (non-streamed) message into one chunk.
func (s *stream) full(body []byte) (models.Chunk, error) {
	v, err := s.p.ParseBytes(body)
	if err != nil {
		return models.Chunk{}, cloud.BadResponse(provider, s.b.opts.Name, "malformed answer: "+err.Error())
	}
	c := models.Chunk{Role: "assistant"}
	var calls []byte
	for _, cb := range v.GetArray("content") {
		switch string(cb.GetStringBytes("type")) {
		case "text":
			s.text = append(s.text, cb.GetStringBytes("text")...)
		case "tool_use":
			if len(calls) == 0 {
				calls = append(calls, '[')
			} else {
				calls = append(calls, ',')
			}
			var args []byte
			if in := cb.Get("input"); in != nil {
				args = in.MarshalTo(nil)
			} else {
				args = []byte("{}")
			}
			calls = cloud.AppendToolCall(calls, string(cb.GetStringBytes("id")), string(cb.GetStringBytes("name")), args)
		}
	}
	if len(calls) > 0 {
		c.ToolCalls = append(calls, ']')
	}
	c.Text = string(s.text)
	c.FinishReason = finishReason(v.GetStringBytes("stop_reason"))
	s.readUsage(v.Get("usage"))
	s.finished = true
	u := s.reported()
	c.Usage = &u
	s.done = true
	return c, nil
}

// keep appends t to the text so far and returns a view of the appended bytes: s.text
// only grows, so the view stays valid after the parser's buffer is reused.
func (s *stream) keep(t []byte) string {
	start := len(s.text)
	s.text = append(s.text, t...)
	return unsafe.String(&s.text[start], len(t))
}

func (s *stream) setBlockTool(block, tool int) {
	if block < 0 || block > 1<<16 {
		return
	}
	for len(s.blockTool) <= block {
		s.blockTool = append(s.blockTool, -1)
	}
	s.blockTool[block] = tool
}

func (s *stream) toolOf(block int) int {
	if block < 0 || block >= len(s.blockTool) {
		return -1
	}
	return s.blockTool[block]
}

// readUsage takes the counts present in u (message_start has them all; message_delta
// has the cumulative output tokens, and may repeat the others).
func (s *stream) readUsage(u *fastjson.Value) {
	if u == nil || u.Type() != fastjson.TypeObject {
		return
	}
	if x := u.Get("input_tokens"); x != nil && x.Type() == fastjson.TypeNumber {
		s.in, s.haveIn = x.GetInt(), true
	}
	if x := u.Get("output_tokens"); x != nil && x.Type() == fastjson.TypeNumber {
		s.out = x.GetInt()
	}
	if x := u.Get("cache_creation_input_tokens"); x != nil && x.Type() == fastjson.TypeNumber {
		s.cacheW = x.GetInt()
	}
	if x := u.Get("cache_read_input_tokens"); x != nil && x.Type() == fastjson.TypeNumber {
		s.cacheR = x.GetInt()
	}
}

// reported is the usage as Anthropic counts it: the prompt is the uncached input plus
// what was written to and read from the prompt cache.
func (s *stream) reported() models.Usage {
	return models.Usage{PromptTokens: s.in + s.cacheW + s.cacheR, CompletionTokens: s.out, CachedTokens: s.cacheR}
}

// finishReason maps Anthropic's stop_reason to OpenAI's finish_reason.
func finishReason(b []byte) string {
	switch string(b) {
	case "end_turn", "stop_sequence", "pause_turn":
		return "stop"
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	case "":
		return ""
	}
	return "stop"
}

// Usage is what Anthropic reported, or, for an answer cut short, the reported prompt
// and a count of the text received.
func (s *stream) Usage() models.Usage {
	if s.finished {
		return s.reported()
	}
	u := openai.EstimateUsage(s.b.opts.Counter, s.r, strings.TrimSpace(string(s.text)))
	if s.haveIn {
		u.PromptTokens = s.in + s.cacheW + s.cacheR
		u.CachedTokens = s.cacheR
	}
	return u
}

// Close ends the request: an unfinished stream's connection is closed, which the
// provider sees as a cancellation.
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
	s.b.parser.Put(s.p)
	s.p = nil
	return nil
}
