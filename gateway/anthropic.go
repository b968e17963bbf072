package gateway

import (
	"io"
	"strconv"
	"time"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// messages serves POST /v1/messages, Anthropic's Messages API, on any target: the
// request is parsed into a models.Request (with an equivalent OpenAI body for backends
// that forward one) and the answer is written from the chunks' structured fields as an
// Anthropic message or its stream of events.
func (s *Server) messages(ctx *fasthttp.RequestCtx) {
	if !s.admit() {
		s.m.refused.WithLabelValues("concurrency").Inc()
		s.failAnthropic(ctx, "messages", "", errBusy)
		return
	}
	rc := s.watch(ctx)
	if !s.messagesAdmitted(ctx, rc) {
		rc.end()
		s.active.Add(-1)
	}
}

// messagesAdmitted is messages for an admitted request, with the context its client's
// hang-up cancels. It reports whether a streamed answer took the request over (its
// anthropicBody.Close ends it).
func (s *Server) messagesAdmitted(ctx *fasthttp.RequestCtx, rc reqCtx) (streaming bool) {
	const endpoint = "messages"
	start := time.Now()
	key, err := s.authorize(ctx)
	if err != nil {
		s.failAnthropic(ctx, endpoint, "", err)
		return
	}
	r := &models.Request{Arrived: start, Key: key}
	if key != nil {
		r.Tenant = key.Tenant
	}
	p := s.parsers.Get()
	err = parseAnthropic(p, ctx.PostBody(), r)
	s.parsers.Put(p)
	if err != nil {
		s.failAnthropic(ctx, endpoint, "", err)
		return
	}
	r.ID = s.newID()
	ctx.Response.Header.Set("Request-Id", "req_"+r.ID)
	ctx.Response.Header.Set("X-Request-Id", r.ID)
	if err := requestOptions(ctx, r); err != nil {
		s.failAnthropic(ctx, endpoint, "", err)
		return
	}
	rctx := rc.ctx
	if d := start.Add(s.opts.RequestTimeout); r.Deadline.IsZero() || d.Before(r.Deadline) {
		r.Deadline = d
	}
	t, err := s.opts.Router.Route(rctx, r)
	if err != nil {
		s.failAnthropic(ctx, endpoint, "", err)
		s.recordFailure(ctx, r, t, models.Usage{})
		return
	}
	s.m.inflight.Inc()
	st, err := s.opts.Scheduler.Open(rctx, t, r)
	if err != nil {
		s.m.inflight.Dec()
		s.failAnthropic(ctx, endpoint, t.Model, err)
		s.recordFailure(ctx, r, t, models.Usage{})
		s.m.series(endpoint, t.Model).duration.Observe(time.Since(start).Seconds())
		return
	}
	if ts, ok := st.(interface{ Target() models.Target }); ok {
		t = ts.Target()
	}
	setTraceHeaders(&ctx.Response.Header, r, t)
	if r.Stream {
		s.anthropicStream(ctx, endpoint, t, r, st, rc)
		return true
	}
	s.anthropicRespond(ctx, endpoint, t, r, st)
	return false
}

// failAnthropic answers with err in Anthropic's shape; like fail, a server-side error's
// detail goes to the log and the client gets the request id.
func (s *Server) failAnthropic(ctx *fasthttp.RequestCtx, endpoint, model string, err error) {
	id := string(ctx.Response.Header.Peek("X-Request-Id"))
	writeAnthropicError(ctx, err, id)
	if ctx.Response.StatusCode() >= 500 {
		s.opts.Logger.Warn("request failed", "id", id, "endpoint", endpoint, "model", model,
			"status", ctx.Response.StatusCode(), "err", err)
	}
	s.m.requests.WithLabelValues(endpoint, model, strconv.Itoa(ctx.Response.StatusCode())).Inc()
}

// anthropicRespond writes a whole (non-streamed) message.
func (s *Server) anthropicRespond(ctx *fasthttp.RequestCtx, endpoint string, t models.Target, r *models.Request, st models.Stream) {
	defer s.m.inflight.Dec()
	var (
		text      []byte
		toolCalls []byte
		finish    string
	)
	for {
		c, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			st.Close()
			s.finish(endpoint, t, r, st.Usage(), err, 0)
			s.failAnthropic(ctx, endpoint, t.Model, err)
			s.recordFailure(ctx, r, t, st.Usage())
			return
		}
		text = append(text, c.Text...)
		toolCalls = mergeToolCalls(toolCalls, c.ToolCalls)
		if c.FinishReason != "" {
			finish = c.FinishReason
		}
	}
	st.Close()
	u := st.Usage()
	s.record(r, t, &u, fasthttp.StatusOK, 0)
	b := make([]byte, 0, 256+len(text)+len(toolCalls))
	b = append(b, `{"id":`...)
	b = jsonx.AppendString(b, "msg_"+r.ID)
	b = append(b, `,"type":"message","role":"assistant","model":`...)
	b = jsonx.AppendString(b, t.Model)
	b = append(b, `,"content":[`...)
	n := 0
	if len(text) > 0 || len(toolCalls) == 0 {
		b = append(b, `{"type":"text","text":`...)
		b = jsonx.AppendString(b, string(text))
		b = append(b, '}')
		n++
	}
	if len(toolCalls) > 0 {
		var p fastjson.Parser
		if v, err := p.ParseBytes(toolCalls); err == nil {
			for i, tc := range v.GetArray() {
				if n > 0 {
					b = append(b, ',')
				}
				n++
				b = appendToolUse(b, tc, r.ID, i, &p)
			}
		}
	}
	b = append(b, `],"stop_reason":`...)
	b = jsonx.AppendString(b, stopReason(finish))
	b = append(b, `,"stop_sequence":null,"usage":`...)
	b = appendAnthropicUsage(b, u, true)
	b = append(b, '}')
	setCostHeaders(&ctx.Response.Header, u.Cost)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
	s.finish(endpoint, t, r, u, nil, 0)
	s.m.series(endpoint, t.Model).ok.Inc()
}

