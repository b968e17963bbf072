package gemini

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/internal/cloud"
	"github.com/sluice-llm/sluice/runtime/upstream"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// Defaults.
const (
	DefaultBaseURL        = "https://generativelanguage.googleapis.com"
	DefaultAPIVersion     = "v1beta"
	DefaultMaxConcurrency = 16
)

const provider = "gemini"

// Options configure a Backend.
type Options struct {
	Name    string // backend id, for errors and metrics
	BaseURL string // default DefaultBaseURL
	APIKey  string // sent as x-goog-api-key
	// APIVersion is the path's version (default DefaultAPIVersion): requests go to
	// BaseURL/{APIVersion}/models/{model}:generateContent.
	APIVersion string
	Headers    map[string]string
	// MaxConcurrency is how many requests sluice sends at once: the backend's slots
	// (default DefaultMaxConcurrency).
	MaxConcurrency int
	Counter        models.TokenCounter // for usage estimates of cut-short answers
	Upstream       upstream.Options
}

// Backend sends requests to the Gemini API.
type Backend struct {
	opts   Options
	client *upstream.Client
	health *cloud.Health
	parser fastjson.ParserPool
	bufs   sync.Pool
	active atomic.Int64
}

var _ interface {
	Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error)
	Capacity() models.Capacity
	SetCircuit(open bool, reason string)
	InFlight() int
	Close()
} = (*Backend)(nil)

// New returns a backend. It contacts nothing: a provider is not probed.
func New(opts Options) (*Backend, error) {
	if opts.BaseURL == "" {
		opts.BaseURL = DefaultBaseURL
	}
	if opts.APIVersion == "" {
		opts.APIVersion = DefaultAPIVersion
	}
	if opts.MaxConcurrency <= 0 {
		opts.MaxConcurrency = DefaultMaxConcurrency
	}
	if opts.APIKey == "" {
		return nil, fmt.Errorf("gemini backend %q: no API key", opts.Name)
	}
	c, err := upstream.New(strings.TrimRight(opts.BaseURL, "/"), opts.Upstream)
	if err != nil {
		return nil, fmt.Errorf("gemini backend %q: %w", opts.Name, err)
	}
	return &Backend{opts: opts, client: c, health: cloud.NewHealth(opts.MaxConcurrency)}, nil
}

// Name is the backend id.
func (b *Backend) Name() string { return b.opts.Name }

// Close releases idle connections.
func (b *Backend) Close() { b.client.Close() }

// Capacity is the configured concurrency, healthy unless the circuit is open.
func (b *Backend) Capacity() models.Capacity { return b.health.Capacity() }

// SetCircuit opens or closes the backend's circuit (the circuit breaker's hook).
func (b *Backend) SetCircuit(open bool, reason string) { b.health.SetCircuit(open, reason) }

// InFlight is the number of requests open on the provider.
func (b *Backend) InFlight() int { return int(b.active.Load()) }

// Dials counts connections opened to the provider.
func (b *Backend) Dials() int64 { return b.client.Dials() }

func (b *Backend) getBuf() *[]byte {
	if p, ok := b.bufs.Get().(*[]byte); ok {
		return p
	}
	s := make([]byte, 0, 4096)
	return &s
}

// path is the method's path for model.
func (b *Backend) path(model string, stream bool) string {
	model = strings.TrimPrefix(model, "models/")
	p := "/" + b.opts.APIVersion + "/models/" + url.PathEscape(model)
	if stream {
		return p + ":streamGenerateContent?alt=sse"
	}
	return p + ":generateContent"
}

