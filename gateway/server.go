package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sluice-llm/sluice/models"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"github.com/valyala/fastjson"
)

// Router chooses where a request goes.
type Router interface {
	Route(ctx context.Context, r *models.Request) (models.Target, error)
}

// Scheduler runs a request on a target and returns the engine's answer as a stream.
type Scheduler interface {
	Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error)
}

// Options configure a Server. Router, Scheduler and Models are required.
type Options struct {
	MaxBodyBytes   int           // default 8 MiB
	RequestTimeout time.Duration // default 10 minutes
	Limits         Limits        // against slow, abusive or too many clients
	// Keys resolves bearer keys to their policy (ledger.KeyRing); nil: APIKeys, the
	// accepted keys' SHA-256 digests. Neither: no authentication.
	Keys    Keys
	APIKeys [][32]byte
	// AdminKeys guard /admin/*; empty: the admin endpoints are closed.
	AdminKeys [][32]byte
	// Status renders GET /admin/status (JSON); nil: not served.
	Status func() []byte
	// CachePurge serves POST /admin/cache/purge?tenant=&model= (either may be empty:
	// all); it returns how many cached answers it removed. nil: not served.
	CachePurge func(ctx context.Context, tenant, model string) (int, error)
	Router     Router
	Scheduler  Scheduler
	Models     func() []models.ModelInfo
	// Ready reports readiness and a JSON-serialisable detail for /readyz.
	Ready    func() (bool, []byte)
	Registry *prometheus.Registry // metrics are registered here and served on /metrics
	Logger   *slog.Logger
	// Record is called once per request that was parsed, when it ends (served, failed
	// or abandoned), with its final usage (and cost), before the end of the answer is
	// written to the client; r.Trace holds its status, latency and TTFT. It may fill in
	// u.Cost.Reference. When it returns, the request counts as recorded (the ledger
	// makes its record crash-safe first).
	Record func(r *models.Request, t models.Target, u *models.Usage)
	// Usage serves GET /v1/usage (nil: 404): caller is the request's key (nil with
	// authentication off), admin whether it carries an admin key, query the raw query.
	Usage func(ctx context.Context, caller *models.Key, admin bool, query string) (contentType string, body []byte, err error)
	// KeyAdmin serves /admin/keys[/{id}] behind an admin key (nil: 404).
	KeyAdmin func(ctx context.Context, method, id string, body []byte) (status int, out []byte, err error)
	// Batches serves /v1/files and /v1/batches (nil: 404).
	Batches Batches
	// Dashboard serves /dashboard and its data at /admin/dashboard (nil: 404).
	Dashboard Dashboard
}

// Server is the HTTP front end.
type Server struct {
	opts    Options
	m       *metrics
	srv     *fasthttp.Server
	parsers fastjson.ParserPool
	bufs    bufPool
	evbufs  bufPool // a stream's events
	prom    fasthttp.RequestHandler
	seq     atomic.Uint64
	idPre   string
	active  atomic.Int64 // inference requests waiting or running (Limits.MaxConcurrentRequests)
	gate    *bodyGate
	// hangups cancels requests whose client left (nil: not watched, e.g. not Linux).
	hangups *hangups
	// life guards what Serve and Shutdown share: a Shutdown may come before a Serve (a
	// signal during start-up), and fasthttp's own Shutdown then finds nothing to stop.
	life struct {
		sync.Mutex
		started, closed bool
		lns             []net.Listener
	}
	keys Keys
}

// New returns a server for opts.
func New(opts Options) (*Server, error) {
	if opts.Router == nil || opts.Scheduler == nil || opts.Models == nil {
		return nil, errors.New("gateway: Router, Scheduler and Models are required")
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 8 << 20
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	opts.Limits.applyDefaults()
	s := &Server{opts: opts, m: newMetrics(opts.Registry), gate: newBodyGate(opts.Limits, opts.MaxBodyBytes), keys: opts.Keys}
	s.initPools()
	if s.keys == nil && len(opts.APIKeys) > 0 {
		s.keys = newStaticKeys(opts.APIKeys)
	}
	s.idPre = strconv.FormatInt(time.Now().UnixNano()&0xffffffffff, 36)
	s.prom = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{}))
	s.srv = &fasthttp.Server{
		Handler:                       s.handle,
		ErrorHandler:                  s.parseError,
		HeaderReceived:                s.headerReceived,
		MaxRequestBodySize:            opts.MaxBodyBytes,
		ReadTimeout:                   opts.Limits.HeaderTimeout, // the body's: headerReceived
		WriteTimeout:                  opts.Limits.WriteTimeout,  // streams extend theirs per write
		IdleTimeout:                   opts.Limits.IdleTimeout,
		ReadBufferSize:                4096,
		NoDefaultServerHeader:         true,
		DisableHeaderNamesNormalizing: false,
		Name:                          "sluice",
		CloseOnShutdown:               true,
		// fasthttp's errors about a request it cannot parse otherwise quote the
		// request's head, Authorization header (an API key) included, into the log.
		SecureErrorLogMessage: true,
		Logger:                fasthttpLogger{opts.Logger},
	}
	return s, nil
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) { f.l.Debug(fmt.Sprintf(format, args...)) }

