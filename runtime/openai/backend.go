package openai

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/internal/cloud"
	"github.com/sluice-llm/sluice/runtime/upstream"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// Dialect selects engine-specific request fields.
type Dialect uint8

// Dialects.
const (
	Generic  Dialect = iota
	LlamaCpp         // llama-server: id_slot, cache_prompt; /health at the root
)

// Options configure a Backend.
type Options struct {
	Name    string // backend id, for errors and metrics
	BaseURL string // OpenAI-compatible base URL, e.g. http://127.0.0.1:8081/v1
	APIKey  string // sent as a bearer token when set
	Headers map[string]string
	Dialect Dialect
	// Slots is how many requests the engine decodes together (0: unknown).
	Slots int
	// HealthURL is probed by Refresh (default: BaseURL + "/models"; llama-server: /health).
	HealthURL string
	Counter   models.TokenCounter
	Upstream  upstream.Options

	// Cloud providers (cloud.go). Provider selects the auth header, the URL shape and
	// the body fields a provider refuses; a cloud backend is never probed, and its
	// Capacity is Slots (its max concurrency), healthy unless the circuit is open.
	Provider Provider
	// APIVersion is Azure's api-version query parameter.
	APIVersion string
	// Deployment is the Azure deployment every request goes to; empty: the target's
	// upstream model names the deployment.
	Deployment string
}

// Backend sends requests to one OpenAI-compatible engine.
type Backend struct {
	opts   Options
	client *upstream.Client
	health *upstream.Client // for a health URL on another base path
	hpath  string
	auth   string
	parser fastjson.ParserPool
	bufs   sync.Pool
	cap    atomic.Pointer[models.Capacity]
	active atomic.Int64 // requests open on this engine
	// authHeader is the header auth goes in (Authorization, or Azure's api-key).
	authHeader string
	circuit    *cloud.Health // the circuit breaker's hook (SetCircuit)
}

// Dials counts the connections opened to the engine's API (keep-alive reuse check).
func (b *Backend) Dials() int64 { return b.client.Dials() }

// InFlight is the number of requests open on the engine right now.
func (b *Backend) InFlight() int { return int(b.active.Load()) }

// New returns a backend for opts.BaseURL.
func New(opts Options) (*Backend, error) {
	if opts.Provider == ProviderAzure {
		// The resource endpoint, e.g. https://my-resource.openai.azure.com.
		opts.BaseURL = strings.TrimSuffix(strings.TrimRight(opts.BaseURL, "/"), "/openai")
		if opts.APIVersion == "" {
			opts.APIVersion = DefaultAzureAPIVersion
		}
	}
	c, err := upstream.New(opts.BaseURL, opts.Upstream)
	if err != nil {
		return nil, fmt.Errorf("openai backend %q: %w", opts.Name, err)
	}
	b := &Backend{opts: opts, client: c, authHeader: "Authorization", circuit: cloud.NewHealth(opts.Slots)}
	if opts.APIKey != "" {
		b.auth = "Bearer " + opts.APIKey
	}
	if opts.Provider == ProviderAzure {
		b.authHeader, b.auth = "api-key", opts.APIKey
	}
	hu := opts.HealthURL
	if hu == "" {
		hu = c.URL("/models")
	}
	// Split the health URL into a client base (scheme://host) and a path.
	b.health, b.hpath, err = splitURL(hu, opts.Upstream)
	if err != nil {
		return nil, fmt.Errorf("openai backend %q: health url: %w", opts.Name, err)
	}
	b.cap.Store(&models.Capacity{Slots: opts.Slots, Healthy: false, Reason: "not probed yet"})
	if opts.Provider.Cloud() {
		b.cap.Store(&models.Capacity{Slots: opts.Slots, Healthy: true})
	}
	return b, nil
}

func splitURL(raw string, o upstream.Options) (*upstream.Client, string, error) {
	// Find the path after scheme://host.
	i := 0
	for slashes := 0; i < len(raw); i++ {
		if raw[i] == '/' {
			slashes++
			if slashes == 3 {
				break
			}
		}
	}
	path := "/"
	if i < len(raw) {
		path = raw[i:]
	}
	c, err := upstream.New(raw[:i], o)
	return c, path, err
}

// Name is the backend id.
func (b *Backend) Name() string { return b.opts.Name }

// Close releases idle connections.
func (b *Backend) Close() {
	b.client.Close()
	b.health.Close()
}

// Capacity is the last known state of the engine (unhealthy while the circuit is open).
func (b *Backend) Capacity() models.Capacity { return b.circuit.Overlay(*b.cap.Load()) }

// SetCircuit opens or closes the backend's circuit: the circuit breaker's hook.
func (b *Backend) SetCircuit(open bool, reason string) { b.circuit.SetCircuit(open, reason) }

// SetCapacity replaces the capacity snapshot (engines that report slots update it).
func (b *Backend) SetCapacity(c models.Capacity) { b.cap.Store(&c) }

func (b *Backend) markDown(reason string) {
	c := *b.cap.Load()
	if !c.Healthy && c.Reason == reason {
		return
	}
	c.Healthy, c.Reason, c.UpdatedAt = false, reason, time.Now()
	b.cap.Store(&c)
}