// appendToolUse writes an OpenAI tool call (whole) as an Anthropic tool_use block.
func appendToolUse(b []byte, tc *fastjson.Value, reqID string, i int, p *fastjson.Parser) []byte {
	id := string(tc.GetStringBytes("id"))
	if id == "" {
		id = "toolu_" + reqID + "_" + strconv.Itoa(i)
	}
	b = append(b, `{"type":"tool_use","id":`...)
	b = jsonx.AppendString(b, id)
	b = append(b, `,"name":`...)
	b = jsonx.AppendString(b, string(tc.GetStringBytes("function", "name")))
	b = append(b, `,"input":`...)
	return appendInput(b, tc.GetStringBytes("function", "arguments"), p)
}

// appendInput writes tool-call arguments as an input object ({} when they are not one).
func appendInput(b, args []byte, p *fastjson.Parser) []byte {
	if v, err := p.ParseBytes(args); err == nil && v.Type() == fastjson.TypeObject {
		b = append(b, args...)
	} else {
		b = append(b, "{}"...)
	}
	return append(b, '}')
}

// stopReason maps an OpenAI finish reason to Anthropic's stop_reason.
func stopReason(finish string) string {
	switch finish {
	case "length":
		return "max_tokens"
	case "tool_calls", "function_call":
		return "tool_use"
	case "content_filter":
		return "refusal"
	}
	return "end_turn"
}

func appendAnthropicUsage(b []byte, u models.Usage, withInput bool) []byte {
	b = append(b, '{')
	if withInput {
		b = append(b, `"input_tokens":`...)
		b = strconv.AppendInt(b, int64(max(u.PromptTokens-u.CachedTokens, 0)), 10)
		b = append(b, `,"cache_creation_input_tokens":0,"cache_read_input_tokens":`...)
		b = strconv.AppendInt(b, int64(u.CachedTokens), 10)
		b = append(b, ',')
	}
	b = append(b, `"output_tokens":`...)
	b = strconv.AppendInt(b, int64(u.CompletionTokens), 10)
	return append(b, '}')
}
