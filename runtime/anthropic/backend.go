package anthropic

import (
	"bytes"
	"context"
	"fmt"
	"io"
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
	DefaultBaseURL        = "https://api.anthropic.com"
	DefaultVersion        = "2023-06-01"
	DefaultMaxTokens      = 4096
	DefaultMaxConcurrency = 16
)

const provider = "anthropic"

// Options configure a Backend.
type Options struct {
	Name    string // backend id, for errors and metrics
	BaseURL string // default DefaultBaseURL; requests go to BaseURL + "/v1/messages"
	APIKey  string // sent as x-api-key
	// Version is the anthropic-version header (default DefaultVersion).
	Version string
	// Headers are extra request headers (anthropic-beta, ...).
	Headers map[string]string
	// MaxConcurrency is how many requests sluice sends at once: the backend's slots
	// (default DefaultMaxConcurrency).
	MaxConcurrency int
	// MaxTokens is max_tokens for requests that set none; the API requires one
	// (default DefaultMaxTokens).
	MaxTokens int
	Counter   models.TokenCounter // for usage estimates of cut-short answers
	Upstream  upstream.Options
}

// Backend sends requests to Anthropic's Messages API.
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
	opts.BaseURL = strings.TrimSuffix(strings.TrimRight(opts.BaseURL, "/"), "/v1")
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	if opts.MaxConcurrency <= 0 {
		opts.MaxConcurrency = DefaultMaxConcurrency
	}
	if opts.MaxTokens <= 0 {
		opts.MaxTokens = DefaultMaxTokens
	}
	if opts.APIKey == "" {
		return nil, fmt.Errorf("anthropic backend %q: no API key", opts.Name)
	}
	c, err := upstream.New(opts.BaseURL, opts.Upstream)
	if err != nil {
		return nil, fmt.Errorf("anthropic backend %q: %w", opts.Name, err)
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

// Open sends r to the Messages API. A streamed answer is read up to its first content
// (or its end), so that a refusal sent before any token (an overloaded error event)
// comes from Open, where a fallback can still act on it.
func (b *Backend) Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	if r.Kind == models.KindEmbedding {
		return nil, &models.Error{Kind: models.ErrInvalid, Code: "model_not_supported", Param: "model",
			Msg: fmt.Sprintf("anthropic backend %q: embeddings are not supported", b.opts.Name)}
	}
	if t.UpstreamModel == "" {
		return nil, models.Errorf(models.ErrInvalid, "anthropic backend %q: target has no upstream model", b.opts.Name)
	}
	bp := b.getBuf()
	body, err := encodeRequest((*bp)[:0], t.UpstreamModel, r, b.opts.MaxTokens)
	if err != nil {
		b.bufs.Put(bp)
		return nil, err
	}
	req := fasthttp.AcquireRequest()
	b.client.Prepare(req, fasthttp.MethodPost, "/v1/messages")
	req.Header.SetContentType("application/json")
	req.Header.Set("x-api-key", b.opts.APIKey)
	req.Header.Set("anthropic-version", b.opts.Version)
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
		err := b.statusError(call.Resp)
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

// statusError reads an error answer: {"type":"error","error":{"type","message"}}.
func (b *Backend) statusError(resp *fasthttp.Response) error {
	var p fastjson.Parser
	f := cloud.Failure{Status: resp.StatusCode(), RetryAfter: cloud.RetryAfter(&resp.Header, time.Now())}
	if v, err := p.ParseBytes(resp.Body()); err == nil {
		f.Type = string(v.GetStringBytes("error", "type"))
		f.Message = string(v.GetStringBytes("error", "message"))
	} else {
		f.Message = strings.TrimSpace(string(truncate(resp.Body(), 512)))
	}
	return b.failure(f)
}

// failure adds what only Anthropic's messages say: a prompt longer than the window.
func (b *Backend) failure(f cloud.Failure) error {
	if f.Status == 400 || f.Type == "invalid_request_error" {
		m := strings.ToLower(f.Message)
		f.ContextLength = strings.Contains(m, "prompt is too long") ||
			strings.Contains(m, "exceed context limit") || strings.Contains(m, "context window")
	}
	return cloud.Error(provider, b.opts.Name, f)
}

// eventError maps an error event of a stream by its error type.
func (b *Backend) eventError(v *fastjson.Value) error {
	f := cloud.Failure{Type: string(v.GetStringBytes("error", "type")), Message: string(v.GetStringBytes("error", "message"))}
	f.Status = statusOfType(f.Type)
	return b.failure(f)
}

// statusOfType is the HTTP status Anthropic documents for each error type.
func statusOfType(t string) int {
	switch t {
	case "invalid_request_error":
		return 400
	case "authentication_error":
		return 401
	case "billing_error":
		return 402
	case "permission_error":
		return 403
	case "not_found_error":
		return 404
	case "request_too_large":
		return 413
	case "rate_limit_error":
		return 429
	case "timeout_error":
		return 504
	case "overloaded_error":
		return 529
	}
	return 500 // api_error and anything new
}

func truncate(b []byte, n int) []byte {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		return b[:n]
	}
	return b
}
