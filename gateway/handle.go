package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fasthttp"
)

func (s *Server) chat(ctx *fasthttp.RequestCtx) { s.serve(ctx, models.KindChat, "chat") }
func (s *Server) completions(ctx *fasthttp.RequestCtx) {
	s.serve(ctx, models.KindCompletion, "completions")
}
func (s *Server) embeddings(ctx *fasthttp.RequestCtx) {
	s.serve(ctx, models.KindEmbedding, "embeddings")
}

func (s *Server) newID() string {
	return s.idPre + strconv.FormatUint(s.seq.Add(1), 36)
}

// bufPool hands out byte buffers of a starting size and takes back those that did not
// grow past max.
type bufPool struct {
	pool      sync.Pool
	size, max int
}

func (p *bufPool) get() *[]byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, p.size)
	return &b
}

func (p *bufPool) put(b *[]byte) {
	if cap(*b) > p.max {
		return // grown by a large answer or event: not for the next request
	}
	*b = (*b)[:0]
	p.pool.Put(b)
}

// initPools sizes the server's buffers: bufs for whole answers; evbufs for a streamed
// body's events not yet written, one chunk's at a time (a few hundred bytes) but held
// for the stream's whole life, so small, and not pooled once a large event (a cached
// answer replayed whole) grew one.
func (s *Server) initPools() {
	s.bufs.size, s.bufs.max = 4096, 1<<20
	s.evbufs.size, s.evbufs.max = 1024, 4<<10
}

// serve runs one inference request through router and scheduler and answers it.
func (s *Server) serve(ctx *fasthttp.RequestCtx, kind models.Kind, endpoint string) {
	if !s.admit() {
		s.m.refused.WithLabelValues("concurrency").Inc()
		s.fail(ctx, endpoint, "", errBusy)
		return
	}
	rc := s.watch(ctx)
	if !s.serveAdmitted(ctx, kind, endpoint, rc) {
		rc.end()
		s.active.Add(-1)
	}
}

// reqCtx is an inference request's context: cancelled when its client hangs up while
// the request waits or runs (see hangups), or at its end.
type reqCtx struct {
	ctx    context.Context
	cancel context.CancelFunc // nil when not watched
	w      *watched
}

// watch gives the request a context that its client's hang-up cancels.
func (s *Server) watch(ctx *fasthttp.RequestCtx) reqCtx {
	rc := reqCtx{ctx: context.Background()}
	lc, ok := ctx.Conn().(*limitConn)
	if !ok {
		// A batch line (see Execute) runs under the batch runner's context: a stop that
		// outlasts the drain cancels it, and the line runs again after the restart.
		if parent, ok := ctx.UserValue(lineCtxKey{}).(context.Context); ok {
			rc.ctx = parent
		}
		return rc
	}
	if s.hangups == nil {
		return rc
	}
	c, cancel := context.WithCancel(rc.ctx)
	if rc.w = s.hangups.watch(lc, cancel); rc.w == nil {
		cancel()
		return rc
	}
	rc.ctx, rc.cancel = c, cancel
	return rc
}

// end stops watching and releases the context.
func (rc *reqCtx) end() {
	if rc.w != nil {
		rc.w.unwatch()
		rc.w = nil
	}
	if rc.cancel != nil {
		rc.cancel()
		rc.cancel = nil
	}
}

