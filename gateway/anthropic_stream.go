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

// anthropicStream answers with Anthropic's stream of events (message_start, ping,
// content_block_start/delta/stop, message_delta, message_stop), pulled by fasthttp like
// the OpenAI stream (sseBody).
func (s *Server) anthropicStream(ctx *fasthttp.RequestCtx, endpoint string, t models.Target, r *models.Request, st models.Stream, rc reqCtx) {
	ctx.SetContentType("text/event-stream; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	_ = ctx.Response.Header.SetTrailer("X-Sluice-Cost-USD")
	b := &anthropicBody{s: s, st: st, r: r, t: t, endpoint: endpoint, hdr: &ctx.Response.Header, open: -1, rc: rc}
	b.bp, b.pool = s.evbufs.get(), &s.evbufs
	b.wd.arm(ctx, s.opts.Limits.WriteTimeout)
	ctx.SetBodyStream(b, -1)
}

type anthropicBody struct {
	s        *Server
	st       models.Stream
	r        *models.Request
	t        models.Target
	endpoint string
	hdr      *fasthttp.ResponseHeader

	events
	started  bool
	ended    bool
	closed   bool
	err      error
	usage    models.Usage
	firstTok time.Duration
	finish   string

	blocks   int    // content blocks started
	open     int    // index of the open block, -1: none
	openTool bool   // the open block is a tool_use
	toolIdx  int    // the OpenAI index of the open tool call
	toolID   string // and its id
	p        *fastjson.Parser
	scratch  []byte

	onClose func() // run once by Close (the large-body gate's release)
	rc      reqCtx // watched until Close: a hang-up cancels the engine call
}

func (b *anthropicBody) Read(p []byte) (int, error) {
	return b.read(p, b.fill, b.s.opts.Limits.WriteTimeout)
}

// WriteTo writes the events as they come (see events.writeTo).
func (b *anthropicBody) WriteTo(w io.Writer) (int64, error) {
	return b.writeTo(w, b.fill, b.st, b.s.opts.Limits.WriteTimeout)
}

// SupportsBodyWriteTo tells fasthttp that WriteTo writes what Read would return.
func (b *anthropicBody) SupportsBodyWriteTo() bool { return true }

// event appends one server-sent event.
func (b *anthropicBody) event(name string, data []byte) {
	buf := append(*b.bp, "event: "...)
	buf = append(buf, name...)
	buf = append(buf, "\ndata: "...)
	buf = append(buf, data...)
	*b.bp = append(buf, '\n', '\n')
}

func (b *anthropicBody) fill() {
	if !b.started {
		b.started = true
		d := append(b.scratch[:0], `{"type":"message_start","message":{"id":`...)
		d = jsonx.AppendString(d, "msg_"+b.r.ID)
		d = append(d, `,"type":"message","role":"assistant","model":`...)
		d = jsonx.AppendString(d, b.t.Model)
		d = append(d, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":`...)
		d = strconv.AppendInt(d, int64(promptEstimate(b.r)), 10)
		d = append(d, `,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}`...)
		b.scratch = d
		b.event("message_start", d)
		b.event("ping", []byte(`{"type":"ping"}`))
		return
	}
	c, err := b.st.Recv()
	switch {
	case err == nil:
		if b.firstTok == 0 && (c.Text != "" || len(c.ToolCalls) > 0) {
			b.firstTok = time.Since(b.r.Arrived)
		}
		if c.Text != "" {
			if b.open < 0 || b.openTool {
				b.stopBlock()
				b.startBlock(`{"type":"text","text":""}`)
			}
			d := append(b.scratch[:0], `{"type":"content_block_delta","index":`...)
			d = strconv.AppendInt(d, int64(b.open), 10)
			d = append(d, `,"delta":{"type":"text_delta","text":`...)
			d = jsonx.AppendString(d, c.Text)
			d = append(d, "}}"...)
			b.scratch = d
			b.event("content_block_delta", d)
		}
		if len(c.ToolCalls) > 0 {
			b.toolDeltas(c.ToolCalls)
		}
		if c.FinishReason != "" {
			b.finish = c.FinishReason
		}
	case err == io.EOF:
		b.end(nil)
	default:
		b.end(err)
	}
}

func (b *anthropicBody) startBlock(block string) {
	d := append(b.scratch[:0], `{"type":"content_block_start","index":`...)
	d = strconv.AppendInt(d, int64(b.blocks), 10)
	d = append(d, `,"content_block":`...)
	d = append(d, block...)
	d = append(d, '}')
	b.scratch = d
	b.event("content_block_start", d)
	b.open = b.blocks
	b.blocks++
	b.openTool = false
}

func (b *anthropicBody) stopBlock() {
	if b.open < 0 {
		return
	}
	d := append(b.scratch[:0], `{"type":"content_block_stop","index":`...)
	d = strconv.AppendInt(d, int64(b.open), 10)
	d = append(d, '}')
	b.scratch = d
	b.event("content_block_stop", d)
	b.open = -1
}

// toolDeltas turns OpenAI tool-call deltas (or whole calls) into tool_use blocks and
// input_json_delta events.
func (b *anthropicBody) toolDeltas(raw []byte) {
	if b.p == nil {
		b.p = &fastjson.Parser{}
	}
	v, err := b.p.ParseBytes(raw)
	if err != nil {
		return
	}
	for _, tc := range v.GetArray() {
		idx := tc.GetInt("index")
		id, name := tc.GetStringBytes("id"), tc.GetStringBytes("function", "name")
		// A call starts with its id and name; later deltas of it carry only its index
		// and pieces of arguments. Whole calls (structured backends) each have an id.
		if !b.openTool || idx != b.toolIdx || (len(id) > 0 && string(id) != b.toolID) {
			b.stopBlock()
			tid := string(id)
			if tid == "" {
				tid = "toolu_" + b.r.ID + "_" + strconv.Itoa(b.blocks)
			}
			blk := append([]byte(`{"type":"tool_use","id":`), jsonx.AppendString(nil, tid)...)
			blk = append(blk, `,"name":`...)
			blk = jsonx.AppendString(blk, string(name))
			blk = append(blk, `,"input":{}}`...)
			b.startBlock(string(blk))
			b.openTool, b.toolIdx, b.toolID = true, idx, string(id)
		}
		if args := tc.GetStringBytes("function", "arguments"); len(args) > 0 {
			d := append(b.scratch[:0], `{"type":"content_block_delta","index":`...)
			d = strconv.AppendInt(d, int64(b.open), 10)
			d = append(d, `,"delta":{"type":"input_json_delta","partial_json":`...)
			d = jsonx.AppendString(d, string(args))
			d = append(d, "}}"...)
			b.scratch = d
			b.event("content_block_delta", d)
		}
	}
}

// end closes the open block and writes message_delta (stop reason, usage) and
// message_stop, or an error event when the engine failed.
func (b *anthropicBody) end(err error) {
	b.done = true
	b.err = err
	b.closeEngine()
	b.hdr.Set("X-Sluice-Cost-USD", strconv.FormatFloat(b.usage.Cost.Total(), 'f', 8, 64))
	if err != nil {
		b.scratch = appendAnthropicError(b.scratch[:0], err, b.r.ID)
		b.event("error", b.scratch)
		b.s.m.streamErr.WithLabelValues(b.t.Model, streamErrReason(err)).Inc()
		return
	}
	if b.blocks == 0 {
		b.startBlock(`{"type":"text","text":""}`)
	}
	b.stopBlock()
	d := append(b.scratch[:0], `{"type":"message_delta","delta":{"stop_reason":`...)
	d = jsonx.AppendString(d, stopReason(b.finish))
	d = append(d, `,"stop_sequence":null},"usage":`...)
	d = appendAnthropicUsage(d, b.usage, true)
	d = append(d, '}')
	b.scratch = d
	b.event("message_delta", d)
	b.event("message_stop", []byte(`{"type":"message_stop"}`))
}

func (b *anthropicBody) closeEngine() {
	if b.ended {
		return
	}
	b.ended = true
	_ = b.st.Close()
	b.usage = b.st.Usage()
	status := fasthttp.StatusOK
	switch {
	case !b.done:
		status = 499 // the client went away
	case b.err != nil:
		status, _ = anthropicStatusOf(b.err)
	}
	b.s.record(b.r, b.t, &b.usage, status, b.firstTok)
}

// Close is called by fasthttp when the body is written or the client went away.
func (b *anthropicBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	code := "200"
	if !b.done {
		b.err = &models.Error{Kind: models.ErrCanceled, Msg: "client disconnected"}
		b.s.m.streamErr.WithLabelValues(b.t.Model, "client_disconnect").Inc()
		code = "499"
	} else if b.err != nil {
		status, _ := anthropicStatusOf(b.err)
		code = itoa(status)
	}
	b.closeEngine()
	b.rc.end()
	b.s.finish(b.endpoint, b.t, b.r, b.usage, b.err, b.firstTok)
	if code == "200" {
		b.s.m.series(b.endpoint, b.t.Model).ok.Inc()
	} else {
		b.s.m.requests.WithLabelValues(b.endpoint, b.t.Model, code).Inc()
	}
	b.s.m.inflight.Dec()
	b.s.active.Add(-1)
	if b.onClose != nil {
		b.onClose()
	}
	b.s.evbufs.put(b.bp)
	b.bp = nil
	return nil
}

// promptEstimate is the prompt's size in tokens at ~4 bytes each, for message_start
// (the engine's count follows in message_delta).
func promptEstimate(r *models.Request) int {
	n := 0
	for i := range r.Messages {
		n += len(r.Messages[i].Content)
	}
	return n/4 + 1
}

var _ io.ReadCloser = (*anthropicBody)(nil)