// Serve answers connections from ln until Shutdown. Call it once.
func (s *Server) Serve(ln net.Listener) error {
	s.life.Lock()
	if s.life.closed {
		s.life.Unlock()
		_ = ln.Close()
		return nil
	}
	if !s.life.started {
		s.life.started = true
		if h := newHangups(); h != nil {
			s.hangups = h
			hung := s.m.hangups.WithLabelValues("waiting_or_running")
			go h.run(hung.Inc)
		}
	}
	ll := &limitListener{Listener: ln, s: s, max: int64(s.opts.Limits.MaxConnections), answer: rejectAnswer()}
	s.life.lns = append(s.life.lns, ll)
	s.life.Unlock()
	err := s.srv.Serve(ll)
	if errors.Is(err, net.ErrClosed) {
		err = nil // closed by Shutdown
	}
	return err
}

// Shutdown stops accepting connections and lets requests in flight finish until ctx
// ends. Requests still running then end when their engines stop. A Serve called after
// it returns at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.life.Lock()
	s.life.closed = true
	lns, h := s.life.lns, s.hangups
	s.life.Unlock()
	err := s.srv.ShutdownWithContext(ctx)
	// A Serve that began just before may not have reached fasthttp yet: closing its
	// listener ends it either way.
	for _, ln := range lns {
		_ = ln.Close()
	}
	if h != nil {
		h.stop()
	}
	return err
}

// Handler exposes the request handler (for in-process tests and benchmarks).
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

// parseError answers a request fasthttp could not read: too large, refused by the
// large-body gate, too slow, or malformed.
func (s *Server) parseError(ctx *fasthttp.RequestCtx, err error) {
	refused := s.gate.done(&ctx.Request.Header) // also ends the claim of a body that failed
	tooLarge := errors.Is(err, fasthttp.ErrBodyTooLarge) || strings.Contains(err.Error(), "body size exceeds")
	switch {
	case tooLarge && refused:
		s.m.refused.WithLabelValues("large_bodies").Inc()
		s.refuseAndLinger(ctx, errBodiesBusy)
	case tooLarge:
		s.m.refused.WithLabelValues("too_large").Inc()
		limit := int64(s.opts.MaxBodyBytes)
		if s.isUpload(&ctx.Request.Header) {
			limit = s.opts.Batches.MaxFileBytes()
		}
		s.refuseAndLinger(ctx, models.Errorf(models.ErrTooLarge, "request body is larger than the %d-byte limit", limit))
	case isTimeout(err):
		s.m.refused.WithLabelValues("slow_client").Inc()
		s.fail(ctx, "", "", errSlowRequest)
	default:
		s.fail(ctx, "", "", models.Errorf(models.ErrInvalid, "malformed HTTP request: %v", err))
	}
}

type route struct {
	method string
	h      func(*Server, *fasthttp.RequestCtx)
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	if s.gate.isLarge(ctx.Request.Header.ContentLength()) {
		s.handleLarge(ctx)
		return
	}
	s.route(ctx)
}

// handleLarge answers a request with a large body, which holds one of the large-body
// gate's tokens until its answer is done. The body is dropped from the connection once
// the engine has it, so that an idle keep-alive connection does not keep it.
func (s *Server) handleLarge(ctx *fasthttp.RequestCtx) {
	held := s.gate.holds(&ctx.Request.Header)
	s.route(ctx)
	if !held {
		return
	}
	ctx.Request.SwapBody(nil)
	h := &ctx.Request.Header
	switch b := ctx.Response.BodyStream().(type) {
	case *sseBody:
		b.onClose = func() { s.gate.done(h) }
	case *anthropicBody:
		b.onClose = func() { s.gate.done(h) }
	default:
		s.gate.done(h)
	}
}

