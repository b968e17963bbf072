package ollama

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/upstream"
)

// Options configure a Backend.
type Options struct {
	Name string // backend id, for errors and metrics
	URL  string // the Ollama server, e.g. http://127.0.0.1:11434
	// Slots is OLLAMA_NUM_PARALLEL of the server: requests one model decodes together
	// (default 1).
	Slots int
	// KeepAlive is how long Ollama keeps a model loaded after a request (0: the server's
	// default; negative: forever).
	KeepAlive time.Duration
	// Counter counts tokens for usage estimates (nil: about 4 bytes a token).
	Counter models.TokenCounter
}

// Backend sends requests to one Ollama server.
type Backend struct {
	opts      Options
	client    *api.Client
	transport *http.Transport
	keepAlive *api.Duration
	cap       atomic.Pointer[models.Capacity]
	inFlight  atomic.Int64
	// chunkBuffer is how many chunks a stream holds for a reader that lags behind.
	chunkBuffer int
}

var _ interface {
	Name() string
	Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error)
	Capacity() models.Capacity
	Refresh(ctx context.Context) error
	Models(ctx context.Context) ([]string, error)
	InFlight() int
	Close()
} = (*Backend)(nil)

// New returns a backend for the Ollama server at opts.URL. It does not contact the
// server: Capacity reports it unhealthy until Refresh succeeds.
func New(opts Options) (*Backend, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("ollama backend %q: url: %w", opts.Name, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("ollama backend %q: url %q: want http(s)://host:port", opts.Name, opts.URL)
	}
	if opts.Slots < 0 {
		return nil, fmt.Errorf("ollama backend %q: slots %d: must not be negative", opts.Name, opts.Slots)
	}
	if opts.Slots == 0 {
		opts.Slots = 1
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = max(2*opts.Slots, 4)
	b := &Backend{
		opts:        opts,
		client:      api.NewClient(u, &http.Client{Transport: trackingTransport{tr}}),
		transport:   tr,
		chunkBuffer: 64,
	}
	if opts.KeepAlive != 0 {
		b.keepAlive = &api.Duration{Duration: opts.KeepAlive}
	}
	b.cap.Store(&models.Capacity{Slots: opts.Slots, Reason: "not probed yet"})
	return b, nil
}

// Name is the backend id.
func (b *Backend) Name() string { return b.opts.Name }

// Close releases idle connections. Streams still open keep working until closed.
func (b *Backend) Close() { b.transport.CloseIdleConnections() }

// InFlight is how many requests the backend has running against the server.
func (b *Backend) InFlight() int { return int(b.inFlight.Load()) }

// Capacity is the last known state of the server.
func (b *Backend) Capacity() models.Capacity { return *b.cap.Load() }

// setHealth records the server's health. A probe (Refresh) always stamps UpdatedAt;
// requests only record a change.
func (b *Backend) setHealth(healthy bool, reason string, probe bool) {
	for {
		old := b.cap.Load()
		if !probe && old.Healthy == healthy && old.Reason == reason {
			return
		}
		c := *old
		c.Healthy, c.Reason, c.UpdatedAt = healthy, reason, time.Now()
		if b.cap.CompareAndSwap(old, &c) {
			return
		}
	}
}

// Refresh checks that the server answers and updates Capacity.
func (b *Backend) Refresh(ctx context.Context) error {
	if err := b.client.Heartbeat(ctx); err != nil {
		me := b.mapError(ctx, err) // marks the backend down when unreachable
		if ctx.Err() == nil && !errors.Is(me, models.ErrUnavailable) {
			reason := "heartbeat failed"
			var e *models.Error
			if errors.As(me, &e) && e.Code != "" {
				reason += ": " + e.Code
			}
			b.setHealth(false, reason, true)
		}
		return me
	}
	b.setHealth(true, "", true)
	return nil
}

// Models lists the models the server has (GET /api/tags), as name:tag.
func (b *Backend) Models(ctx context.Context) ([]string, error) {
	lr, err := b.client.List(ctx)
	if err != nil {
		return nil, b.mapError(ctx, err)
	}
	out := make([]string, 0, len(lr.Models))
	for _, m := range lr.Models {
		out = append(out, m.Name)
	}
	return out, nil
}

// Open sends r to the server and returns its answer as a stream. It waits for the first
// piece of the answer, so errors the server reports before answering (unknown model,
// bad request, unreachable server) come from Open rather than from Recv.
func (b *Backend) Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	if t.UpstreamModel == "" {
		return nil, models.Errorf(models.ErrInvalid, "ollama backend %q: target has no upstream model", b.opts.Name)
	}
	var call func(ctx context.Context, p *producer) error
	switch r.Kind {
	case models.KindChat:
		req, err := chatRequest(t.UpstreamModel, r, b.keepAlive)
		if err != nil {
			return nil, b.invalid(err)
		}
		call = func(ctx context.Context, p *producer) error {
			return b.client.Chat(ctx, req, func(resp api.ChatResponse) error {
				return p.add(ctx, resp.Message.Content, resp.Message.ToolCalls, resp.Done, resp.DoneReason, resp.Metrics)
			})
		}
	case models.KindCompletion:
		req, err := generateRequest(t.UpstreamModel, r, b.keepAlive)
		if err != nil {
			return nil, b.invalid(err)
		}
		call = func(ctx context.Context, p *producer) error {
			return b.client.Generate(ctx, req, func(resp api.GenerateResponse) error {
				return p.add(ctx, resp.Response, nil, resp.Done, resp.DoneReason, resp.Metrics)
			})
		}
	case models.KindEmbedding:
		req, err := embedRequest(t.UpstreamModel, r, b.keepAlive)
		if err != nil {
			return nil, b.invalid(err)
		}
		call = func(ctx context.Context, p *producer) error {
			resp, err := b.client.Embed(ctx, req)
			if err != nil {
				return err
			}
			if len(resp.Embeddings) != len(r.Input) {
				return fmt.Errorf("ollama backend %q: engine returned %d embeddings for %d inputs",
					b.opts.Name, len(resp.Embeddings), len(r.Input))
			}
			return p.embeddings(ctx, resp.Embeddings, resp.PromptEvalCount)
		}
	default:
		return nil, models.Errorf(models.ErrInvalid, "ollama backend %q: unsupported request kind %v", b.opts.Name, r.Kind)
	}
	s := b.start(ctx, r, call)
	if err := s.first(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// invalid names the backend in a conversion error.
func (b *Backend) invalid(err error) error {
	var me *models.Error
	if errors.As(err, &me) {
		e := *me
		e.Msg = fmt.Sprintf("ollama backend %q: %s", b.opts.Name, me.Msg)
		return &e
	}
	return models.Errorf(models.ErrInvalid, "ollama backend %q: %v", b.opts.Name, err)
}

// mapError turns an error of the Ollama client into a *models.Error, with the table all
// runtimes share (runtime/upstream): HTTP error answers by status, a server that cannot
// be reached as down (and marked so until Refresh), errors inside an answer by what
// they say.
func (b *Backend) mapError(ctx context.Context, err error) error {
	var me *models.Error
	if errors.As(err, &me) {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		return &models.Error{Kind: models.ErrCanceled, Msg: "request canceled", Err: err}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return upstream.TransportError(b.opts.Name, context.DeadlineExceeded)
	}
	var se api.StatusError
	if errors.As(err, &se) {
		// The client reads no headers for us (no Retry-After): the table's default holds.
		return upstream.StatusError(b.opts.Name, se.StatusCode, "", []byte(se.ErrorMessage))
	}
	var ae api.AuthorizationError
	if errors.As(err, &ae) {
		return upstream.StatusError(b.opts.Name, ae.StatusCode, "", nil)
	}
	if unreachable(err) {
		b.setHealth(false, "unreachable: "+upstream.Cause(err), false)
		return upstream.TransportError(b.opts.Name, err)
	}
	// An error the server sent inside its answer ({"error": "..."} in the stream).
	return upstream.StreamError(b.opts.Name, []byte(err.Error()))
}

// unreachable reports whether err means the server could not be reached or the
// connection broke.
func unreachable(err error) bool {
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF)
}

// The Ollama client stops reading a stream at the first read error and reports success,
// so a server that dies mid-answer looks like one that finished. trackingTransport
// records body read errors in a bodyErr carried by the request's context.

type bodyErrKey struct{}

type bodyErr struct {
	mu  sync.Mutex
	err error
}

func (e *bodyErr) set(err error) {
	e.mu.Lock()
	if e.err == nil {
		e.err = err
	}
	e.mu.Unlock()
}

func (e *bodyErr) get() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

type trackingTransport struct{ base http.RoundTripper }

func (t trackingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if rec, ok := req.Context().Value(bodyErrKey{}).(*bodyErr); ok {
		resp.Body = &trackedBody{ReadCloser: resp.Body, rec: rec}
	}
	return resp, nil
}

type trackedBody struct {
	io.ReadCloser
	rec *bodyErr
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.rec.set(err)
	}
	return n, err
}