// serveAdmitted is serve for an admitted request. It reports whether a streamed answer
// took the request over (its sseBody.Close ends it).
func (s *Server) serveAdmitted(ctx *fasthttp.RequestCtx, kind models.Kind, endpoint string, rc reqCtx) (streaming bool) {
	start := time.Now()
	key, err := s.authorize(ctx)
	if err != nil {
		s.fail(ctx, endpoint, "", err)
		return
	}
	r := &models.Request{Arrived: start, Key: key}
	if key != nil {
		r.Tenant = key.Tenant
	}
	p := s.parsers.Get()
	err = parseRequest(p, kind, ctx.PostBody(), r)
	s.parsers.Put(p)
	if err != nil {
		s.fail(ctx, endpoint, "", err)
		return
	}
	r.ID = s.newID()
	ctx.Response.Header.Set("X-Request-Id", r.ID)
	if err := requestOptions(ctx, r); err != nil {
		s.fail(ctx, endpoint, "", err)
		return
	}
	// The request's timeout travels as r.Deadline and is enforced where the request
	// waits (the scheduler's queue, the engine connection's deadline), so the hot path
	// creates no timer. Its context is cancelled when the client hangs up (hangups),
	// which takes it out of the scheduler's queue or aborts the engine call; a failed
	// write of a stream closes the stream (sseBody.Close) too.
	rctx := rc.ctx
	if d := start.Add(s.opts.RequestTimeout); r.Deadline.IsZero() || d.Before(r.Deadline) {
		r.Deadline = d
	}
	t, err := s.opts.Router.Route(rctx, r)
	if err != nil {
		s.fail(ctx, endpoint, "", err)
		s.recordFailure(ctx, r, t, models.Usage{})
		return
	}
	s.m.inflight.Inc()
	st, err := s.opts.Scheduler.Open(rctx, t, r)
	if err != nil {
		s.m.inflight.Dec()
		s.fail(ctx, endpoint, t.Model, err)
		s.recordFailure(ctx, r, t, models.Usage{})
		s.m.series(endpoint, t.Model).duration.Observe(time.Since(start).Seconds())
		return
	}
	if ts, ok := st.(interface{ Target() models.Target }); ok {
		t = ts.Target() // the backend the scheduler chose, for accounting
	}
	setTraceHeaders(&ctx.Response.Header, r, t)
	if r.Stream && kind != models.KindEmbedding {
		s.stream(ctx, endpoint, t, r, st, rc)
		return true
	}
	s.respond(ctx, endpoint, t, r, st)
	return false
}

// respond writes a non-streamed answer.
func (s *Server) respond(ctx *fasthttp.RequestCtx, endpoint string, t models.Target, r *models.Request, st models.Stream) {
	defer s.m.inflight.Dec()
	bp, rp := s.bufs.get(), s.bufs.get()
	out, rawBody := (*bp)[:0], (*rp)[:0]
	defer func() { *bp, *rp = out[:0], rawBody[:0]; s.bufs.put(bp); s.bufs.put(rp) }()
	var (
		role, finish string
		text         []byte
		toolCalls    []byte
		vecs         [][]float32
		raw          bool
		rawUsage     bool
	)
	for {
		c, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			st.Close()
			s.finish(endpoint, t, r, st.Usage(), err, 0)
			s.fail(ctx, endpoint, t.Model, err)
			s.recordFailure(ctx, r, t, st.Usage())
			return
		}
		if c.Format == models.FormatOpenAIFull {
			// Keep a copy: the engine's buffer goes back to its pool on Close, and the
			// final usage (with the cost) is known only after Close.
			rawBody = append(rawBody[:0], c.Raw...)
			raw, rawUsage = true, c.Usage != nil
			continue
		}
		if c.Role != "" {
			role = c.Role
		}
		text = append(text, c.Text...)
		toolCalls = mergeToolCalls(toolCalls, c.ToolCalls)
		if c.FinishReason != "" {
			finish = c.FinishReason
		}
		if c.Embeddings != nil {
			vecs = append(vecs, c.Embeddings...)
		}
	}
	st.Close()
	u := st.Usage()
	s.record(r, t, &u, fasthttp.StatusOK, 0)
	switch {
	case raw:
		// The engine's answer with the client's model name and sluice's usage: the
		// engine's counts (or sluice's own when it reported none) plus the cost.
		var mb [128]byte
		var ub [256]byte
		edits := [2]jsonx.Edit{{Key: "model", Value: jsonx.AppendString(mb[:0], t.Model)}, {Key: "usage", Value: appendUsage(ub[:0], u)}}
		n := 2
		if r.Kind == models.KindEmbedding && rawUsage {
			n = 1 // embeddings usage has its own shape: keep the engine's
		}
		var err error
		if out, err = jsonx.Apply(out, rawBody, edits[:n]...); err != nil {
			s.finish(endpoint, t, r, u, err, 0)
			s.fail(ctx, endpoint, t.Model, &models.Error{Kind: models.ErrUpstream, Msg: "engine answer is not a JSON object"})
			return
		}
	case r.Kind == models.KindEmbedding:
		a := answer{id: r.ID, model: t.Model, created: r.Arrived.Unix(), kind: r.Kind}
		out = a.appendEmbeddings(out, vecs, r.EncodingFormat, u)
	default:
		a := answer{id: idPrefix(r.Kind) + r.ID, model: t.Model, created: r.Arrived.Unix(), kind: r.Kind}
		out = a.appendFull(out, role, string(text), toolCalls, finish, u)
	}
	setCostHeaders(&ctx.Response.Header, u.Cost)
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
	s.finish(endpoint, t, r, u, nil, 0)
	s.m.series(endpoint, t.Model).ok.Inc()
}