func (s *Server) route(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	method := ctx.Method()
	var rt route
	switch string(path) {
	case "/v1/chat/completions":
		rt = route{fasthttp.MethodPost, (*Server).chat}
	case "/v1/completions":
		rt = route{fasthttp.MethodPost, (*Server).completions}
	case "/v1/embeddings":
		rt = route{fasthttp.MethodPost, (*Server).embeddings}
	case "/v1/messages":
		rt = route{fasthttp.MethodPost, (*Server).messages}
	case "/v1/models":
		rt = route{fasthttp.MethodGet, (*Server).listModels}
	case "/healthz":
		rt = route{fasthttp.MethodGet, (*Server).healthz}
	case "/readyz":
		rt = route{fasthttp.MethodGet, (*Server).readyz}
	case "/metrics":
		rt = route{fasthttp.MethodGet, (*Server).metrics}
	case "/admin/status":
		rt = route{fasthttp.MethodGet, (*Server).adminStatus}
	case "/v1/usage":
		rt = route{fasthttp.MethodGet, (*Server).usageReport}
	case "/admin/cache/purge":
		rt = route{fasthttp.MethodPost, (*Server).adminCachePurge}
	case "/admin/dashboard":
		rt = route{fasthttp.MethodGet, (*Server).dashboardData}
	case "/dashboard":
		rt = route{fasthttp.MethodGet, (*Server).dashboardPage}
	case "/v1/files", "/v1/batches":
		s.batchAPI(ctx) // several methods: checked by the handler
		return
	default:
		if bytes.HasPrefix(path, []byte("/dashboard/")) {
			rt = route{fasthttp.MethodGet, (*Server).dashboardPage}
			break
		}
		if bytes.HasPrefix(path, []byte("/v1/files/")) || bytes.HasPrefix(path, []byte("/v1/batches/")) {
			s.batchAPI(ctx)
			return
		}
		if string(path) == "/admin/keys" || bytes.HasPrefix(path, []byte("/admin/keys/")) {
			s.adminKeys(ctx) // several methods: checked by the handler
			return
		}
		if bytes.HasPrefix(path, []byte("/v1/models/")) {
			rt = route{fasthttp.MethodGet, (*Server).getModel}
			break
		}
		s.fail(ctx, "", "", &models.Error{Kind: models.ErrNotFound, Code: "unknown_route",
			Msg: fmt.Sprintf("no route for %s %s", method, path)})
		return
	}
	if string(method) != rt.method && !(rt.method == fasthttp.MethodGet && string(method) == fasthttp.MethodHead) {
		ctx.Response.Header.Set("Allow", rt.method)
		s.fail(ctx, "", "", &models.Error{Kind: models.ErrInvalid, Status: fasthttp.StatusMethodNotAllowed,
			Code: "method_not_allowed", Msg: fmt.Sprintf("method %s is not allowed on %s; use %s", method, path, rt.method)})
		return
	}
	rt.h(s, ctx)
}

// fail answers with err. A request that has an id (the X-Request-Id response header) has
// it in the message of a server-side error, whose detail is logged here instead.
func (s *Server) fail(ctx *fasthttp.RequestCtx, endpoint, model string, err error) {
	id := string(ctx.Response.Header.Peek("X-Request-Id"))
	writeError(ctx, err, id)
	if ctx.Response.StatusCode() >= 500 {
		s.opts.Logger.Warn("request failed", "id", id, "endpoint", endpoint, "model", model,
			"status", ctx.Response.StatusCode(), "err", err)
	}
	if endpoint != "" {
		s.m.requests.WithLabelValues(endpoint, model, strconv.Itoa(ctx.Response.StatusCode())).Inc()
	}
}

