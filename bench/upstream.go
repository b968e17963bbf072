package bench

import (
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// The fake engine's answer, and the pieces the load generator checks for.
const (
	answerText   = "The capital of France is Paris."
	answerDeltas = "The capital| of France| is| Paris|." // streamed in these pieces
	lastDelta    = `"content":"."`
	usageFields  = `"usage":{"prompt_tokens":52,"completion_tokens":8,"total_tokens":60,"prompt_tokens_details":{"cached_tokens":0}}`
	sseDone      = "data: [DONE]\n\n"
)

// upstream is a fast fake OpenAI-compatible engine: it validates the request like an
// engine would, then answers at once (no artificial delay). Streams are written one SSE
// event per HTTP chunk, each flushed, the way engines emit tokens.
type upstream struct {
	srv     *fasthttp.Server
	ln      net.Listener
	done    chan struct{}
	parsers fastjson.ParserPool
	seq     atomic.Uint64
	// accepted counts connections opened to the engine: a client that does not reuse
	// its connections shows here.
	accepted atomic.Int64
	bodies   sync.Pool // *sseReader
	models   []byte
	events   []string // the "choices" part of each streamed chunk, in order
	usageEv  string   // the usage-only chunk's tail
}

func startUpstream() (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{done: make(chan struct{})}
	u.ln = countingListener{Listener: ln, n: &u.accepted}
	u.models = []byte(`{"object":"list","data":[{"id":"bench","object":"model","created":` +
		strconv.FormatInt(time.Now().Unix(), 10) + `,"owned_by":"bench"}]}`)
	u.events = append(u.events,
		`,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]`)
	for _, d := range strings.Split(answerDeltas, "|") {
		u.events = append(u.events,
			`,"choices":[{"index":0,"delta":{"content":"`+d+`"},"logprobs":null,"finish_reason":null}]`)
	}
	u.events = append(u.events, `,"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]`)
	u.usageEv = `,"choices":[],` + usageFields
	u.srv = &fasthttp.Server{
		Handler:               u.handle,
		NoDefaultServerHeader: true,
		ReadTimeout:           60 * time.Second,
		IdleTimeout:           120 * time.Second,
	}
	goLabeled("engine", func() {
		_ = u.srv.Serve(u.ln)
		close(u.done)
	})
	return u, nil
}

func (u *upstream) addr() string { return u.ln.Addr().String() }

func (u *upstream) close() {
	_ = u.srv.Shutdown()
	<-u.done
}

func (u *upstream) handle(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/v1/models":
		ctx.SetContentType("application/json")
		ctx.SetBody(u.models)
	case "/v1/chat/completions":
		if !ctx.IsPost() {
			ctx.Error(`{"error":{"message":"use POST"}}`, fasthttp.StatusMethodNotAllowed)
			return
		}
		u.chat(ctx)
	default:
		ctx.Error(`{"error":{"message":"not found"}}`, fasthttp.StatusNotFound)
	}
}

func (u *upstream) chat(ctx *fasthttp.RequestCtx) {
	p := u.parsers.Get()
	v, err := p.ParseBytes(ctx.PostBody())
	ok := err == nil && len(v.GetStringBytes("model")) > 0 && len(v.GetArray("messages")) > 0
	stream, usage := false, false
	if ok {
		stream = v.GetBool("stream")
		usage = v.GetBool("stream_options", "include_usage")
	}
	u.parsers.Put(p)
	if !ok {
		ctx.Error(`{"error":{"message":"bad request: model and messages are required"}}`, fasthttp.StatusBadRequest)
		return
	}
	id := u.seq.Add(1)
	created := time.Now().Unix()
	if !stream {
		b := appendHead(make([]byte, 0, 512), id, created, "chat.completion")
		b = append(b, `,"choices":[{"index":0,"message":{"role":"assistant","content":"`+answerText+
			`","refusal":null},"logprobs":null,"finish_reason":"stop"}],`+usageFields+`}`...)
		ctx.SetContentType("application/json")
		ctx.SetBody(b)
		return
	}
	r, _ := u.bodies.Get().(*sseReader)
	if r == nil {
		r = &sseReader{}
	}
	r.reset(u, id, created, usage)
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.SetBodyStream(r, -1) // chunked: one Read, one event, one flushed chunk
}

func appendHead(b []byte, id uint64, created int64, object string) []byte {
	b = append(b, `{"id":"chatcmpl-fake`...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, `","object":"`...)
	b = append(b, object...)
	b = append(b, `","created":`...)
	b = strconv.AppendInt(b, created, 10)
	return append(b, `,"model":"bench","system_fingerprint":"fp_bench"`...)
}

// sseReader yields a whole stream, one event per Read.
type sseReader struct {
	u    *upstream
	buf  []byte
	ends []int
	off  int
	next int
}

func (r *sseReader) reset(u *upstream, id uint64, created int64, usage bool) {
	r.u, r.off, r.next = u, 0, 0
	b, ends := r.buf[:0], r.ends[:0]
	event := func(choices string) {
		b = append(b, "data: "...)
		b = appendHead(b, id, created, "chat.completion.chunk")
		b = append(b, choices...)
		b = append(b, "}\n\n"...)
		ends = append(ends, len(b))
	}
	for _, e := range u.events {
		event(e)
	}
	if usage {
		event(u.usageEv)
	}
	b = append(b, sseDone...)
	ends = append(ends, len(b))
	r.buf, r.ends = b, ends
}

func (r *sseReader) Read(p []byte) (int, error) {
	if r.next >= len(r.ends) {
		return 0, io.EOF
	}
	n := copy(p, r.buf[r.off:r.ends[r.next]])
	r.off += n
	if r.off == r.ends[r.next] {
		r.next++
	}
	return n, nil
}

// Close is called by fasthttp when the body is written (or the client went away).
func (r *sseReader) Close() error {
	if u := r.u; u != nil {
		r.u = nil
		u.bodies.Put(r)
	}
	return nil
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}
