package openai

import (
	"bytes"
	"io"
	"strings"
	"time"

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

	usage     models.Usage
	haveUsage bool
	text      []byte // completion text so far, for usage estimates
	finished  bool   // a finish_reason arrived
	done      bool
	closed    bool
}

var _ models.Stream = (*stream)(nil)

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
		if err != nil {
			s.done = true
			if err == io.EOF {
				if s.finished {
					return models.Chunk{}, io.EOF
				}
				return models.Chunk{}, &models.Error{Kind: models.ErrUpstream, Code: "engine_stream_ended",
					Msg: "engine " + s.b.opts.Name + " ended the stream before finishing"}
			}
			return models.Chunk{}, s.b.transportError(err)
		}
		if string(ev) == "error" {
			s.done = true
			return models.Chunk{}, &models.Error{Kind: models.ErrUpstream, Code: "engine_error",
				Msg: "engine " + s.b.opts.Name + ": " + engineMessage(data)}
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
		v, err := s.p.ParseBytes(data)
		if err != nil {
			s.done = true
			return models.Chunk{}, &models.Error{Kind: models.ErrUpstream, Code: "engine_bad_json",
				Msg: "engine " + s.b.opts.Name + " sent malformed JSON: " + err.Error()}
		}
		if e := v.Get("error"); e != nil && e.Type() != fastjson.TypeNull {
			s.done = true
			return models.Chunk{}, &models.Error{Kind: models.ErrUpstream, Code: "engine_error",
				Msg: "engine " + s.b.opts.Name + ": " + engineMessage(data)}
		}
		c := models.Chunk{Raw: data, Format: models.FormatOpenAIChunk}
		s.readUsage(v, &c)
		choices := v.GetArray("choices")
		if len(choices) == 0 {
			if c.Usage == nil {
				continue // keep-alive or metadata chunk
			}
			c.Format = models.FormatOpenAIUsage
			return c, nil
		}
		ch := choices[0]
		if d := ch.Get("delta"); d != nil {
			c.Role = string(d.GetStringBytes("role"))
			c.Text = string(d.GetStringBytes("content"))
			if tc := d.Get("tool_calls"); tc != nil && tc.Type() == fastjson.TypeArray {
				c.ToolCalls = tc.MarshalTo(nil)
			}
		} else {
			c.Text = string(ch.GetStringBytes("text"))
		}
		if fr := ch.GetStringBytes("finish_reason"); len(fr) > 0 {
			c.FinishReason = string(fr)
			s.finished = true
		}
		s.text = append(s.text, c.Text...)
		return c, nil
	}
}

// full handles a non-streamed answer: one chunk carrying the whole object.
func (s *stream) full(body []byte) (models.Chunk, error) {
	v, err := s.p.ParseBytes(body)
	if err != nil {
		return models.Chunk{}, &models.Error{Kind: models.ErrUpstream, Code: "engine_bad_json",
			Msg: "engine " + s.b.opts.Name + " sent malformed JSON: " + err.Error()}
	}
	c := models.Chunk{Raw: body, Format: models.FormatOpenAIFull}
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
	if choices := v.GetArray("choices"); len(choices) > 0 {
		ch := choices[0]
		if m := ch.Get("message"); m != nil {
			c.Role = string(m.GetStringBytes("role"))
			c.Text = string(m.GetStringBytes("content"))
			if tc := m.Get("tool_calls"); tc != nil && tc.Type() == fastjson.TypeArray {
				c.ToolCalls = tc.MarshalTo(nil)
			}
		} else {
			c.Text = string(ch.GetStringBytes("text"))
		}
		c.FinishReason = string(ch.GetStringBytes("finish_reason"))
	}
	s.text = append(s.text, c.Text...)
	return c, nil
}

func (s *stream) readUsage(v *fastjson.Value, c *models.Chunk) {
	u := v.Get("usage")
	if u == nil || u.Type() != fastjson.TypeObject {
		return
	}
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
	s.b.parser.Put(s.p)
	s.p = nil
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