// requestOptions reads sluice's own request headers: X-Sluice-Priority (interactive, the
// default, or batch: batch work only fills otherwise idle slots), X-Sluice-Deadline-Ms
// (give up when no slot is free within that many milliseconds), X-Sluice-Tier (force a
// model tier) and X-Sluice-Feature.
func requestOptions(ctx *fasthttp.RequestCtx, r *models.Request) error {
	switch p := string(ctx.Request.Header.Peek("X-Sluice-Priority")); p {
	case "", "interactive":
	case "batch":
		r.Priority = models.PriorityBatch
	default:
		return models.InvalidParam("X-Sluice-Priority", "header X-Sluice-Priority must be interactive or batch, got %q", p)
	}
	if v := ctx.Request.Header.Peek("X-Sluice-Deadline-Ms"); len(v) > 0 {
		ms, err := strconv.Atoi(string(v))
		if err != nil || ms <= 0 {
			return models.InvalidParam("X-Sluice-Deadline-Ms", "header X-Sluice-Deadline-Ms must be a positive integer, got %q", v)
		}
		r.Deadline = r.Arrived.Add(time.Duration(ms) * time.Millisecond)
	}
	if v := ctx.Request.Header.Peek("X-Sluice-Tier"); len(v) > 0 {
		if len(v) > 64 {
			return models.InvalidParam("X-Sluice-Tier", "header X-Sluice-Tier must be at most 64 bytes, got %d", len(v))
		}
		r.Tier = string(v) // the router checks it against the configured tiers
	}
	if err := cacheDirective(ctx, r); err != nil {
		return err
	}
	if v := ctx.Request.Header.Peek("X-Sluice-Feature"); len(v) > 0 {
		if len(v) > 128 {
			return models.InvalidParam("X-Sluice-Feature", "header X-Sluice-Feature must be at most 128 bytes, got %d", len(v))
		}
		r.Feature = string(v)
	}
	if v := ctx.Request.Header.Peek("X-Sluice-Compress"); len(v) > 0 {
		if len(v) > 64 {
			return models.InvalidParam("X-Sluice-Compress", "header X-Sluice-Compress must be at most 64 bytes, got %d", len(v))
		}
		r.Compress = string(v)
	}
	return nil
}

// cacheDirective reads what the client asks of the answer cache: Cache-Control no-cache
// (answer afresh, the new answer may be kept) and no-store (neither read nor keep), or
// sluice's own X-Sluice-Cache: refresh, off or force (cache even a request sampled at a
// high temperature).
func cacheDirective(ctx *fasthttp.RequestCtx, r *models.Request) error {
	if cc := ctx.Request.Header.Peek("Cache-Control"); len(cc) > 0 {
		for _, d := range bytes.Split(cc, []byte{','}) {
			switch string(bytes.ToLower(bytes.TrimSpace(d))) {
			case "no-cache", "max-age=0":
				r.Cache |= models.CacheNoRead
			case "no-store":
				r.Cache |= models.CacheNoStore
			}
		}
	}
	switch v := ctx.Request.Header.Peek("X-Sluice-Cache"); string(v) {
	case "":
	case "off", "bypass":
		r.Cache |= models.CacheNoStore
	case "refresh":
		r.Cache |= models.CacheNoRead
	case "force", "on":
		r.Cache |= models.CacheForce
	default:
		return models.InvalidParam("X-Sluice-Cache", "header X-Sluice-Cache must be off, refresh or force, got %q", v)
	}
	return nil
}