// Open sends r to generateContent, or streamGenerateContent with server-sent events. A
// streamed answer is read up to its first content (or its end), so that errors before
// any token come from Open.
func (b *Backend) Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	if r.Kind == models.KindEmbedding {
		return nil, &models.Error{Kind: models.ErrInvalid, Code: "model_not_supported", Param: "model",
			Msg: fmt.Sprintf("gemini backend %q: embeddings are not supported", b.opts.Name)}
	}
	if t.UpstreamModel == "" {
		return nil, models.Errorf(models.ErrInvalid, "gemini backend %q: target has no upstream model", b.opts.Name)
	}
	bp := b.getBuf()
	body, err := encodeRequest((*bp)[:0], r)
	if err != nil {
		b.bufs.Put(bp)
		return nil, err
	}
	req := fasthttp.AcquireRequest()
	b.client.Prepare(req, fasthttp.MethodPost, b.path(t.UpstreamModel, r.Stream))
	req.Header.SetContentType("application/json")
	req.Header.Set("x-goog-api-key", b.opts.APIKey)
	for k, v := range b.opts.Headers {
		req.Header.Set(k, v)
	}
	if r.Stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	req.SetBodyRaw(body)
	deadline, _ := ctx.Deadline()
	if !r.Deadline.IsZero() && (deadline.IsZero() || r.Deadline.Before(deadline)) {
		deadline = r.Deadline
	}
	call, err := b.client.DoUntil(ctx, req, r.Stream, deadline)
	fasthttp.ReleaseRequest(req)
	*bp = body[:0]
	b.bufs.Put(bp)
	if err != nil {
		return nil, cloud.TransportError(provider, b.opts.Name, err, deadline)
	}
	if call.Resp.StatusCode() != fasthttp.StatusOK {
		if r.Stream {
			buf, _ := io.ReadAll(io.LimitReader(call, 64<<10))
			call.Resp.SetBodyRaw(buf)
		}
		err := b.statusError(call.Resp.StatusCode(), call.Resp.Body(), cloud.RetryAfter(&call.Resp.Header, time.Now()))
		call.Release()
		return nil, err
	}
	b.active.Add(1)
	s := &stream{b: b, r: r, call: call, p: b.parser.Get(), deadline: deadline}
	if r.Stream {
		s.sse = upstream.NewSSE(call, b.client.MaxEvent())
	}
	if err := s.prime(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// statusError reads a google.rpc error: {"error":{"code","message","status","details"}}
// (or an array of them).
func (b *Backend) statusError(status int, body []byte, retry time.Duration) error {
	var p fastjson.Parser
	v, err := p.ParseBytes(body)
	if err != nil {
		return cloud.Error(provider, b.opts.Name, cloud.Failure{Status: status, RetryAfter: retry,
			Message: string(bytes.TrimSpace(body[:min(len(body), 512)]))})
	}
	if v.Type() == fastjson.TypeArray {
		if a := v.GetArray(); len(a) > 0 {
			v = a[0]
		}
	}
	return b.rpcError(v.Get("error"), status, retry)
}

// rpcError maps a google.rpc.Status; status is the HTTP status (0: from the code).
func (b *Backend) rpcError(e *fastjson.Value, status int, retry time.Duration) error {
	f := cloud.Failure{Status: status, RetryAfter: retry}
	f.Message = string(e.GetStringBytes("message"))
	f.Type = string(e.GetStringBytes("status"))
	if f.Status == 0 {
		f.Status = e.GetInt("code")
	}
	if f.Status == 0 {
		f.Status = statusOfCode(f.Type)
	}
	for _, d := range e.GetArray("details") {
		switch string(d.GetStringBytes("@type")) {
		case "type.googleapis.com/google.rpc.RetryInfo":
			if dl, err := time.ParseDuration(string(d.GetStringBytes("retryDelay"))); err == nil && dl > 0 {
				f.RetryAfter = dl
			}
		case "type.googleapis.com/google.rpc.ErrorInfo":
			if r := string(d.GetStringBytes("reason")); r == "API_KEY_INVALID" || r == "API_KEY_SERVICE_BLOCKED" {
				f.Auth = true
			}
		}
	}
	m := strings.ToLower(f.Message)
	if strings.Contains(m, "api key not valid") || strings.Contains(m, "api key expired") {
		f.Auth = true
	}
	if f.Status == 400 && strings.Contains(m, "token count") && strings.Contains(m, "exceeds the maximum") {
		f.ContextLength = true
	}
	return cloud.Error(provider, b.opts.Name, f)
}

// statusOfCode is the HTTP status of a google.rpc code name.
func statusOfCode(code string) int {
	switch code {
	case "INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE":
		return 400
	case "UNAUTHENTICATED":
		return 401
	case "PERMISSION_DENIED":
		return 403
	case "NOT_FOUND":
		return 404
	case "RESOURCE_EXHAUSTED":
		return 429
	case "UNAVAILABLE":
		return 503
	case "DEADLINE_EXCEEDED":
		return 504
	}
	return 500
}