// Refresh probes the engine's health URL and updates Capacity. A cloud provider is not
// probed.
func (b *Backend) Refresh(ctx context.Context) error {
	if b.opts.Provider.Cloud() {
		return nil
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	b.health.Prepare(req, fasthttp.MethodGet, b.hpath)
	if b.auth != "" {
		req.Header.Set(b.authHeader, b.auth)
	}
	call, err := b.health.Do(ctx, req, false)
	c := *b.cap.Load()
	c.UpdatedAt = time.Now()
	if err != nil {
		c.Healthy, c.Reason = false, "unreachable: "+upstream.Cause(err)
		b.cap.Store(&c)
		return upstream.TransportError(b.opts.Name, err)
	}
	status := call.Resp.StatusCode()
	call.Release()
	if status != fasthttp.StatusOK {
		c.Healthy, c.Reason = false, "health check answered "+strconv.Itoa(status)
		b.cap.Store(&c)
		return fmt.Errorf("openai backend %q: health check answered %d", b.opts.Name, status)
	}
	c.Healthy, c.Reason = true, ""
	if c.Slots == 0 {
		c.Slots = b.opts.Slots
	}
	b.cap.Store(&c)
	return nil
}

// Models lists the engine's models (GET /models).
func (b *Backend) Models(ctx context.Context) ([]string, error) {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	b.client.Prepare(req, fasthttp.MethodGet, "/models")
	if b.auth != "" {
		req.Header.Set(b.authHeader, b.auth)
	}
	call, err := b.client.Do(ctx, req, false)
	if err != nil {
		return nil, b.transportError(err, time.Time{})
	}
	defer call.Release()
	if call.Resp.StatusCode() != fasthttp.StatusOK {
		return nil, b.statusError(call.Resp)
	}
	p := b.parser.Get()
	defer b.parser.Put(p)
	v, err := p.ParseBytes(call.Resp.Body())
	if err != nil {
		return nil, &models.Error{Kind: models.ErrUpstream, Code: "engine_bad_json",
			Msg: fmt.Sprintf("engine %s sent a malformed model list", b.opts.Name), Err: err}
	}
	var out []string
	for _, m := range v.GetArray("data") {
		if id := m.GetStringBytes("id"); len(id) > 0 {
			out = append(out, string(id))
		}
	}
	return out, nil
}

func (b *Backend) getBuf() *[]byte {
	if p, ok := b.bufs.Get().(*[]byte); ok {
		return p
	}
	s := make([]byte, 0, 4096)
	return &s
}

// Open sends r to the engine and returns its answer as a stream.
func (b *Backend) Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	path, err := b.path(r.Kind, t.UpstreamModel)
	if err != nil {
		return nil, err
	}
	bp := b.getBuf()
	body, err := b.encode((*bp)[:0], t, r)
	if err != nil {
		b.bufs.Put(bp)
		return nil, err
	}
	req := fasthttp.AcquireRequest()
	b.client.Prepare(req, fasthttp.MethodPost, path)
	req.Header.SetContentType("application/json")
	if b.auth != "" {
		req.Header.Set(b.authHeader, b.auth)
	}
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
		return nil, b.transportError(err, deadline)
	}
	if call.Resp.StatusCode() != fasthttp.StatusOK {
		if r.Stream {
			// Read the (short) error body before giving the connection up.
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
	return s, nil
}

// encode builds the upstream body: the client's JSON with model (and friends) spliced.
func (b *Backend) encode(dst []byte, t models.Target, r *models.Request) ([]byte, error) {
	src := r.Body
	if len(src) == 0 {
		src = EncodeRequest(nil, r)
	}
	var tmp [64]byte
	model := jsonx.AppendString(tmp[:0], t.UpstreamModel)
	out, err := jsonx.Set(dst, src, "model", model)
	if err != nil {
		return nil, models.Errorf(models.ErrInvalid, "request body is not a JSON object")
	}
	if b.opts.Provider == ProviderMistral {
		return mistralBody(out), nil
	}
	if r.Stream && r.Kind != models.KindEmbedding {
		out2, _ := jsonx.Set(nil, out, "stream_options", []byte(`{"include_usage":true}`))
		out = append(out[:0], out2...)
	}
	if b.opts.Dialect == LlamaCpp && t.HasSlot && r.Kind != models.KindEmbedding {
		out2, _ := jsonx.Set(nil, out, "id_slot", strconv.AppendInt(tmp[:0], int64(t.Slot), 10))
		out2, _ = jsonx.Set(nil, out2, "cache_prompt", []byte("true"))
		out = append(out[:0], out2...)
	}
	return out, nil
}

// transportError maps a failure to reach the engine; deadline is the request's (zero:
// none). Local engines go through the shared table in runtime/upstream, and one that is
// gone is marked down until Refresh; a cloud provider is never marked down by one
// request (the circuit breaker decides).
func (b *Backend) transportError(err error, deadline time.Time) error {
	if b.opts.Provider.Cloud() {
		return cloud.TransportError(b.opts.Provider.String(), b.opts.Name, err, deadline)
	}
	e := upstream.TransportError(b.opts.Name, err)
	var ne net.Error
	if errors.Is(e, models.ErrUnavailable) && (errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &ne)) {
		b.markDown("unreachable: " + upstream.Cause(err))
	}
	return e
}

// statusError maps an engine's error answer: a cloud provider's through the cloud table
// (runtime/internal/cloud), any other engine's through the shared one in runtime/upstream.
func (b *Backend) statusError(resp *fasthttp.Response) error {
	if b.opts.Provider.Cloud() {
		return b.cloudError(resp)
	}
	return upstream.StatusError(b.opts.Name, resp.StatusCode(), string(resp.Header.Peek("Retry-After")), resp.Body())
}
