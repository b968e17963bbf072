package gemini

import (
	"io"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/internal/cloud"
	"github.com/sluice-llm/sluice/runtime/openai"
	"github.com/sluice-llm/sluice/runtime/upstream"
	"github.com/valyala/fastjson"
)

// stream is one answer, streamed (each server-sent event a GenerateContentResponse) or
// whole. Each response becomes a chunk with the structured fields filled (Raw stays
// empty): the first candidate's text parts as Text (thought parts left out), its
// functionCall parts as OpenAI tool-call deltas (Gemini sends a call whole), its
// finishReason mapped, and usageMetadata as Usage on the last chunk.
type stream struct {
	b        *Backend
	r        *models.Request
	call     *upstream.Call
	sse      *upstream.SSE
	p        *fastjson.Parser
	deadline time.Time

	pend   [4]models.Chunk
	pi, pn int

	text     []byte
	tools    int
	roleSent bool

	usage    models.Usage
	haveUse  bool
	finished bool
	done     bool
	closed   bool
}

var _ models.Stream = (*stream)(nil)

func (s *stream) prime() error {
	if s.sse == nil {
		c, err := s.response(s.call.Resp.Body(), true)
		if err != nil {
			return err
		}
		s.pend[0], s.pn, s.done = c, 1, true
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

// next reads events until one makes a chunk. Gemini ends a stream by closing it (there
// is no closing event): io.EOF after a finishReason, an error before one.
func (s *stream) next() (models.Chunk, error) {
	for {
		if s.finished {
			// The last response came: read the body's end so the connection is reused.
			if s.call != nil {
				s.call.Drain(s.sse, 4<<10, time.Second)
			}
			return models.Chunk{}, io.EOF
		}
		_, data, err := s.sse.Next()
		if err != nil {
			if err == io.EOF {
				return models.Chunk{}, cloud.StreamEnded(provider, s.b.opts.Name)
			}
			return models.Chunk{}, cloud.TransportError(provider, s.b.opts.Name, err, s.deadline)
		}
		if len(data) == 0 {
			continue
		}
		c, err := s.response(data, false)
		if err != nil {
			return models.Chunk{}, err
		}
		if c.Role != "" || c.Text != "" || len(c.ToolCalls) > 0 || c.FinishReason != "" {
			return c, nil
		}
	}
}

// response turns one GenerateContentResponse into a chunk; whole is set for a
// non-streamed answer (tool calls as a whole array, the text copied).
func (s *stream) response(data []byte, whole bool) (models.Chunk, error) {
	v, err := s.p.ParseBytes(data)
	if err != nil {
		return models.Chunk{}, cloud.BadResponse(provider, s.b.opts.Name, "malformed response: "+err.Error())
	}
	if e := v.Get("error"); e != nil && e.Type() == fastjson.TypeObject {
		return models.Chunk{}, s.b.rpcError(e, 0, 0)
	}
	var c models.Chunk
	if !s.roleSent {
		c.Role, s.roleSent = "assistant", true
	}
	if u := v.Get("usageMetadata"); u != nil && u.Type() == fastjson.TypeObject {
		s.usage = models.Usage{
			PromptTokens:     u.GetInt("promptTokenCount"),
			CompletionTokens: u.GetInt("candidatesTokenCount") + u.GetInt("thoughtsTokenCount"),
			CachedTokens:     u.GetInt("cachedContentTokenCount"),
		}
		s.haveUse = true
	}
	cands := v.GetArray("candidates")
	if len(cands) == 0 {
		if br := v.GetStringBytes("promptFeedback", "blockReason"); len(br) > 0 {
			// The prompt was blocked: an answer without content.
			c.FinishReason = "content_filter"
		}
	} else {
		cand := cands[0]
		start := len(s.text)
		var calls []byte
		for _, part := range cand.GetArray("content", "parts") {
			if part.GetBool("thought") {
				continue
			}
			if t := part.GetStringBytes("text"); len(t) > 0 {
				s.text = append(s.text, t...)
			}
			fc := part.Get("functionCall")
			if fc == nil {
				continue
			}
			id := string(fc.GetStringBytes("id"))
			if id == "" {
				id = cloud.NewCallID()
			}
			if sig := part.GetStringBytes("thoughtSignature"); len(sig) > 0 {
				id += sigSep + string(sig)
			}
			args := "{}"
			if a := fc.Get("args"); a != nil && a.Type() == fastjson.TypeObject {
				args = string(a.MarshalTo(nil))
			}
			calls = appendCall(calls, whole, s.tools, id, string(fc.GetStringBytes("name")), args)
			s.tools++
		}
		if len(calls) > 0 {
			c.ToolCalls = append(calls, ']')
		}
		if n := len(s.text) - start; n > 0 {
			if whole {
				c.Text = string(s.text)
			} else {
				c.Text = unsafe.String(&s.text[start], n)
			}
		}
		if fr := cand.GetStringBytes("finishReason"); len(fr) > 0 {
			c.FinishReason = s.finishReason(string(fr))
		}
	}
	if whole && c.FinishReason == "" {
		c.FinishReason = s.finishReason("STOP")
	}
	if c.FinishReason != "" {
		s.finished = true
		if s.haveUse {
			u := s.usage
			c.Usage = &u
		}
	}
	return c, nil
}

// appendCall adds one call to an OpenAI tool_calls array being built: a delta with its
// index when streaming, a whole call otherwise.
func appendCall(dst []byte, whole bool, index int, id, name, args string) []byte {
	if len(dst) == 0 {
		dst = append(dst, '[')
	} else {
		dst = append(dst, ',')
	}
	if whole {
		return cloud.AppendToolCall(dst, id, name, []byte(args))
	}
	dst = append(dst, `{"index":`...)
	dst = strconv.AppendInt(dst, int64(index), 10)
	dst = append(dst, `,"id":`...)
	dst = jsonx.AppendString(dst, id)
	dst = append(dst, `,"type":"function","function":{"name":`...)
	dst = jsonx.AppendString(dst, name)
	dst = append(dst, `,"arguments":`...)
	dst = jsonx.AppendString(dst, args)
	return append(dst, "}}"...)
}

// finishReason maps Gemini's finishReason to OpenAI's finish_reason.
func (s *stream) finishReason(fr string) string {
	switch fr {
	case "MAX_TOKENS":
		return "length"
	case "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT":
		return "content_filter"
	}
	if s.tools > 0 {
		return "tool_calls"
	}
	return "stop"
}

// Usage is what Gemini reported, or, for an answer cut short, a count of its parts.
func (s *stream) Usage() models.Usage {
	if s.finished && s.haveUse {
		return s.usage
	}
	u := openai.EstimateUsage(s.b.opts.Counter, s.r, strings.TrimSpace(string(s.text)))
	if s.haveUse && s.usage.PromptTokens > 0 {
		u.PromptTokens, u.CachedTokens = s.usage.PromptTokens, s.usage.CachedTokens
	}
	return u
}

// Close ends the request; an unfinished stream's connection is closed.
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
