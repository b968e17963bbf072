package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
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
	// APIKeys are the accepted bearer keys' SHA-256 hashes; empty: no authentication.
	APIKeys [][32]byte
	// AdminKeys guard /admin/*; empty: the admin endpoints are closed.
	AdminKeys [][32]byte
	// Status renders GET /admin/status (JSON); nil: not served.
	Status    func() []byte
	Router    Router
	Scheduler Scheduler
	Models    func() []models.ModelInfo
	// Ready reports readiness and a JSON-serialisable detail for /readyz.
	Ready    func() (bool, []byte)
	Registry *prometheus.Registry // metrics are registered here and served on /metrics
	Logger   *slog.Logger
	// Record is called once per finished request with its final usage (and cost), before
	// the usage is written to the client; it may fill in u.Cost.Reference.
	Record func(r *models.Request, t models.Target, u *models.Usage)
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
	bufs    sync.Pool
	prom    fasthttp.RequestHandler
	seq     atomic.Uint64
	idPre   string
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
	s := &Server{opts: opts, m: newMetrics(opts.Registry)}
	s.idPre = strconv.FormatInt(time.Now().UnixNano()&0xffffffffff, 36)
	s.prom = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{}))
	s.srv = &fasthttp.Server{
		Handler:                       s.handle,
		ErrorHandler:                  s.parseError,
		HeaderReceived:                s.headerReceived,
		MaxRequestBodySize:            opts.MaxBodyBytes,
		ReadTimeout:                   60 * time.Second,
		IdleTimeout:                   120 * time.Second,
		NoDefaultServerHeader:         true,
		DisableHeaderNamesNormalizing: false,
		Name:                          "sluice",
		CloseOnShutdown:               true,
		Logger:                        fasthttpLogger{opts.Logger},
	}
	return s, nil
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) { f.l.Debug(fmt.Sprintf(format, args...)) }

// Serve answers connections from ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// Shutdown stops accepting connections and lets requests in flight finish until ctx
// ends. Requests still running then end when their engines stop.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.ShutdownWithContext(ctx)
}

// Handler exposes the request handler (for in-process tests and benchmarks).
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

func (s *Server) parseError(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, fasthttp.ErrBodyTooLarge) || strings.Contains(err.Error(), "body size exceeds") {
		limit := int64(s.opts.MaxBodyBytes)
		if s.isUpload(&ctx.Request.Header) {
			limit = s.opts.Batches.MaxFileBytes()
		}
		s.fail(ctx, "", "", models.Errorf(models.ErrTooLarge, "request body is larger than the %d-byte limit", limit))
		return
	}
	s.fail(ctx, "", "", models.Errorf(models.ErrInvalid, "malformed HTTP request: %v", err))
}

type route struct {
	method string
	h      func(*Server, *fasthttp.RequestCtx)
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
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

// authorize checks the bearer key and returns the tenant it identifies.
func (s *Server) authorize(ctx *fasthttp.RequestCtx) (string, error) {
	if len(s.opts.APIKeys) == 0 {
		return "", nil
	}
	if cred, ok := batchCred(ctx); ok {
		return s.credTenant(cred)
	}
	return checkKey(ctx, s.opts.APIKeys)
}

// checkKey finds the request's key among digests (constant-time compares).
func checkKey(ctx *fasthttp.RequestCtx, digests [][32]byte) (string, error) {
	h := ctx.Request.Header.Peek("Authorization")
	key, ok := bytes.CutPrefix(h, []byte("Bearer "))
	if !ok {
		key = ctx.Request.Header.Peek("X-Api-Key") // Anthropic-style clients
	}
	if len(key) == 0 {
		return "", models.Errorf(models.ErrAuth, "missing API key: send Authorization: Bearer <key>")
	}
	sum := sha256.Sum256(key)
	for i := range digests {
		if subtle.ConstantTimeCompare(sum[:], digests[i][:]) == 1 {
			return "key-" + fmt.Sprintf("%x", sum[:6]), nil
		}
	}
	return "", models.Errorf(models.ErrAuth, "invalid API key")
}

func (s *Server) fail(ctx *fasthttp.RequestCtx, endpoint, model string, err error) {
	writeError(ctx, err)
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
	ctx.SetBody(detail)
}

func (s *Server) metrics(ctx *fasthttp.RequestCtx) { s.prom(ctx) }

func (s *Server) adminStatus(ctx *fasthttp.RequestCtx) {
	if len(s.opts.AdminKeys) == 0 || s.opts.Status == nil {
		s.fail(ctx, "", "", models.Errorf(models.ErrForbidden, "admin endpoints are closed: configure server.admin_keys"))
		return
	}
	if _, err := checkKey(ctx, s.opts.AdminKeys); err != nil {
		s.fail(ctx, "", "", models.Errorf(models.ErrAuth, "admin endpoints need an admin key: %v", err))
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(s.opts.Status())
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
