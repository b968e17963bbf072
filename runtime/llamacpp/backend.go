package llamacpp

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/sluice-llm/sluice/internal/jsonx"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/runtime/openai"
	"github.com/sluice-llm/sluice/runtime/proc"
	"github.com/sluice-llm/sluice/runtime/upstream"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// Options configure a llama-server backend. Set URL for a server someone else runs, or
// Binary and Model for one sluice starts and supervises.
type Options struct {
	Name string
	URL  string // http://host:port of a running llama-server (unmanaged)

	Binary    string   // llama-server path (managed)
	Model     string   // GGUF path (managed)
	Alias     string   // --alias (the model name the server reports)
	Slots     int      // --parallel (default 4)
	Context   int      // context per slot (default 2048); -c gets Context*Slots
	Threads   int      // -t (default: llama-server's own)
	GPULayers int      // -ngl (0: none; -1: all)
	Embedding bool     // --embeddings
	Args      []string // extra arguments
	Env       []string // the engine's own environment (CUDA_VISIBLE_DEVICES=...)
	BaseEnv   []string // what the engine inherits (config.EngineEnviron); nothing else is
	Port      int      // 0: a free loopback port
	MaxEvent  int      // bound on one streamed event from the server (0: upstream.DefaultMaxEvent)

	Counter models.TokenCounter
	Logger  *slog.Logger
}

// Backend is one llama-server.
type Backend struct {
	*openai.Backend
	opts  Options
	proc  *proc.Process // nil when unmanaged
	root  *upstream.Client
	parse fastjson.ParserPool
}

// New prepares the backend; for a managed server, Run starts it.
func New(opts Options) (*Backend, error) {
	if opts.Slots <= 0 {
		opts.Slots = 4
	}
	if opts.Context <= 0 {
		opts.Context = 2048
	}
	b := &Backend{opts: opts}
	base := opts.URL
	if base == "" {
		if opts.Binary == "" || opts.Model == "" {
			return nil, fmt.Errorf("llamacpp backend %q: set url, or binary and model", opts.Name)
		}
		args := []string{"-m", opts.Model, "--host", "127.0.0.1", "--port", "{port}",
			"--parallel", strconv.Itoa(opts.Slots), "-c", strconv.Itoa(opts.Context * opts.Slots),
			"--metrics", "--slots"}
		if opts.Alias != "" {
			args = append(args, "--alias", opts.Alias)
		}
		if opts.Threads > 0 {
			args = append(args, "-t", strconv.Itoa(opts.Threads))
		}
		if opts.GPULayers != 0 {
			args = append(args, "-ngl", strconv.Itoa(opts.GPULayers))
		}
		if opts.Embedding {
			args = append(args, "--embeddings")
		}
		args = append(args, opts.Args...)
		p, err := proc.New(proc.Spec{
			Name: "llama-server/" + opts.Name, Binary: opts.Binary, Args: args, Env: opts.Env, BaseEnv: opts.BaseEnv,
			Port: opts.Port, Logger: opts.Logger, InFlight: b.inFlight,
		})
		if err != nil {
			return nil, fmt.Errorf("llamacpp backend %q: %w", opts.Name, err)
		}
		b.proc = p
		base = p.URL()
	}
	ob, err := openai.New(openai.Options{
		Name: opts.Name, BaseURL: base + "/v1", Dialect: openai.LlamaCpp, Slots: opts.Slots,
		HealthURL: base + "/health", Counter: opts.Counter, Upstream: upstream.Options{MaxEvent: opts.MaxEvent},
	})
	if err != nil {
		return nil, err
	}
	b.Backend = ob
	if b.root, err = upstream.New(base, upstream.Options{MaxIdle: 4}); err != nil {
		return nil, err
	}
	return b, nil
}

// Process is the supervised server, or nil when unmanaged.
func (b *Backend) Process() *proc.Process { return b.proc }

// Run supervises a managed server until ctx ends (then drains it for up to drain);
// for an unmanaged one it returns at once.
func (b *Backend) Run(ctx context.Context, drain time.Duration) error {
	if b.proc == nil {
		return nil
	}
	return b.proc.Run(ctx, drain)
}

func (b *Backend) inFlight() int {
	if b.Backend == nil {
		return 0
	}
	return b.Backend.InFlight()
}

// Open refuses fast while a managed server is not ready (restarting after a crash).
func (b *Backend) Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	if b.proc != nil {
		if st, reason := b.proc.State(); st != proc.Ready {
			msg := fmt.Sprintf("engine %s is %s", b.opts.Name, st)
			if reason != "" {
				msg += ": " + reason
			}
			return nil, &models.Error{Kind: models.ErrUnavailable, Code: "engine_unavailable", RetryAfter: time.Second, Msg: msg}
		}
	}
	return b.Backend.Open(ctx, t, r)
}

// Capacity reports the server's slots; a managed server that is not ready is unhealthy.
func (b *Backend) Capacity() models.Capacity {
	c := b.Backend.Capacity()
	if b.proc != nil {
		if st, reason := b.proc.State(); st != proc.Ready {
			c.Healthy = false
			c.Reason = st.String()
			if reason != "" {
				c.Reason += ": " + reason
			}
		}
	}
	return c
}

// Refresh probes /health and reads /slots (slot count and how many are busy).
func (b *Backend) Refresh(ctx context.Context) error {
	if err := b.Backend.Refresh(ctx); err != nil {
		return err
	}
	slots, busy, err := b.Slots(ctx)
	if err != nil {
		return nil // /slots may be disabled; health is what matters
	}
	c := b.Backend.Capacity()
	c.Slots, c.Busy = slots, busy
	b.SetCapacity(c)
	return nil
}

// Slots reads GET /slots: the number of slots and how many are processing.
func (b *Backend) Slots(ctx context.Context) (total, busy int, err error) {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	b.root.Prepare(req, fasthttp.MethodGet, "/slots")
	call, err := b.root.Do(ctx, req, false)
	if err != nil {
		return 0, 0, err
	}
	defer call.Release()
	if call.Resp.StatusCode() != fasthttp.StatusOK {
		return 0, 0, fmt.Errorf("llamacpp backend %q: /slots answered %d", b.opts.Name, call.Resp.StatusCode())
	}
	p := b.parse.Get()
	defer b.parse.Put(p)
	v, err := p.ParseBytes(call.Resp.Body())
	if err != nil {
		return 0, 0, err
	}
	arr := v.GetArray()
	for _, s := range arr {
		if s.GetBool("is_processing") {
			busy++
		}
	}
	return len(arr), busy, nil
}

// Tokenize counts tokens with the server's own tokenizer (POST /tokenize).
func (b *Backend) Tokenize(ctx context.Context, text string) (int, error) {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	b.root.Prepare(req, fasthttp.MethodPost, "/tokenize")
	req.Header.SetContentType("application/json")
	body := jsonx.AppendString([]byte(`{"content":`), text)
	req.SetBodyRaw(append(body, '}'))
	call, err := b.root.Do(ctx, req, false)
	if err != nil {
		return 0, err
	}
	defer call.Release()
	if call.Resp.StatusCode() != fasthttp.StatusOK {
		return 0, fmt.Errorf("llamacpp backend %q: /tokenize answered %d", b.opts.Name, call.Resp.StatusCode())
	}
	p := b.parse.Get()
	defer b.parse.Put(p)
	v, err := p.ParseBytes(call.Resp.Body())
	if err != nil {
		return 0, err
	}
	return len(v.GetArray("tokens")), nil
}

// Close releases connections.
func (b *Backend) Close() {
	b.Backend.Close()
	b.root.Close()
}
