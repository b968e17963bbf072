package bench

import (
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// sseDone ends every stream.
const sseDone = "data: [DONE]\n\n"

// EngineOptions set up the fake engine.
type EngineOptions struct {
	// Answer is what it answers (default: the synthetic traffic's).
	Answer Answer `json:"answer"`
	// ChunkDelay is the pause before each streamed event after the first (0: none): a
	// slow engine, for the soak.
	ChunkDelay time.Duration `json:"chunk_delay"`
}

// usageFields is the usage object of an answer of n tokens.
func usageFields(n int) string {
	return `"usage":{"prompt_tokens":52,"completion_tokens":` + strconv.Itoa(n) + `,"total_tokens":` + strconv.Itoa(52+n) +
		`,"prompt_tokens_details":{"cached_tokens":0}}`
}

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
	full     string   // the non-streamed answer's tail
	delay    time.Duration
}

// startUpstream starts the fake engine on listen ("": a free loopback port).
func startUpstream(o EngineOptions, listen string) (*upstream, error) {
	if len(o.Answer.Pieces) == 0 {
		o.Answer = syntheticTraffic().Answer
	}
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	u := &upstream{done: make(chan struct{}), delay: o.ChunkDelay}
	u.ln = countingListener{Listener: ln, n: &u.accepted}
	u.models = []byte(`{"object":"list","data":[{"id":"bench","object":"model","created":` +
		strconv.FormatInt(time.Now().Unix(), 10) + `,"owned_by":"bench"}]}`)
	u.events = append(u.events,
		`,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]`)
	for _, d := range o.Answer.Pieces {
		u.events = append(u.events,
			`,"choices":[{"index":0,"delta":{"content":"`+d+`"},"logprobs":null,"finish_reason":null}]`)
	}
	u.events = append(u.events, `,"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]`)
	u.usageEv = `,"choices":[],` + usageFields(len(o.Answer.Pieces))
	u.full = `,"choices":[{"index":0,"message":{"role":"assistant","content":"` + o.Answer.full() +
		`","refusal":null},"logprobs":null,"finish_reason":"stop"}],` + usageFields(len(o.Answer.Pieces)) + `}`
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
		b := appendHead(make([]byte, 0, 256+len(u.full)), id, created, "chat.completion")
		b = append(b, u.full...)
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
	if r.next > 0 && r.u.delay > 0 && r.off == r.ends[r.next-1] {
		time.Sleep(r.u.delay) // a slow engine: the next token takes this long
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
