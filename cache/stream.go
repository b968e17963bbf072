package cache

import (
	"io"
	"strconv"
	"strings"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fastjson"
)

// BackendName is the Target.Backend of an answer served from the cache (usage records
// and metrics show it as its own engine, at no cost).
const BackendName = "cache"

// replay is a cached answer played back as a stream of structured chunks: the gateway
// encodes them with the client's model name and request id, streamed (SSE, then the
// usage chunk and [DONE]) or whole. A whole answer is one chunk; a streamed one is the
// content (with the role and any tool calls) and then the finish reason.
type replay struct {
	e      *Entry
	model  string
	tier   string
	stream bool
	chat   bool
	i      int
	usage  models.Usage
}

func (s *Stage) replay(t models.Target, r *models.Request, e *Entry, prompt int, semantic bool) models.Stream {
	s.m.saved.Add(e.Usage.Cost.Total())
	return &replay{e: e, model: t.Model, tier: t.Tier, stream: r.Stream, chat: r.Kind == models.KindChat,
		usage: models.Usage{PromptTokens: prompt, CompletionTokens: e.Usage.CompletionTokens,
			Estimated: e.Usage.Estimated || semantic, Cost: models.Cost{Avoided: e.Usage.Cost.Total()}}}
}

func (p *replay) Recv() (models.Chunk, error) {
	a := &p.e.Answer
	p.i++
	switch {
	case !p.stream && p.i == 1:
		return models.Chunk{Role: a.Role, Text: a.Text, ToolCalls: a.ToolCalls, FinishReason: a.FinishReason}, nil
	case p.stream && p.i == 1:
		c := models.Chunk{Text: a.Text}
		if p.chat {
			c.Role = a.Role
			if c.Role == "" {
				c.Role = "assistant"
			}
			if len(a.ToolCalls) > 0 {
				c.ToolCalls = toolCallDeltas(a.ToolCalls)
			}
		}
		return c, nil
	case p.stream && p.i == 2:
		return models.Chunk{FinishReason: a.FinishReason}, nil
	}
	return models.Chunk{}, io.EOF
}

func (p *replay) Usage() models.Usage { return p.usage }
func (p *replay) Close() error        { return nil }

// Target reports the cache as the backend that served the request.
func (p *replay) Target() models.Target {
	return models.Target{Model: p.model, Backend: BackendName, Tier: p.tier, Region: models.RegionLocal}
}

// tee passes an engine's answer through and keeps a copy; when the answer is complete
// and successful, Close queues it to be stored.
type tee struct {
	s      *Stage
	inner  models.Stream
	t      models.Target
	r      *models.Request
	rk     requestKey
	q      *query
	stream bool

	role, finish string
	text         strings.Builder
	toolCalls    [][]byte
	failed       bool
	eof          bool
	closed       bool
}

func (s *Stage) tee(st models.Stream, t models.Target, r *models.Request, rk requestKey, q *query) *tee {
	return &tee{s: s, inner: st, t: t, r: r, rk: rk, q: q, stream: r.Stream}
}

// WaitReady passes the wait on to the engine's stream (models.Waiter).
func (c *tee) WaitReady() { models.WaitReady(c.inner) }

// Buffered passes the question on to the engine's stream (models.Buffered).
func (c *tee) Buffered() bool { return models.AtHand(c.inner) }

func (c *tee) Recv() (models.Chunk, error) {
	ch, err := c.inner.Recv()
	switch {
	case err == io.EOF:
		c.eof = true
	case err != nil:
		c.failed = true
	default:
		if ch.Role != "" {
			c.role = ch.Role
		}
		c.text.WriteString(ch.Text)
		if len(ch.ToolCalls) > 0 {
			c.toolCalls = append(c.toolCalls, append([]byte(nil), ch.ToolCalls...))
		}
		if ch.FinishReason != "" {
			c.finish = ch.FinishReason
		}
	}
	return ch, err
}

func (c *tee) Usage() models.Usage { return c.inner.Usage() }

// Target passes the inner stream's target on (the backend that served the request).
func (c *tee) Target() models.Target {
	if ts, ok := c.inner.(interface{ Target() models.Target }); ok {
		return ts.Target()
	}
	return c.t
}

func (c *tee) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	err := c.inner.Close()
	c.keep()
	return err
}

// storable finish reasons: a whole answer. "length" (cut at max_tokens) only when the
// operator asks for it; "content_filter" never.
func storableFinish(f string, truncated bool) bool {
	return f == "stop" || f == "tool_calls" || f == "function_call" || (truncated && f == "length")
}