func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"status":"ok"}`)
}

func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json")
	if s.opts.Ready == nil {
		ctx.SetBodyString(`{"status":"ready"}`)
		return
	}
	ok, detail := s.opts.Ready()
	if !ok {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.Response.Header.Set("Retry-After", "1")
	}
	if !s.isAdmin(ctx) {
		detail = redactReasons(detail)
	}
	ctx.SetBody(detail)
}

// redactReasons drops the "reason" fields (why an engine is down: dial errors naming
// internal addresses) from a readiness detail shown without an admin key.
func redactReasons(detail []byte) []byte {
	if !bytes.Contains(detail, []byte(`"reason"`)) {
		return detail
	}
	var p fastjson.Parser
	v, err := p.ParseBytes(detail)
	if err != nil {
		return []byte(`{"status":"unknown"}`)
	}
	var walk func(v *fastjson.Value)
	walk = func(v *fastjson.Value) {
		switch v.Type() {
		case fastjson.TypeObject:
			o, _ := v.Object()
			o.Del("reason")
			o.Visit(func(_ []byte, c *fastjson.Value) { walk(c) })
		case fastjson.TypeArray:
			a, _ := v.Array()
			for _, c := range a {
				walk(c)
			}
		}
	}
	walk(v)
	return v.MarshalTo(nil)
}

func (s *Server) metrics(ctx *fasthttp.RequestCtx) { s.prom(ctx) }

func (s *Server) adminStatus(ctx *fasthttp.RequestCtx) {
	if s.opts.Status == nil {
		s.fail(ctx, "", "", models.Errorf(models.ErrForbidden, "admin endpoints are closed: configure server.admin_keys"))
		return
	}
	if err := s.checkAdmin(ctx); err != nil {
		s.fail(ctx, "", "", err)
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(s.opts.Status())
}

// admin checks the admin key (checkAdmin) for an endpoint that is served; it writes the
// error and returns false when refused.
func (s *Server) admin(ctx *fasthttp.RequestCtx, served bool) bool {
	if !served {
		s.fail(ctx, "", "", models.Errorf(models.ErrForbidden, "this admin endpoint is not served (its feature is off)"))
		return false
	}
	if err := s.checkAdmin(ctx); err != nil {
		s.fail(ctx, "", "", err)
		return false
	}
	return true
}

// adminCachePurge removes cached answers of a tenant, a model, both, or (neither given,
// with all=true) everything.
func (s *Server) adminCachePurge(ctx *fasthttp.RequestCtx) {
	if !s.admin(ctx, s.opts.CachePurge != nil) {
		return
	}
	args := ctx.QueryArgs()
	tenant, model := string(args.Peek("tenant")), string(args.Peek("model"))
	if tenant == "" && model == "" && string(args.Peek("all")) != "true" {
		s.fail(ctx, "", "", models.InvalidParam("tenant", "name a tenant or a model to purge (or all=true for everything)"))
		return
	}
	n, err := s.opts.CachePurge(context.Background(), tenant, model)
	if err != nil {
		s.opts.Logger.Warn("cache purge failed", "err", err)
		s.fail(ctx, "", "", &models.Error{Kind: models.ErrUnavailable, Msg: "the cache store did not answer", Err: err})
		return
	}
	b := append([]byte(`{"purged":`), strconv.Itoa(n)...)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '}'))
}

func (s *Server) listModels(ctx *fasthttp.RequestCtx) {
	if _, err := s.authorize(ctx); err != nil {
		s.fail(ctx, "models", "", err)
		return
	}
	b := []byte(`{"object":"list","data":[`)
	for i, m := range s.opts.Models() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendModel(b, m)
	}
	b = append(b, "]}"...)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

func (s *Server) getModel(ctx *fasthttp.RequestCtx) {
	if _, err := s.authorize(ctx); err != nil {
		s.fail(ctx, "models", "", err)
		return
	}
	id := strings.TrimPrefix(string(ctx.Path()), "/v1/models/")
	for _, m := range s.opts.Models() {
		if m.ID == id {
			ctx.SetContentType("application/json")
			ctx.SetBody(appendModel(nil, m))
			return
		}
	}
	s.fail(ctx, "models", "", &models.Error{Kind: models.ErrNotFound, Code: "model_not_found", Param: "model",
		Msg: fmt.Sprintf("the model %q does not exist", id)})
}

func appendModel(b []byte, m models.ModelInfo) []byte {
	owner := m.OwnedBy
	if owner == "" {
		owner = "sluice"
	}
	b = append(b, `{"id":`...)
	b = appendJSONString(b, m.ID)
	b = append(b, `,"object":"model","created":`...)
	b = strconv.AppendInt(b, m.Created, 10)
	b = append(b, `,"owned_by":`...)
	b = appendJSONString(b, owner)
	return append(b, '}')
}