// setTraceHeaders reports what the stages did with the request (models.Trace): the
// cache's verdict, the compression ratio, the route and the region the answer came from.
func setTraceHeaders(h *fasthttp.ResponseHeader, r *models.Request, t models.Target) {
	tr := &r.Trace
	if tr.Cache != "" {
		v := tr.Cache
		if tr.Cache == "hit-semantic" {
			v += "; similarity=" + strconv.FormatFloat(tr.CacheSimilarity, 'f', 3, 64)
		}
		h.Set("X-Sluice-Cache", v)
	}
	if tr.PromptTokensBefore > 0 && tr.PromptTokensAfter > 0 {
		ratio := float64(tr.PromptTokensBefore) / float64(tr.PromptTokensAfter)
		h.Set("X-Sluice-Compression", strconv.FormatFloat(ratio, 'f', 2, 64)+"; tokens="+
			strconv.Itoa(tr.PromptTokensBefore)+"->"+strconv.Itoa(tr.PromptTokensAfter))
	}
	if tr.Route != "" {
		h.Set("X-Sluice-Route", tr.Route)
	}
	region := tr.Region
	if region == "" {
		region = t.Region
	}
	if region != "" {
		h.Set("X-Sluice-Region", region)
	}
	if tr.Overflow != "" {
		h.Set("X-Sluice-Overflow", tr.Overflow)
	}
}

func idPrefix(k models.Kind) string {
	if k == models.KindCompletion {
		return "cmpl-"
	}
	return "chatcmpl-"
}

// mergeToolCalls collects tool calls: whole arrays (non-streamed) replace, deltas append.
func mergeToolCalls(acc, next []byte) []byte {
	if len(next) == 0 {
		return acc
	}
	if len(acc) == 0 {
		return append([]byte(nil), next...)
	}
	// Structured backends send whole tool calls; concatenate the arrays.
	out := append([]byte(nil), acc[:len(acc)-1]...)
	out = append(out, ',')
	return append(out, next[1:]...)
}

// record hands a finished request to the Record hook, with its status, latency and
// time to first token in r.Trace. It runs before the end of the answer is written.
func (s *Server) record(r *models.Request, t models.Target, u *models.Usage, status int, ttft time.Duration) {
	if s.opts.Record == nil {
		return
	}
	r.Trace.Status, r.Trace.Latency, r.Trace.TTFT = status, time.Since(r.Arrived), ttft
	s.opts.Record(r, t, u)
}

// recordFailure records a request that ends with the error already set on ctx.
func (s *Server) recordFailure(ctx *fasthttp.RequestCtx, r *models.Request, t models.Target, u models.Usage) {
	s.record(r, t, &u, ctx.Response.StatusCode(), 0)
}

// setCostHeaders reports a request's cost (X-Sluice-Cost-USD) and what it would have
// cost on the reference cloud model.
func setCostHeaders(h *fasthttp.ResponseHeader, c models.Cost) {
	var buf [32]byte
	h.SetBytesV("X-Sluice-Cost-USD", strconv.AppendFloat(buf[:0], c.Total(), 'f', 8, 64))
	if c.ReferenceModel != "" {
		h.SetBytesV("X-Sluice-Reference-Cost-USD", strconv.AppendFloat(buf[:0], c.Reference, 'f', 8, 64))
		h.Set("X-Sluice-Reference-Model", c.ReferenceModel)
	}
}

// finish records a finished request's usage and timings.
func (s *Server) finish(endpoint string, t models.Target, r *models.Request, u models.Usage, err error, ttft time.Duration) {
	h := s.m.series(endpoint, t.Model)
	h.duration.Observe(time.Since(r.Arrived).Seconds())
	if ttft > 0 {
		h.ttft.Observe(ttft.Seconds())
	}
	if err != nil && !errors.Is(err, models.ErrCanceled) {
		s.opts.Logger.Warn("request failed", "id", r.ID, "model", t.Model, "backend", t.Backend, "err", err)
	}
}