func (c *tee) keep() {
	s := c.s
	if !c.eof || c.failed || !storableFinish(c.finish, s.o.StoreTruncated) || c.r.Cache&models.CacheNoStore != 0 {
		s.m.skipped.Inc()
		c.release()
		return
	}
	var tools []byte
	switch {
	case len(c.toolCalls) == 0:
	case c.stream:
		var ok bool
		if tools, ok = mergeToolCallDeltas(c.toolCalls); !ok {
			s.m.skipped.Inc()
			c.release()
			return
		}
	default:
		tools = c.toolCalls[len(c.toolCalls)-1]
	}
	now := s.now()
	e := &Entry{Key: c.rk.key, Scope: c.rk.scope, Tenant: c.r.Tenant, Model: c.t.Model, Kind: c.r.Kind,
		Question: c.rk.question, Answer: Answer{Role: c.role, Text: c.text.String(), ToolCalls: tools, FinishReason: c.finish},
		Region: c.region(), Usage: c.inner.Usage(), Created: now, Expires: now.Add(s.o.TTL)}
	e.Usage.Cost.Reference, e.Usage.Cost.ReferenceModel, e.Usage.Cost.Avoided = 0, "", 0
	if !s.semanticFor(e.Question) {
		e.Question = "" // matched exactly only: the key holds its hash, the store need not
	}
	p := &pending{e: e}
	if c.q != nil && c.q.vec != nil && s.emb != s.builtin {
		p.vec = c.q.vec
	}
	if c.q != nil && e.Question != "" {
		p.kept = c.q.kept
	}
	c.release()
	if !s.enqueue(p) {
		s.m.dropped.Inc()
	}
}

// region is where the answer was produced: the region the stages below recorded
// (the overflow stage's choice), else the target's.
func (c *tee) region() string {
	if c.r.Trace.Region != "" {
		return c.r.Trace.Region
	}
	if reg := c.Target().Region; reg != "" {
		return reg
	}
	return c.t.Region
}

func (c *tee) release() {
	if c == nil {
		return
	}
	c.q.free(c.s.builtin)
	c.q = nil
}

// pending is an answer waiting to be stored.
type pending struct {
	e    *Entry
	vec  []float32     // the engine embedder's vector, if the lookup made one
	kept *analysed     // the built-in analysis the lookup made, for the indexer
	done chan struct{} // a Flush barrier (e is nil)
}

// mergeToolCallDeltas gathers streamed tool-call deltas (arrays of {index, id, type,
// function: {name, arguments}} where arguments arrive in pieces) into whole tool calls.
func mergeToolCallDeltas(deltas [][]byte) ([]byte, bool) {
	type call struct {
		id, typ, name string
		args          strings.Builder
	}
	var calls []*call
	var p fastjson.Parser
	for _, d := range deltas {
		v, err := p.ParseBytes(d)
		if err != nil {
			return nil, false
		}
		arr, err := v.Array()
		if err != nil {
			return nil, false
		}
		for _, el := range arr {
			idx := el.GetInt("index")
			if idx < 0 || idx > 128 {
				return nil, false
			}
			for len(calls) <= idx {
				calls = append(calls, &call{})
			}
			c := calls[idx]
			if s := el.GetStringBytes("id"); len(s) > 0 && c.id == "" {
				c.id = string(s)
			}
			if s := el.GetStringBytes("type"); len(s) > 0 && c.typ == "" {
				c.typ = string(s)
			}
			if s := el.GetStringBytes("function", "name"); len(s) > 0 && c.name == "" {
				c.name = string(s)
			}
			c.args.Write(el.GetStringBytes("function", "arguments"))
		}
	}
	out := []byte{'['}
	for i, c := range calls {
		if i > 0 {
			out = append(out, ',')
		}
		if c.typ == "" {
			c.typ = "function"
		}
		out = append(out, `{"id":`...)
		out = jsonx.AppendString(out, c.id)
		out = append(out, `,"type":`...)
		out = jsonx.AppendString(out, c.typ)
		out = append(out, `,"function":{"name":`...)
		out = jsonx.AppendString(out, c.name)
		out = append(out, `,"arguments":`...)
		out = jsonx.AppendString(out, c.args.String())
		out = append(out, "}}"...)
	}
	return append(out, ']'), true
}

// toolCallDeltas turns whole tool calls into one streamed delta: each call gets its
// "index", as clients' stream accumulators expect.
func toolCallDeltas(whole []byte) []byte {
	var p fastjson.Parser
	v, err := p.ParseBytes(whole)
	if err != nil {
		return whole
	}
	arr, err := v.Array()
	if err != nil {
		return whole
	}
	out := []byte{'['}
	for i, el := range arr {
		if i > 0 {
			out = append(out, ',')
		}
		raw := el.MarshalTo(nil)
		if len(raw) < 2 || raw[0] != '{' {
			return whole
		}
		out = append(out, `{"index":`...)
		out = strconv.AppendInt(out, int64(i), 10)
		if len(raw) > 2 {
			out = append(out, ',')
		}
		out = append(out, raw[1:]...)
	}
	return append(out, ']')
}
